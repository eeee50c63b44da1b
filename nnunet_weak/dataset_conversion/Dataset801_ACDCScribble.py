"""ACDC with the public hand-drawn scribbles (Valvano et al. 2021) as nnU-Net v2 raw dataset 801.

    python dataset_conversion/Dataset801_ACDCScribble.py SOURCE NNUNET_RAW [--overwrite]

SOURCE is the ACDC folder holding ``training/patientNNN/patientNNN_frameFF{,_gt,_scribble}.nii.gz``. All frames
become training cases ``patientNNN_frameFF``; labelsTr holds the scribbles (4 = ignore), labelsTr_dense the dense
reference labels (evaluation only). splits_final.json: WSL4MIS/PCLMix 5 folds, fold k validates patients
20k+1..20k+20 (both frames). Also written to $nnUNet_preprocessed/Dataset801_ACDCScribble/ when that is set.
"""
from nnunet_weak.annotation.nnunet_io import acdc_entry_points

DATASET_NAME = "Dataset801_ACDCScribble"

convert, main = acdc_entry_points(DATASET_NAME, scribbles=True, description=__doc__.splitlines()[0])

if __name__ == "__main__":
    main()
