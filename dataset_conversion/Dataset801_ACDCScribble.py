"""ACDC with the public hand-drawn scribbles (Valvano et al. 2021) as nnU-Net v2 raw dataset 801.

Entry point; the conversion is ``nnunet_weak.dataset_conversion.Dataset801_ACDCScribble``
(``--help`` lists its options).
"""
from nnunet_weak.dataset_conversion.Dataset801_ACDCScribble import convert, main  # noqa: F401

if __name__ == "__main__":
    main()
