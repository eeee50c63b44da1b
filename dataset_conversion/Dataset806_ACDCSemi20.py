"""ACDC with dense labels for 20 % of the patients and unlabelled (all-ignore) others, as nnU-Net v2 raw dataset 806.

Entry point; the conversion is ``nnunet_weak.dataset_conversion.Dataset806_ACDCSemi20``
(``--help`` lists its options).
"""
from nnunet_weak.dataset_conversion.Dataset806_ACDCSemi20 import convert, main  # noqa: F401

if __name__ == "__main__":
    main()
