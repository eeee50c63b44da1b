"""ACDC with simulated PA-Seg point clicks, expanded by the geodesic distance, as nnU-Net v2 raw dataset 804.

Entry point; the conversion is ``nnunet_weak.dataset_conversion.Dataset804_ACDCPoints``
(``--help`` lists its options).
"""
from nnunet_weak.dataset_conversion.Dataset804_ACDCPoints import convert, main  # noqa: F401

if __name__ == "__main__":
    main()
