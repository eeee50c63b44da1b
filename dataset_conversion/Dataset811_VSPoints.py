"""Vestibular-Schwannoma-SEG (T2) with PA-Seg point clicks (geodesic expansion) as nnU-Net v2 raw dataset 811.

Entry point; the conversion is ``nnunet_weak.dataset_conversion.Dataset811_VSPoints``
(``--help`` lists its options).
"""
from nnunet_weak.dataset_conversion.Dataset811_VSPoints import convert, main  # noqa: F401

if __name__ == "__main__":
    main()
