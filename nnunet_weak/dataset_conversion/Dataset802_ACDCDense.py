"""ACDC with dense reference labels as nnU-Net v2 raw dataset 802 (the fully supervised counterpart of 801).

    python dataset_conversion/Dataset802_ACDCDense.py SOURCE NNUNET_RAW [--overwrite]

Same images, case ids (``patientNNN_frameFF``) and 5-fold WSL4MIS/PCLMix splits as Dataset801; labelsTr holds
the dense labels (no ignore label) and labelsTr_dense a copy of them, so evaluation reads the same folder for
every dataset. splits_final.json is also written to $nnUNet_preprocessed/Dataset802_ACDCDense/ when that is set.
"""
from nnunet_weak.annotation.nnunet_io import acdc_entry_points

DATASET_NAME = "Dataset802_ACDCDense"

convert, main = acdc_entry_points(DATASET_NAME, scribbles=False, description=__doc__.splitlines()[0])

if __name__ == "__main__":
    main()
