"""MS-CMRSeg 2019 LGE MRI with scribbles (Zhang & Zhuang 2022) as nnU-Net v2 raw dataset 803.

Entry point; the conversion is ``nnunet_weak.dataset_conversion.Dataset803_MSCMRScribble``
(``--help`` lists its options).
"""
from nnunet_weak.dataset_conversion.Dataset803_MSCMRScribble import convert, main  # noqa: F401

if __name__ == "__main__":
    main()
