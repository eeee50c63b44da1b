"""MyoPS 2020 (C0, DE, T2) with the public ModelMix scribbles as nnU-Net v2 raw dataset 813.

    python dataset_conversion/Dataset813_MyoPSScribble.py SOURCE NNUNET_RAW [--overwrite] [--scribbles FOLDER]
        [--test FOLDER] [--labelled K | --picks myops_training_102,...]

SOURCE holds the MyoPS 2020 training images ``myops_training_1NN_{C0,DE,T2}.nii.gz`` (directly or in
``SOURCE/train25/``); ``--scribbles`` is the ModelMix ``MyoPS_scribbles`` folder with
``myops_training_1NN_gd.nii.gz`` (default ``SOURCE/MyoPS_scribbles``); ``--test`` a folder with the test images
``myops_test_2NN_{C0,DE,T2}.nii.gz`` (-> imagesTs).

Channels _0000 = C0, _0001 = DE, _0002 = T2. Labels {background 0, myo 1, LV 2, edema 3, scar 4, ignore 5}: label
values are rounded (the files carry a scale factor), scribble files (holding 3000) map 0 -> ignore, 3000 -> 0,
200 -> 1, 500 -> 2, 1220 -> 3, 2221 -> 4; dense files (101, 106, 111, 116, 121) map 600 (RV) -> background and the
rest the same way. One split: train = the 20 scribble subjects, val = the 5 dense subjects (also in
labelsTr_dense). By default all 20 scribble subjects keep their scribbles; ``--labelled K`` is ModelMix's few-scribble
setting: the first K of the official picks 102, 103, 104, 105, 107 keep theirs, the other training subjects become
all-ignore (``nnunet_weak.annotation.few_scribbles``; picks in few_scribbles.json). Details:
``nnunet_weak.annotation.myops``.
"""
from nnunet_weak.annotation.few_scribbles import OFFICIAL_PICKS, SHUFFLE_SEED, add_selection_arguments, parse_picks
from nnunet_weak.annotation.myops import SCRIBBLE_FOLDER, convert_myops
from nnunet_weak.annotation.nnunet_io import conversion_parser

DATASET_NAME = "Dataset813_MyoPSScribble"


def convert(source: str, nnunet_raw: str, overwrite: bool = False, scribbles=None, test=None, labelled=None,
            picks=None, seed: int = SHUFFLE_SEED, verbose: bool = True, preprocessed=None) -> str:
    """Convert MyoPS 2020 + ModelMix scribbles into ``nnunet_raw/Dataset813_MyoPSScribble``; returns that folder."""
    return convert_myops(source, nnunet_raw, DATASET_NAME, scribbles=scribbles, test=test, labelled=labelled,
                         picks=picks, seed=seed, overwrite=overwrite, verbose=verbose, preprocessed=preprocessed)


def main(argv=None) -> str:
    parser = conversion_parser(__doc__.splitlines()[0], "folder with the MyoPS 2020 training images (or train25/)")
    parser.add_argument("--scribbles", default=None, metavar="FOLDER",
                        help=f"ModelMix {SCRIBBLE_FOLDER} folder (default SOURCE/{SCRIBBLE_FOLDER})")
    parser.add_argument("--test", default=None, metavar="FOLDER", help="folder with the test images -> imagesTs")
    picks = ", ".join(OFFICIAL_PICKS["MyoPS"])
    add_selection_arguments(parser, OFFICIAL_PICKS["MyoPS"],
                            default_help=f"few-scribble setting: keep the scribbles of the first K official picks "
                                         f"({picks}; K=5 is ModelMix's) and make the other training subjects "
                                         f"unlabelled (default: all scribble subjects keep theirs)")
    args = parser.parse_args(argv)
    return convert(args.source, args.nnunet_raw, overwrite=args.overwrite, scribbles=args.scribbles, test=args.test,
                   labelled=args.labelled, picks=parse_picks(args.picks), preprocessed=args.preprocessed)


if __name__ == "__main__":
    main()
