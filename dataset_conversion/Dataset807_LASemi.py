"""Left Atrium 2018 (UA-MT h5 layout) with 8 or 16 labelled cases as nnU-Net v2 raw dataset 807 / 808.

Entry point; the conversion is ``nnunet_weak.dataset_conversion.Dataset807_LASemi``
(``--help`` lists its options).
"""
from nnunet_weak.dataset_conversion.Dataset807_LASemi import main  # noqa: F401

if __name__ == "__main__":
    main()
