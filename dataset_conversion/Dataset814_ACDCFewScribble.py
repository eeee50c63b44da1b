"""ACDC in ModelMix's few-scribble setting (5 scribbled training volumes, the rest unlabelled) as nnU-Net v2 raw
dataset 814.

Entry point; the conversion is ``nnunet_weak.dataset_conversion.Dataset814_ACDCFewScribble``
(``--help`` lists its options).
"""
from nnunet_weak.dataset_conversion.Dataset814_ACDCFewScribble import convert, main  # noqa: F401

if __name__ == "__main__":
    main()
