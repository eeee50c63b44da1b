"""MS-CMRSeg 2019 LGE MRI with scribbles (Zhang & Zhuang 2022) as nnU-Net v2 raw dataset 803.

    python dataset_conversion/Dataset803_MSCMRScribble.py SOURCE NNUNET_RAW [--overwrite] [--test FOLDER]

SOURCE holds ``train/images/subjectK_DE.nii.gz`` + ``train/labels/subjectK_DE_scribble.nii.gz`` (scribbles,
4 = unannotated) and ``val/images/subjectK_DE.nii.gz`` + ``val/labels/subjectK_DE_manual.nii.gz`` (dense). All
become training cases ``subjectK_DE``: train subjects with their scribbles, val subjects with their dense labels
(so nnU-Net validates on real labels); labelsTr_dense holds the val subjects' dense labels only. One split
(fold 0): train = the train subjects, val = the val subjects. ``--test FOLDER`` (``images/`` and optionally
``labels/``) adds imagesTs (and labelsTs).
"""
import os
import re
from typing import Callable, List, Optional, Tuple

import numpy as np

from nnunet_weak.annotation.nnunet_io import (CARDIAC_IGNORE, CARDIAC_LABELS, DENSE_FOLDER, conversion_parser,
                                              copy_image, label_array, prepare_dataset_folder, staged_dataset,
                                              write_dataset_json, write_label)
from nnunet_weak.utilities.errors import NNWError

DATASET_NAME = "Dataset803_MSCMRScribble"
_IMAGE = re.compile(r"^(.+)\.nii\.gz$")
# label file name candidates of an image subjectK_DE.nii.gz in a --test labels folder
_TEST_LABEL_SUFFIXES = ("_manual", "_gt", "")


def _require_dir(path: str) -> str:
    if not os.path.isdir(path):
        raise NNWError(f"{path} does not exist; the MSCMRseg source needs train/images, train/labels, val/images "
                       f"and val/labels.")
    return path


def _images(folder: str) -> List[Tuple[str, str]]:
    """(case id, path) of every ``*.nii.gz`` image in ``folder``, sorted."""
    found = sorted((m.group(1), os.path.join(folder, n)) for n in os.listdir(folder)
                   if (m := _IMAGE.match(n)) is not None)
    if not found:
        raise NNWError(f"{folder} holds no .nii.gz images; check the source folder.")
    return found


def _pairs(source: str, part: str, suffix: str) -> List[Tuple[str, str, str]]:
    images = _images(_require_dir(os.path.join(source, part, "images")))
    labels_dir = _require_dir(os.path.join(source, part, "labels"))
    pairs = []
    for case, image in images:
        label = os.path.join(labels_dir, f"{case}{suffix}.nii.gz")
        if not os.path.isfile(label):
            raise NNWError(f"{label} is missing (label of {image}); restore it or remove the image.")
        pairs.append((case, image, label))
    return pairs


def _test_pairs(folder: str) -> List[Tuple[str, str, Optional[str]]]:
    if not os.path.isdir(folder):
        raise NNWError(f"test folder {folder} does not exist; pass a folder with images/ (and optionally labels/).")
    images = _images(_require_dir(os.path.join(folder, "images")))
    labels_dir = os.path.join(folder, "labels")
    if not os.path.isdir(labels_dir):
        return [(case, image, None) for case, image in images]
    pairs = []
    for case, image in images:
        candidates = [os.path.join(labels_dir, f"{case}{s}.nii.gz") for s in _TEST_LABEL_SUFFIXES]
        label = next((c for c in candidates if os.path.isfile(c)), None)
        if label is None:
            raise NNWError(f"{candidates[0]} is missing (label of {image}); add it or remove {labels_dir}.")
        pairs.append((case, image, label))
    return pairs


