"""Left Atrium 2018 (LA) in the UA-MT h5 layout -> semi-supervised nnU-Net v2 raw dataset.

Source layout (yulequan/UA-MT ``data/``, used by most semi-supervised LA papers):

    ROOT/2018LA_Seg_Training Set/<case>/mri_norm2.h5   datasets 'image' (float, z-scored) and 'label' (0 / 1)
    ROOT/train.list                                    80 case names, one per line
    ROOT/test.list                                     20 case names

(``ROOT`` may also be the folder that contains ``data/``.) The h5 arrays are in (x, y, z) order, already cropped
around the ground truth in-plane with a random 10-20 voxel margin (UA-MT's ``la_heart_processing.py``: the crop uses
the label of every case, unlabelled and test ones included, a known artefact of the benchmark) and z-scored.

Output ``Dataset<id>_LASemi<N>`` (default id 807 for 8 labelled cases = 10 %, 808 for 16 = 20 %, else
``--dataset-id``):

- ``imagesTr``: all training cases, NIfTI at 0.625 mm isotropic (arrays transposed to SimpleITK's (z, y, x));
- ``labelsTr``: the first N cases of ``train.list`` keep their label (0 background, 1 left atrium); every other
  training case gets a map that is entirely the ignore label 2, so nnU-Net (foreground sampling, class locations,
  fingerprint) never sees its label;
- ``labelsTr_dense``: the real labels of all training cases, for evaluation only (nnU-Net never reads it);
- ``imagesTs`` / ``labelsTs``: the ``test.list`` cases and their labels (score predictions against ``labelsTs``);
- ``splits_final.json``: one fold, training on all training cases and validating on the labelled ones (monitoring
  only, they are trained on; the LA protocol scores on the test cases). ``-f all`` does the same with the
  weak-label trainers, which drop unlabelled cases from validation.

Reading h5 needs ``h5py`` (imported when the first case is read).
"""
import os
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from nnunet_weak.annotation.nnunet_io import (DENSE_FOLDER, prepare_dataset_folder, staged_dataset, write_dataset_json,
                                              write_image)
from nnunet_weak.utilities.errors import NNWError

TRAINING_FOLDER = "2018LA_Seg_Training Set"
CASE_FILE = "mri_norm2.h5"
LA_LABELS = {"background": 0, "left_atrium": 1, "ignore": 2}
LA_IGNORE = 2
LA_SPACING = 0.625
DEFAULT_IDS = {8: 807, 16: 808}    # UA-MT's 10 % and 20 % settings

Reader = Callable[[str], Tuple[np.ndarray, np.ndarray]]


def read_h5_case(path: str) -> Tuple[np.ndarray, np.ndarray]:
    """(image float32, label uint8) arrays of one UA-MT case file, in the file's (x, y, z) order."""
    try:
        import h5py
    except ImportError:
        raise NNWError("reading the UA-MT LA .h5 files needs h5py, which is not installed: pip install h5py") from None
    with h5py.File(path, "r") as f:
        missing = [k for k in ("image", "label") if k not in f]
        if missing:
            raise NNWError(f"{path} lacks the dataset(s) {missing}; expected UA-MT's mri_norm2.h5 with 'image' and "
                           f"'label'.")
        return np.asarray(f["image"][()], dtype=np.float32), np.asarray(f["label"][()])


def read_case_list(path: str) -> List[str]:
    """Case names of a UA-MT list file; lines may also be paths ending in ``<case>/mri_norm2.h5``."""
    if not os.path.isfile(path):
        raise NNWError(f"case list {path} not found; the UA-MT layout has train.list and test.list next to "
                       f"'{TRAINING_FOLDER}'.")
    names = []
    with open(path) as f:
        for line in f:
            line = line.strip().rstrip("/")
            if not line:
                continue
            if line.endswith(".h5"):
                line = os.path.dirname(line)
            names.append(os.path.basename(line))
    if not names:
        raise NNWError(f"{path} lists no cases.")
    return names


def find_la_root(root: str) -> str:
    """The folder holding ``train.list`` and the training folder (``root`` itself or ``root/data``)."""
    for candidate in (root, os.path.join(root, "data")):
        if os.path.isdir(os.path.join(candidate, TRAINING_FOLDER)):
            return candidate
    raise NNWError(f"'{TRAINING_FOLDER}' not found in {root} or {os.path.join(root, 'data')}; pass the UA-MT data "
                   f"folder that contains it and train.list / test.list.")


def labelled_count(n_train: int, n_labelled: Optional[int] = None, fraction: Optional[float] = None) -> int:
    """Number of labelled training cases from ``--labelled N`` or ``--labelled-fraction`` (exactly one)."""
    if (n_labelled is None) == (fraction is None):
        raise NNWError("give exactly one of --labelled N and --labelled-fraction F")
    if fraction is not None:
        if not 0.0 < fraction <= 1.0:
            raise NNWError(f"--labelled-fraction must lie in (0, 1], got {fraction}")
        n_labelled = int(round(fraction * n_train))
    if not 1 <= n_labelled <= n_train:
        raise NNWError(f"the number of labelled cases must lie in 1..{n_train} (the training list), got {n_labelled}")
    return n_labelled


