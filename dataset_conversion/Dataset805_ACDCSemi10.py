"""ACDC with dense labels for 10 % of the patients and unlabelled (all-ignore) others, as nnU-Net v2 raw dataset 805.

Entry point; the conversion is ``nnunet_weak.dataset_conversion.Dataset805_ACDCSemi10``
(``--help`` lists its options).
"""
from nnunet_weak.dataset_conversion.Dataset805_ACDCSemi10 import convert, main  # noqa: F401

if __name__ == "__main__":
    main()
