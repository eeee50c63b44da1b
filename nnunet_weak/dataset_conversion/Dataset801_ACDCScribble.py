"""ACDC with the public hand-drawn scribbles (Valvano et al. 2021) as nnU-Net v2 raw dataset 801.

    python dataset_conversion/Dataset801_ACDCScribble.py SOURCE NNUNET_RAW [--overwrite]

SOURCE is the ACDC folder holding ``training/patientNNN/patientNNN_frameFF{,_gt,_scribble}.nii.gz``. All frames
become training cases ``patientNNN_frameFF``; labelsTr holds the scribbles (4 = ignore), labelsTr_dense the dense
reference labels (evaluation only). splits_final.json: WSL4MIS/PCLMix 5 folds, fold k validates patients
20k+1..20k+20 (both frames). Also written to $nnUNet_preprocessed/Dataset801_ACDCScribble/ when that is set.
"""
from nnunet_weak.annotation.nnunet_io import conversion_parser, convert_acdc

DATASET_NAME = "Dataset801_ACDCScribble"


def convert(source: str, nnunet_raw: str, overwrite: bool = False, verbose: bool = True) -> str:
    """Convert ACDC (scribble labels) into ``nnunet_raw/Dataset801_ACDCScribble``; returns that folder."""
    return convert_acdc(source, nnunet_raw, DATASET_NAME, scribbles=True, overwrite=overwrite, verbose=verbose)


def main(argv=None) -> None:
    args = conversion_parser(__doc__.splitlines()[0], "ACDC folder containing training/").parse_args(argv)
    convert(args.source, args.nnunet_raw, overwrite=args.overwrite)


if __name__ == "__main__":
    main()