def dataset_name_for(n_labelled: int, dataset_id: Optional[int] = None) -> str:
    if dataset_id is None:
        if n_labelled not in DEFAULT_IDS:
            raise NNWError(f"no default dataset id for {n_labelled} labelled cases (807 = 8, 808 = 16); pass "
                           f"--dataset-id.")
        dataset_id = DEFAULT_IDS[n_labelled]
    return f"Dataset{int(dataset_id):03d}_LASemi{n_labelled}"


def _to_image(array_xyz: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(array_xyz, (2, 1, 0))))
    image.SetSpacing((LA_SPACING,) * 3)
    return image


def _checked_label(label: np.ndarray, image: np.ndarray, path: str) -> np.ndarray:
    if label.shape != image.shape:
        raise NNWError(f"{path}: label shape {label.shape} differs from image shape {image.shape}.")
    values = np.unique(label)
    if not set(values.tolist()) <= {0, 1}:
        raise NNWError(f"{path}: label values {values.tolist()[:10]}, expected 0 / 1 (UA-MT's binary left atrium).")
    return label.astype(np.uint8)


def convert_la_semi(root: str, nnunet_raw: str, n_labelled: Optional[int] = None, fraction: Optional[float] = None,
                    dataset_id: Optional[int] = None, overwrite: bool = False, reader: Reader = read_h5_case,
                    verbose: bool = True, preprocessed: Optional[str] = None) -> str:
    """Convert the UA-MT LA data; ``reader(path) -> (image, label)`` in (x, y, z) order; ``preprocessed``: the
    nnUNet_preprocessed folder that also gets the splits. Returns the dataset folder."""
    data = find_la_root(root)
    train = read_case_list(os.path.join(data, "train.list"))
    test = read_case_list(os.path.join(data, "test.list"))
    overlap = sorted(set(train) & set(test))
    if overlap:
        raise NNWError(f"train.list and test.list share cases {overlap[:5]}; fix the lists.")
    n = labelled_count(len(train), n_labelled, fraction)
    labelled = train[:n]
    name = dataset_name_for(n, dataset_id)
    target = os.path.join(nnunet_raw, name)
    splits = [{"train": sorted(train), "val": sorted(labelled)}]
    for case in train + test:
        if not os.path.isfile(os.path.join(data, TRAINING_FOLDER, case, CASE_FILE)):
            raise NNWError(f"{os.path.join(data, TRAINING_FOLDER, case, CASE_FILE)} is missing (listed in "
                           f"{'train' if case in train else 'test'}.list).")
    with staged_dataset(target, overwrite, splits, preprocessed) as out:
        prepare_dataset_folder(out, test_set=True)
        os.makedirs(os.path.join(out, "labelsTs"), exist_ok=True)

        labelled_set = set(labelled)
        for case in train + test:
            path = os.path.join(data, TRAINING_FOLDER, case, CASE_FILE)
            image, label = reader(path)
            label = _checked_label(np.asarray(label), np.asarray(image), path)
            images, labels = ("imagesTr", "labelsTr") if case in train else ("imagesTs", "labelsTs")
            write_image(_to_image(np.asarray(image, dtype=np.float32)),
                        os.path.join(out, images, f"{case}_0000.nii.gz"))
            if case in train:
                write_image(_to_image(label), os.path.join(out, DENSE_FOLDER, f"{case}.nii.gz"))
                if case not in labelled_set:
                    label = np.full_like(label, LA_IGNORE)
            write_image(_to_image(label), os.path.join(out, labels, f"{case}.nii.gz"))

        write_dataset_json(out, LA_LABELS, len(train), name=name, channel_names={"0": "MRI"},
                           description=f"Left Atrium 2018 (UA-MT h5 layout, GT-cropped and z-scored), {len(train)} "
                                       f"training cases of which the first {n} of train.list are labelled and the "
                                       f"rest all-ignore; {len(test)} test cases in imagesTs / labelsTs; "
                                       f"{DENSE_FOLDER}: dense labels of the training cases for evaluation.",
                           labelled_cases=labelled, test_cases=test)
    if verbose:
        print(f"wrote {len(train)} training ({n} labelled) and {len(test)} test cases to {target}")
    return target


def la_parser_arguments(parser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--labelled-fraction", type=float, help="share of train.list that keeps its labels (0.1, 0.2)")
    group.add_argument("--labelled", type=int, help="number of labelled cases: the first N of train.list (8, 16)")
    parser.add_argument("--dataset-id", type=int, default=None,
                        help="nnU-Net dataset id (default 807 for 8 labelled cases, 808 for 16)")


def main(argv: Optional[Sequence[str]] = None, description: str = "") -> str:
    from nnunet_weak.annotation.nnunet_io import conversion_parser
    parser = conversion_parser(description or __doc__.splitlines()[0],
                               f"UA-MT data folder with '{TRAINING_FOLDER}', train.list and test.list")
    la_parser_arguments(parser)
    args = parser.parse_args(argv)
    return convert_la_semi(args.source, args.nnunet_raw, n_labelled=args.labelled, fraction=args.labelled_fraction,
                           dataset_id=args.dataset_id, overwrite=args.overwrite, preprocessed=args.preprocessed)
