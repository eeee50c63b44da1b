"""ACDC in ModelMix's few-scribble setting (5 scribbled training volumes, the rest unlabelled) as nnU-Net v2 raw
dataset 814.

    python dataset_conversion/Dataset814_ACDCFewScribble.py SOURCE NNUNET_RAW [--overwrite] [--fold 0]
        [--labelled K | --picks patient065_frame01,...]

SOURCE is the ACDC folder holding ``training/patientNNN/patientNNN_frameFF{,_gt,_scribble}.nii.gz``. Every frame
becomes a training case ``patientNNN_frameFF`` (as in Dataset801):

- the fold's validation frames (WSL4MIS/PCLMix fold k = patients 20k+1..20k+20, both frames) keep their scribbles;
- 5 training volumes keep their scribbles: the ModelMix picks patient065_frame01, patient043_frame01,
  patient070_frame01, patient005_frame13, patient032_frame12 (``nnunet_weak.annotation.few_scribbles``); a pick in
  the fold's validation patients (fold 0: patient005_frame13) is replaced by the next volume of a seed-42 shuffle
  of the training volumes, printed and recorded in ``few_scribbles.json``;
- every other training frame gets an all-ignore (4) label map: an unlabelled image;
- labelsTr_dense: dense labels of every frame, for evaluation only.

splits_final.json holds ONE entry, the chosen fold's {train, val}: the labels depend on the fold (its training
volumes are the candidates), so each fold is its own dataset and ``nnUNetv2_train 814 2d 0`` trains it. The ACDC
fold is recorded in few_scribbles.json (``acdc_fold``). Also written to $nnUNet_preprocessed/Dataset814_ACDCFewScribble/
when that is set.
"""
from nnunet_weak.annotation.few_scribbles import (OFFICIAL_PICKS, SHUFFLE_SEED, add_selection_arguments,
                                                 convert_acdc_few_scribbles, parse_picks)
from nnunet_weak.annotation.nnunet_io import conversion_parser

DATASET_NAME = "Dataset814_ACDCFewScribble"


def convert(source: str, nnunet_raw: str, fold: int = 0, labelled=None, picks=None, seed: int = SHUFFLE_SEED,
            overwrite: bool = False, verbose: bool = True, preprocessed=None) -> str:
    """Convert ACDC (few scribbles, one fold) into ``nnunet_raw/Dataset814_ACDCFewScribble``; returns that folder."""
    return convert_acdc_few_scribbles(source, nnunet_raw, DATASET_NAME, fold=fold, labelled=labelled, picks=picks,
                                      seed=seed, overwrite=overwrite, verbose=verbose, preprocessed=preprocessed)


def main(argv=None) -> str:
    parser = conversion_parser(__doc__.splitlines()[0], "ACDC folder containing training/")
    parser.add_argument("--fold", type=int, default=0, help="WSL4MIS/PCLMix fold 0..4 (validates patients "
                                                            "20k+1..20k+20); default 0")
    add_selection_arguments(parser, OFFICIAL_PICKS["ACDC"])
    args = parser.parse_args(argv)
    return convert(args.source, args.nnunet_raw, fold=args.fold, labelled=args.labelled,
                   picks=parse_picks(args.picks), overwrite=args.overwrite, preprocessed=args.preprocessed)


if __name__ == "__main__":
    main()
