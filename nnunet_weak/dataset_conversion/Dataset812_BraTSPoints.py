"""BraTS 2019 (FLAIR, whole tumour) with PA-Seg point clicks (geodesic expansion) as nnU-Net v2 raw dataset 812.

    python dataset_conversion/Dataset812_BraTSPoints.py SOURCE NNUNET_RAW [--overwrite] [--split split_BraTS.csv]
        [--points DIR] [--margin-mm 2] [--jitter 0] [--seed 0] [--threshold 0.2]

Source layout (the BraTS 2019 training release):

    SOURCE/MICCAI_BraTS_2019_Data_Training/{HGG,LGG}/<case>/<case>_flair.nii.gz   (FLAIR, the only channel used)
    SOURCE/MICCAI_BraTS_2019_Data_Training/{HGG,LGG}/<case>/<case>_seg.nii.gz     (0 / 1 / 2 / 4; tumour = > 0)

SOURCE may also be the folder that holds HGG/ and LGG/ directly. Every case folder needs both files.

Split: ``--split`` PA-Seg's splits/split_BraTS.csv (rows "case,phase": training / validation / inference). It
lists 272 of the 335 cases; the unlisted ones join its single inference case in imagesTs (the 64-case test
set). Without ``--split``: a deterministic split by the MD5 of the case id, in PA-Seg's proportions (64/335 test,
27/335 validation, the rest training; ``paseg_conversion.hashed_split``).

Output (``nnunet_weak.annotation.paseg_conversion``): training + validation cases in imagesTr / labelsTr (0
background, 1 tumour, 2 ignore) / labelsTr_dense, test cases in imagesTs / labelsTs (dense), points/CASE.json,
seed_quality.{csv,json}, single-fold splits_final.json. Voxels at the image minimum (the zero background outside
the brain) are labelled background even inside a target's box, as in PA-Seg's BraTS script.

Clicks: simulated from the whole-tumour mask (7 per connected component, so separate tumours get their own
points), or ``--points DIR`` with the official point volumes ``DIR/<case>_7points.nii.gz`` on the full 155x240x240
grid (values 2k-1 / 2k for target k = 1, 2).
"""
import os
import re

from nnunet_weak.annotation.nnunet_io import conversion_parser
from nnunet_weak.annotation.paseg_conversion import (INFERENCE, PasegCase, PointOptions, add_point_arguments,
                                                     convert_paseg_dataset, hashed_split, point_options,
                                                     read_split_csv)
from nnunet_weak.utilities.errors import NNWError

DATASET_NAME = "Dataset812_BraTSPoints"
RELEASE_FOLDER = "MICCAI_BraTS_2019_Data_Training"
GRADES = ("HGG", "LGG")
VAL_FRACTION, TEST_FRACTION = 27 / 335, 64 / 335   # PA-Seg: 244 / 27 / 64 of 335
_HIDDEN = re.compile(r"^[._]")


def find_brats_cases(source: str) -> list:
    """PasegCase of every case folder under SOURCE[/MICCAI_BraTS_2019_Data_Training]/{HGG,LGG}/, sorted by id."""
    if not os.path.isdir(source):
        raise NNWError(f"BraTS source folder {source} does not exist; pass the folder that holds {RELEASE_FOLDER}/.")
    root = source
    if not any(os.path.isdir(os.path.join(root, g)) for g in GRADES):
        root = os.path.join(source, RELEASE_FOLDER)
        if not any(os.path.isdir(os.path.join(root, g)) for g in GRADES):
            raise NNWError(f"{os.path.join(root, 'HGG')} does not exist; pass the folder that holds {RELEASE_FOLDER}/ "
                           f"or HGG/ and LGG/ directly.")
    cases = {}
    for grade in GRADES:
        folder = os.path.join(root, grade)
        if not os.path.isdir(folder):
            continue
        for case in sorted(os.listdir(folder)):
            case_dir = os.path.join(folder, case)
            if _HIDDEN.match(case) or not os.path.isdir(case_dir):
                continue
            paths = (os.path.join(case_dir, f"{case}_flair.nii.gz"), os.path.join(case_dir, f"{case}_seg.nii.gz"))
            for path in paths:
                if not os.path.isfile(path):
                    raise NNWError(f"{path} is missing; every BraTS case needs its _flair and _seg files (restore "
                                   f"it or remove the case folder).")
            if case in cases:
                raise NNWError(f"case {case} is in both {cases[case].image} and {case_dir}; keep one.")
            cases[case] = PasegCase(case, *paths)
    if not cases:
        raise NNWError(f"{root} holds no case folders under {' or '.join(GRADES)}/.")
    return [cases[c] for c in sorted(cases)]


def convert(source: str, nnunet_raw: str, split: str = None, overwrite: bool = False, verbose: bool = True,
            options: PointOptions = PointOptions(), preprocessed=None) -> str:
    """Convert BraTS 2019 (FLAIR, whole tumour, expanded point labels) into ``nnunet_raw/Dataset812_BraTSPoints``;
    returns that folder."""
    cases = find_brats_cases(source)
    if split:
        phases = read_split_csv(split)
        listed = set(phases)
        phases.update({c.case: INFERENCE for c in cases if c.case not in listed})  # unlisted: test
        split_source = split
    else:
        phases = hashed_split([c.case for c in cases], VAL_FRACTION, TEST_FRACTION)
        split_source = "MD5-ordered split (no split file given)"
    return convert_paseg_dataset(
        cases, phases, split_source, nnunet_raw, DATASET_NAME, channel_name="FLAIR", gt_max_value=4,
        description="BraTS 2019 training release, FLAIR only, whole tumour (seg > 0).", options=options,
        background_at_min_intensity=True, overwrite=overwrite, verbose=verbose, preprocessed=preprocessed)


def main(argv=None) -> None:
    parser = conversion_parser(__doc__.splitlines()[0], f"folder holding {RELEASE_FOLDER}/ (or HGG/ and LGG/)")
    parser.add_argument("--split", default=None,
                        help="PA-Seg split CSV (split_BraTS.csv); unlisted cases become test cases. Default: a "
                             "deterministic MD5-ordered split in PA-Seg's proportions")
    add_point_arguments(parser)
    args = parser.parse_args(argv)
    convert(args.source, args.nnunet_raw, split=args.split, overwrite=args.overwrite, options=point_options(args),
            preprocessed=args.preprocessed)


if __name__ == "__main__":
    main()
