"""BraTS 2019 (FLAIR, whole tumour) with PA-Seg point clicks (geodesic expansion) as nnU-Net v2 raw dataset 812.

Entry point; the conversion is ``nnunet_weak.dataset_conversion.Dataset812_BraTSPoints``
(``--help`` lists its options).
"""
from nnunet_weak.dataset_conversion.Dataset812_BraTSPoints import convert, main  # noqa: F401

if __name__ == "__main__":
    main()
