"""ACDC with dense reference labels as nnU-Net v2 raw dataset 802 (the fully supervised counterpart of 801).

Entry point; the conversion is ``nnunet_weak.dataset_conversion.Dataset802_ACDCDense``
(``--help`` lists its options).
"""
from nnunet_weak.dataset_conversion.Dataset802_ACDCDense import convert, main  # noqa: F401

if __name__ == "__main__":
    main()
