"""MyoPS 2020 (C0, DE, T2) with the public ModelMix scribbles as nnU-Net v2 raw dataset 813.

Entry point; the conversion is ``nnunet_weak.dataset_conversion.Dataset813_MyoPSScribble``
(``--help`` lists its options).
"""
from nnunet_weak.dataset_conversion.Dataset813_MyoPSScribble import convert, main  # noqa: F401

if __name__ == "__main__":
    main()
