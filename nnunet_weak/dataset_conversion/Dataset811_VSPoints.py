"""Vestibular-Schwannoma-SEG (T2) with PA-Seg point clicks (geodesic expansion) as nnU-Net v2 raw dataset 811.

    python dataset_conversion/Dataset811_VSPoints.py SOURCE NNUNET_RAW [--overwrite] [--split split_VS.csv]
        [--points DIR] [--margin-mm 2] [--jitter 0] [--seed 0] [--threshold 0.2] [--crop-gt-centred]

Source layout (PA-Seg's ``data/VS`` after its README steps 3-4; TCIA ships DICOM, which PA-Seg's
``data/VS/convert.py`` turns into these NIfTI files):

    SOURCE/image/<case>_T2.nii.gz      T2 scan, e.g. vs_gk_5_T2.nii.gz
    SOURCE/label/<case>_Label.nii.gz   tumour segmentation, values 0 / 1
    SOURCE/split_VS.csv                PA-Seg's splits/split_VS.csv (or pass --split): rows "case,phase", phase
                                       training / validation / inference (InExtremIS's "testing" is accepted)

PA-Seg's already cropped ``image_crop/`` and ``label_crop/`` folders are used when ``image/`` and ``label/`` are
absent. Only the cases listed in the split file are converted; each needs both files.

Output (``nnunet_weak.annotation.paseg_conversion``): training + validation cases in imagesTr / labelsTr (0
background, 1 tumour, 2 ignore) / labelsTr_dense, inference cases in imagesTs / labelsTs (dense), points/CASE.json,
seed_quality.{csv,json}, and a single-fold splits_final.json with the split's training / validation lists.

Clicks: simulated from the dense labels by default, or ``--points DIR`` with the official point volumes
``DIR/<case>_7points.nii.gz`` (value 1 = background points, 2 = foreground point). Those files are on PA-Seg's
128x128x48 GT-centred crop, so they need ``--crop-gt-centred``, which crops every case, test cases included, to
that window as PA-Seg did (it uses the test GT to localise, so it is off by default; full volumes are the
honest setting).
"""
import os

from nnunet_weak.annotation.nnunet_io import conversion_parser
from nnunet_weak.annotation.paseg_conversion import (VS_CROP_SIZE, PasegCase, PointOptions, add_point_arguments,
                                                     convert_paseg_dataset, point_options, read_split_csv)
from nnunet_weak.utilities.errors import NNWError

DATASET_NAME = "Dataset811_VSPoints"
SPLIT_FILE = "split_VS.csv"


def find_vs_cases(source: str, cases) -> list:
    """PasegCase of every case id in ``cases``, from SOURCE/image (or image_crop) and SOURCE/label (or label_crop)."""
    if not os.path.isdir(source):
        raise NNWError(f"VS source folder {source} does not exist; pass the folder that holds image/ and label/.")
    folders = [(os.path.join(source, a), os.path.join(source, b))
               for a, b in (("image", "label"), ("image_crop", "label_crop"))]
    found = [pair for pair in folders if os.path.isdir(pair[0]) and os.path.isdir(pair[1])]
    if not found:
        raise NNWError(f"{folders[0][0]} and {folders[0][1]} do not exist; pass the PA-Seg data/VS folder "
                       f"(image/<case>_T2.nii.gz, label/<case>_Label.nii.gz).")
    image_dir, label_dir = found[0]
    out = []
    for case in cases:
        paths = (os.path.join(image_dir, f"{case}_T2.nii.gz"), os.path.join(label_dir, f"{case}_Label.nii.gz"))
        for path in paths:
            if not os.path.isfile(path):
                raise NNWError(f"{path} is missing; every case of the split needs its T2 image and label (restore "
                               f"it or remove the case from the split file).")
        out.append(PasegCase(case, *paths))
    return out


def convert(source: str, nnunet_raw: str, split: str = None, overwrite: bool = False, verbose: bool = True,
            options: PointOptions = PointOptions(), crop_gt_centred: bool = False, crop_size=VS_CROP_SIZE,
            preprocessed=None) -> str:
    """Convert VS (T2, expanded point labels) into ``nnunet_raw/Dataset811_VSPoints``; returns that folder.
    ``crop_size`` (z, y, x) is the window of ``crop_gt_centred`` (PA-Seg: 48, 128, 128)."""
    split = split or os.path.join(source, SPLIT_FILE)
    phases = read_split_csv(split)
    cases = find_vs_cases(source, phases)
    return convert_paseg_dataset(
        cases, phases, split, nnunet_raw, DATASET_NAME, channel_name="T2", gt_max_value=1,
        description="Vestibular-Schwannoma-SEG (TCIA), T2 only"
                    + (f", GT-centred {'x'.join(map(str, crop_size[::-1]))} (x, y, z) crop as in PA-Seg."
                       if crop_gt_centred else ", full volumes."),
        options=options, crop_size=tuple(crop_size) if crop_gt_centred else None, overwrite=overwrite,
        verbose=verbose, preprocessed=preprocessed)


def main(argv=None) -> None:
    parser = conversion_parser(__doc__.splitlines()[0], "folder with image/<case>_T2.nii.gz and "
                                                        "label/<case>_Label.nii.gz (PA-Seg data/VS)")
    parser.add_argument("--split", default=None, help=f"PA-Seg split CSV (default: SOURCE/{SPLIT_FILE})")
    add_point_arguments(parser)
    parser.add_argument("--crop-gt-centred", action="store_true",
                        help="crop every case (test cases too) to PA-Seg's 128x128x48 window centred on the GT "
                             "tumour; needed for the official point files; off = full volumes (no GT leak)")
    args = parser.parse_args(argv)
    convert(args.source, args.nnunet_raw, split=args.split, overwrite=args.overwrite, options=point_options(args),
            crop_gt_centred=args.crop_gt_centred, preprocessed=args.preprocessed)


if __name__ == "__main__":
    main()
