"""ACDC with dense labels for 20 % of the patients and unlabelled (all-ignore) others, as nnU-Net v2 raw dataset 806.

    python dataset_conversion/Dataset806_ACDCSemi20.py SOURCE NNUNET_RAW [--overwrite] [--seed 0]

4 labelled patients per fold block of 20 (seeded pick, ``nnunet_weak.annotation.semi_acdc``; a superset of
Dataset805's): every fold trains on 16 labelled + 64 unlabelled patients and validates on its block's 4 labelled
patients. labelsTr_dense keeps all dense labels for evaluation.
"""
from nnunet_weak.annotation.semi_acdc import semi_entry_points

DATASET_NAME = "Dataset806_ACDCSemi20"
FRACTION = 0.2

convert, main = semi_entry_points(DATASET_NAME, FRACTION, __doc__.splitlines()[0])

if __name__ == "__main__":
    main()
