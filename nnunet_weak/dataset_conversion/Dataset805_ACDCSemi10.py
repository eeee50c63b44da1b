"""ACDC with dense labels for 10 % of the patients and unlabelled (all-ignore) others, as nnU-Net v2 raw dataset 805.

    python dataset_conversion/Dataset805_ACDCSemi10.py SOURCE NNUNET_RAW [--overwrite] [--seed 0]

2 labelled patients per fold block of 20 (seeded pick, ``nnunet_weak.annotation.semi_acdc``): every fold trains
on 8 labelled + 72 unlabelled patients and validates on its block's 2 labelled patients. labelsTr_dense keeps all
dense labels for evaluation.
"""
from nnunet_weak.annotation.semi_acdc import semi_entry_points

DATASET_NAME = "Dataset805_ACDCSemi10"
FRACTION = 0.1

convert, main = semi_entry_points(DATASET_NAME, FRACTION, __doc__.splitlines()[0])

if __name__ == "__main__":
    main()
