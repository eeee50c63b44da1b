"""MS-CMRSeg 2019 LGE MRI in ModelMix's few-scribble setting (5 scribbled subjects, 20 unlabelled) as nnU-Net v2 raw
dataset 815.

    python dataset_conversion/Dataset815_MSCMRFewScribble.py SOURCE NNUNET_RAW [--overwrite] [--test FOLDER]
        [--labelled K | --picks subject13_DE,...]

Same source layout, cases, images, val subjects (dense, in labelsTr and labelsTr_dense), test set and single split
(train = the 25 train subjects, val = the 5 val subjects) as Dataset803 -- its ``convert`` does the work, with a
hook on the train subjects' labels:

- the ModelMix picks subject13_DE, subject14_DE, subject15_DE, subject18_DE, subject19_DE (the first 5 train files
  in sorted name order, as the ModelMix code picks them) keep their scribbles;
- every other train subject gets an all-ignore (4) label map: an unlabelled image.

The picks (and any replacement, see ``nnunet_weak.annotation.few_scribbles``) are printed and recorded in
``few_scribbles.json`` and ``dataset.json["labelled_cases"]``.
"""
from typing import Optional, Sequence

from nnunet_weak.annotation.few_scribbles import (OFFICIAL_PICKS, SHUFFLE_SEED, add_selection_arguments, parse_picks,
                                                 record_selection, select_few_scribbles)
from nnunet_weak.annotation.nnunet_io import CARDIAC_IGNORE, DENSE_FOLDER, conversion_parser
from nnunet_weak.dataset_conversion import Dataset803_MSCMRScribble as mscmr

DATASET_NAME = "Dataset815_MSCMRFewScribble"


def convert(source: str, nnunet_raw: str, overwrite: bool = False, test: Optional[str] = None,
            labelled: Optional[int] = None, picks: Optional[Sequence[str]] = None, seed: int = SHUFFLE_SEED,
            verbose: bool = True, preprocessed: Optional[str] = None) -> str:
    """Convert MSCMRseg (few scribbles) into ``nnunet_raw/Dataset815_MSCMRFewScribble``; returns that folder."""
    train, val = mscmr.find_cases(source)
    selection = select_few_scribbles([c for c, _, _ in train], [c for c, _, _ in val], OFFICIAL_PICKS["MSCMR"],
                                     labelled=labelled, picks=picks, seed=seed)
    folder = mscmr.convert(source, nnunet_raw, overwrite=overwrite, test=test, verbose=verbose,
                           dataset_name=DATASET_NAME, preprocessed=preprocessed,
                           train_labels=lambda case, labels: selection.labels_for(case, labels, CARDIAC_IGNORE))
    description = (f"MS-CMRSeg 2019 LGE MRI, ModelMix few-scribble setting: {len(selection.picks)} train subjects "
                   f"with scribbles, {len(selection.unlabelled)} unlabelled (all-ignore), {len(val)} val subjects "
                   f"with dense labels (fold 0 validation); {DENSE_FOLDER}: dense labels of the val subjects.")
    record_selection(folder, selection, verbose=verbose, description=description)
    return folder


def main(argv=None) -> str:
    parser = conversion_parser(__doc__.splitlines()[0], "MSCMRseg folder containing train/ and val/")
    parser.add_argument("--test", default=None, metavar="FOLDER",
                        help="test set folder with images/ (and optionally labels/) -> imagesTs (labelsTs)")
    add_selection_arguments(parser, OFFICIAL_PICKS["MSCMR"])
    args = parser.parse_args(argv)
    return convert(args.source, args.nnunet_raw, overwrite=args.overwrite, test=args.test, labelled=args.labelled,
                   picks=parse_picks(args.picks), preprocessed=args.preprocessed)


if __name__ == "__main__":
    main()
