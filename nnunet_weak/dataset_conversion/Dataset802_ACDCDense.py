"""ACDC with dense reference labels as nnU-Net v2 raw dataset 802 (the fully supervised counterpart of 801).

    python dataset_conversion/Dataset802_ACDCDense.py SOURCE NNUNET_RAW [--overwrite]

Same images, case ids (``patientNNN_frameFF``) and 5-fold WSL4MIS/PCLMix splits as Dataset801; labelsTr holds
the dense labels (no ignore label) and labelsTr_dense a copy of them, so evaluation reads the same folder for
every dataset. splits_final.json is also written to $nnUNet_preprocessed/Dataset802_ACDCDense/ when that is set.
"""
from nnunet_weak.annotation.nnunet_io import conversion_parser, convert_acdc

DATASET_NAME = "Dataset802_ACDCDense"


def convert(source: str, nnunet_raw: str, overwrite: bool = False, verbose: bool = True) -> str:
    """Convert ACDC (dense labels) into ``nnunet_raw/Dataset802_ACDCDense``; returns that folder."""
    return convert_acdc(source, nnunet_raw, DATASET_NAME, scribbles=False, overwrite=overwrite, verbose=verbose)


def main(argv=None) -> None:
    args = conversion_parser(__doc__.splitlines()[0], "ACDC folder containing training/").parse_args(argv)
    convert(args.source, args.nnunet_raw, overwrite=args.overwrite)


if __name__ == "__main__":
    main()