def find_cases(source: str) -> Tuple[List[Tuple[str, str, str]], List[Tuple[str, str, str]]]:
    """(train, val) lists of (case id, image, label) of an MSCMRseg source folder."""
    if not os.path.isdir(source):
        raise NNWError(f"MSCMRseg source folder {source} does not exist; pass the folder containing train/ and val/.")
    train = _pairs(source, "train", "_scribble")
    val = _pairs(source, "val", "_manual")
    duplicates = sorted({c for c, _, _ in train} & {c for c, _, _ in val})
    if duplicates:
        raise NNWError(f"case {duplicates[0]} is in both {source}/train and {source}/val; remove one of them.")
    return train, val


def convert(source: str, nnunet_raw: str, overwrite: bool = False, test: Optional[str] = None,
            verbose: bool = True, dataset_name: str = DATASET_NAME,
            train_labels: Optional[Callable[[str, np.ndarray], np.ndarray]] = None,
            preprocessed: Optional[str] = None) -> str:
    """Convert MSCMRseg into ``nnunet_raw/<dataset_name>`` (default Dataset803_MSCMRScribble); returns that folder.

    ``train_labels(case, scribbles)`` (hook, e.g. Dataset809's few-scribble setting) returns the labelsTr array of
    a train subject from its scribbles (ignore = 4); the val subjects always keep their dense labels.
    """
    train, val = find_cases(source)
    test_pairs = _test_pairs(test) if test is not None else []
    train_ids, val_ids = [c for c, _, _ in train], [c for c, _, _ in val]
    target = os.path.join(nnunet_raw, dataset_name)
    splits = [{"train": sorted(train_ids), "val": sorted(val_ids)}]
    with staged_dataset(target, overwrite, splits, preprocessed) as out:
        prepare_dataset_folder(out, test_set=bool(test_pairs))

        for (case, image_path, label_path), dense in [(p, False) for p in train] + [(p, True) for p in val]:
            image = copy_image(image_path, os.path.join(out, "imagesTr", f"{case}_0000.nii.gz"))
            labels, _ = label_array(label_path, CARDIAC_IGNORE - 1 if dense else CARDIAC_IGNORE, image)
            if not dense and train_labels is not None:
                labels = train_labels(case, labels)
            write_label(labels, image, os.path.join(out, "labelsTr", f"{case}.nii.gz"), label_path)
            if dense:
                write_label(labels, image, os.path.join(out, DENSE_FOLDER, f"{case}.nii.gz"), label_path)
        if any(label is not None for _, _, label in test_pairs):
            os.makedirs(os.path.join(out, "labelsTs"), exist_ok=True)
        for case, image_path, label_path in test_pairs:
            image = copy_image(image_path, os.path.join(out, "imagesTs", f"{case}_0000.nii.gz"))
            if label_path is not None:
                labels, _ = label_array(label_path, CARDIAC_IGNORE - 1, image)
                write_label(labels, image, os.path.join(out, "labelsTs", f"{case}.nii.gz"), label_path)

        write_dataset_json(out, {**CARDIAC_LABELS, "ignore": CARDIAC_IGNORE}, len(train) + len(val),
                           name=dataset_name,
                           description=f"MS-CMRSeg 2019 LGE MRI: {len(train)} train subjects with scribbles, "
                                       f"{len(val)} val subjects with dense labels (fold 0 validation); "
                                       f"{DENSE_FOLDER}: dense labels of the val subjects for evaluation.")
    if verbose:
        print(f"wrote {len(train) + len(val)} training and {len(test_pairs)} test cases to {target}")
    return target


def main(argv=None) -> None:
    parser = conversion_parser(__doc__.splitlines()[0], "MSCMRseg folder containing train/ and val/")
    parser.add_argument("--test", default=None, metavar="FOLDER",
                        help="test set folder with images/ (and optionally labels/) -> imagesTs (labelsTs)")
    args = parser.parse_args(argv)
    convert(args.source, args.nnunet_raw, overwrite=args.overwrite, test=args.test, preprocessed=args.preprocessed)


if __name__ == "__main__":
    main()
