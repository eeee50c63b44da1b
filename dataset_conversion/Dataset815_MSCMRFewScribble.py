"""MS-CMRSeg 2019 LGE MRI in ModelMix's few-scribble setting (5 scribbled subjects, 20 unlabelled) as nnU-Net v2 raw
dataset 815.

Entry point; the conversion is ``nnunet_weak.dataset_conversion.Dataset815_MSCMRFewScribble``
(``--help`` lists its options).
"""
from nnunet_weak.dataset_conversion.Dataset815_MSCMRFewScribble import convert, main  # noqa: F401

if __name__ == "__main__":
    main()
