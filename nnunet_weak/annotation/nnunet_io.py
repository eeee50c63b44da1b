"""Shared helpers of the dataset conversion scripts (``dataset_conversion/``): writing nnU-Net v2 raw datasets.

Contents: the refuse-to-overwrite check, image/label writing with the image's geometry, ``dataset.json``,
``splits_final.json`` (raw folder and, if ``nnUNet_preprocessed`` is set, the preprocessed folder), the ACDC
layout reader and the WSL4MIS/PCLMix 5-fold ACDC splits, and the ACDC conversion used by Dataset801/802.

Every raw dataset written here keeps the dense reference labels of its evaluation cases in ``labelsTr_dense/``
beside ``labelsTr/`` (same file names), for evaluation only; nnU-Net itself never reads that folder.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import SimpleITK as sitk

from nnunet_weak.utilities.errors import NNWError

OVERWRITE_FLAG = "--overwrite"
DENSE_FOLDER = "labelsTr_dense"
SPLITS_FILE = "splits_final.json"
# what a conversion writes into a dataset folder; --overwrite removes exactly these, nothing else
OUTPUT_ENTRIES = ("imagesTr", "labelsTr", DENSE_FOLDER, "imagesTs", "labelsTs", "dataset.json", SPLITS_FILE,
                  "points", "seed_quality.csv", "seed_quality.json")

CARDIAC_LABELS = {"background": 0, "RV": 1, "MYO": 2, "LV": 3}
CARDIAC_IGNORE = 4
ACDC_NUM_FOLDS = 5
ACDC_PATIENTS_PER_FOLD = 20


# ------------------------------------------------------------------------------------------------------ CLI
def conversion_parser(description: str, source_help: str) -> argparse.ArgumentParser:
    """Command line shared by the conversion scripts: ``SOURCE NNUNET_RAW [--overwrite]``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("source", help=source_help)
    parser.add_argument("nnunet_raw", help="nnUNet_raw folder to write the dataset into (created if missing)")
    parser.add_argument(OVERWRITE_FLAG, dest="overwrite", action="store_true",
                        help="replace the outputs of an earlier conversion in the dataset folder")
    return parser


# --------------------------------------------------------------------------------------------------- images
@contextlib.contextmanager
def quiet_sitk():
    """Silence ITK warnings (ACDC files warn "unexpected scales in sform") and restore the previous setting."""
    previous = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(previous)


def read_image(path: str) -> sitk.Image:
    if not os.path.isfile(path):
        raise NNWError(f"{path} does not exist; check the source folder layout.")
    with quiet_sitk():
        return sitk.ReadImage(path)


def write_image(image: sitk.Image, path: str) -> None:
    with quiet_sitk():
        sitk.WriteImage(image, path, True)


@dataclass(frozen=True)
class Geometry:
    """Size (x, y, z order, as SimpleITK), spacing, origin and direction of an image."""
    size: Tuple[int, ...]
    spacing: Tuple[float, ...]
    origin: Tuple[float, ...]
    direction: Tuple[float, ...]

    @classmethod
    def of(cls, image: sitk.Image) -> "Geometry":
        return cls(tuple(image.GetSize()), tuple(image.GetSpacing()), tuple(image.GetOrigin()),
                   tuple(image.GetDirection()))

    @classmethod
    def of_file(cls, path: str) -> "Geometry":
        """Geometry from the file header only (no pixel data read)."""
        if not os.path.isfile(path):
            raise NNWError(f"{path} does not exist; check the source folder layout.")
        reader = sitk.ImageFileReader()
        reader.SetFileName(path)
        with quiet_sitk():
            reader.ReadImageInformation()
        return cls(tuple(reader.GetSize()), tuple(reader.GetSpacing()), tuple(reader.GetOrigin()),
                   tuple(reader.GetDirection()))

    def matches(self, other: "Geometry", tol: float = 1e-4) -> bool:
        return (self.size == other.size
                and np.allclose(self.spacing, other.spacing, atol=tol)
                and np.allclose(self.origin, other.origin, atol=tol)
                and np.allclose(self.direction, other.direction, atol=tol))


def copy_image(source: str, target: str) -> sitk.Image:
    """Read ``source`` and write it to ``target`` unchanged (pixel type and geometry); returns the image."""
    image = read_image(source)
    write_image(image, target)
    return image


def label_array(path: str, max_value: int, reference: Union[sitk.Image, Geometry]) -> Tuple[np.ndarray, bool]:
    """Read the label map at ``path``; check its values (``0..max_value``) and that its shape matches the image.

    Returns the array (uint8) and whether the label's own geometry differed from the reference image's.
    """
    image = read_image(path)
    ref = reference if isinstance(reference, Geometry) else Geometry.of(reference)
    if tuple(image.GetSize()) != ref.size:
        raise NNWError(f"{path} has size {image.GetSize()} but its image has size {ref.size}; "
                       f"the label must have the image's shape (fix or remove this case).")
    arr = sitk.GetArrayFromImage(image)
    if arr.size:
        lo, hi = arr.min(), arr.max()
        if lo < 0 or hi > max_value or not np.all(np.mod(arr, 1) == 0):
            raise NNWError(f"{path} holds label values {sorted(np.unique(arr).tolist())[:10]}, expected integers "
                           f"0..{max_value}; fix the label file.")
    return arr.astype(np.uint8 if max_value <= 255 else np.int16), not Geometry.of(image).matches(ref)


def write_label(array: np.ndarray, reference: Union[sitk.Image, Geometry], path: str, source: str) -> None:
    """Write ``array`` (z, y, x) to ``path`` with the geometry of ``reference`` (the case's image).

    ``source`` names the file the labels came from, for the error message on a shape mismatch.
    """
    ref = reference if isinstance(reference, Geometry) else Geometry.of(reference)
    if tuple(array.shape[::-1]) != ref.size:
        raise NNWError(f"{source}: label shape {tuple(array.shape)} (z, y, x) does not match its image "
                       f"{tuple(ref.size[::-1])}; fix or remove this case.")
    out = sitk.GetImageFromArray(array)
    out.SetSpacing(ref.spacing)
    out.SetOrigin(ref.origin)
    out.SetDirection(ref.direction)
    write_image(out, path)


# -------------------------------------------------------------------------------------------- dataset folder
def _is_nonempty_dir(folder: str) -> bool:
    return os.path.isdir(folder) and len(os.listdir(folder)) > 0


def check_target_folder(folder: str, overwrite: bool) -> None:
    """Refuse to write into an existing, non-empty dataset folder unless ``overwrite``."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise NNWError(f"{folder} exists and is not a folder; remove it or choose another target.")
    if _is_nonempty_dir(folder) and not overwrite:
        raise NNWError(f"dataset folder {folder} already exists; pass {OVERWRITE_FLAG} to replace its contents.")


def prepare_dataset_folder(folder: str, overwrite: bool, test_set: bool = False) -> None:
    """Create ``folder`` with imagesTr/labelsTr/labelsTr_dense (and imagesTs when ``test_set``).

    With ``overwrite`` only the entries a conversion writes (:data:`OUTPUT_ENTRIES`) are removed first; other
    files a user put there stay.
    """
    check_target_folder(folder, overwrite)
    if os.path.isdir(folder):
        for name in OUTPUT_ENTRIES:
            path = os.path.join(folder, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
    for name in ("imagesTr", "labelsTr", DENSE_FOLDER) + (("imagesTs",) if test_set else ()):
        os.makedirs(os.path.join(folder, name), exist_ok=True)


def write_dataset_json(folder: str, labels: Dict[str, int], num_training: int, name: Optional[str] = None,
                       description: Optional[str] = None, channel_names: Optional[Dict[str, str]] = None,
                       file_ending: str = ".nii.gz", **extra) -> dict:
    """Write an nnU-Net v2 ``dataset.json``; ``labels`` may contain ``"ignore"`` (it must be the highest)."""
    content = {
        "channel_names": channel_names if channel_names is not None else {"0": "MRI"},
        "labels": {k: int(v) for k, v in labels.items()},
        "numTraining": int(num_training),
        "file_ending": file_ending,
    }
    if name is not None:
        content["name"] = name
    if description is not None:
        content["description"] = description
    content.update(extra)
    with open(os.path.join(folder, "dataset.json"), "w") as f:
        json.dump(content, f, indent=4)
    return content


# --------------------------------------------------------------------------------------------------- splits
def _preprocessed_splits_path(dataset_folder: str) -> Optional[str]:
    root = os.environ.get("nnUNet_preprocessed", "").strip()
    if not root:
        return None
    return os.path.join(root, os.path.basename(os.path.normpath(dataset_folder)), SPLITS_FILE)


def _normalise_splits(splits: Sequence[dict]) -> List[dict]:
    return [{"train": list(s["train"]), "val": list(s["val"])} for s in splits]


def check_splits_writable(dataset_folder: str, splits: Sequence[dict], overwrite: bool) -> None:
    """Refuse (unless ``overwrite``) when ``$nnUNet_preprocessed/<dataset>/splits_final.json`` holds other splits."""
    path = _preprocessed_splits_path(dataset_folder)
    if path is None or not os.path.isfile(path) or overwrite:
        return
    try:
        with open(path) as f:
            existing = json.load(f)
    except (OSError, ValueError):
        existing = None
    if existing != _normalise_splits(splits):
        raise NNWError(f"{path} already exists with different splits; pass {OVERWRITE_FLAG} to replace it "
                       f"(or delete it).")


def write_splits(dataset_folder: str, splits: Sequence[dict], overwrite: bool) -> List[str]:
    """Write ``splits_final.json`` into the raw dataset folder and, if ``nnUNet_preprocessed`` is set, into
    ``$nnUNet_preprocessed/<dataset>/``. Returns the paths written."""
    splits = _normalise_splits(splits)
    check_splits_writable(dataset_folder, splits, overwrite)
    paths = [os.path.join(dataset_folder, SPLITS_FILE)]
    extra = _preprocessed_splits_path(dataset_folder)
    if extra is not None:
        os.makedirs(os.path.dirname(extra), exist_ok=True)
        paths.append(extra)
    for path in paths:
        with open(path, "w") as f:
            json.dump(splits, f, indent=4)
    return paths


# ----------------------------------------------------------------------------------------------------- ACDC
_ACDC_PATIENT = re.compile(r"^patient(\d{3})$")
_ACDC_FRAME = re.compile(r"^(patient\d{3}_frame\d{2})\.nii\.gz$")


@dataclass(frozen=True)
class AcdcFrame:
    case: str          # patientNNN_frameFF
    patient: int
    image: str
    gt: str
    scribble: str


def acdc_patient(case: str) -> int:
    """Patient number of an ACDC case id ``patientNNN_frameFF``."""
    m = re.match(r"^patient(\d{3})", case)
    if m is None:
        raise NNWError(f"case id {case!r} is not an ACDC case (expected patientNNN_frameFF).")
    return int(m.group(1))


def acdc_fold_patients(fold: int) -> range:
    """Validation patients of ``fold`` (0-based) in the WSL4MIS/PCLMix protocol: 20k+1 .. 20k+20."""
    if not 0 <= fold < ACDC_NUM_FOLDS:
        raise ValueError(f"ACDC fold must be 0..{ACDC_NUM_FOLDS - 1}, got {fold}")
    return range(ACDC_PATIENTS_PER_FOLD * fold + 1, ACDC_PATIENTS_PER_FOLD * (fold + 1) + 1)


def acdc_five_fold_splits(cases: Iterable[str]) -> List[dict]:
    """nnU-Net splits (list of {"train", "val"}) of the WSL4MIS/PCLMix 5-fold ACDC protocol.

    Fold k validates all frames of patients 20k+1..20k+20 and trains on every other case (fold 0 = patients
    001-020, the published PCLMix "fold 1" test set). Patients outside 1..100 are in every training set.
    """
    cases = sorted(cases)
    splits = []
    for fold in range(ACDC_NUM_FOLDS):
        val_patients = acdc_fold_patients(fold)
        val = [c for c in cases if acdc_patient(c) in val_patients]
        train = [c for c in cases if acdc_patient(c) not in val_patients]
        splits.append({"train": train, "val": val})
    return splits


def find_acdc_frames(source: str) -> List[AcdcFrame]:
    """List the frames of an ACDC release laid out as ``SOURCE/training/patientNNN/patientNNN_frameFF*.nii.gz``
    (``SOURCE`` may also be the ``training`` folder itself). Every frame needs ``_gt`` and ``_scribble`` files."""
    if not os.path.isdir(source):
        raise NNWError(f"ACDC source folder {source} does not exist; pass the folder that contains training/.")
    training = os.path.join(source, "training")
    if not os.path.isdir(training):
        if any(_ACDC_PATIENT.match(n) for n in os.listdir(source)):
            training = source
        else:
            raise NNWError(f"{training} does not exist; pass the ACDC folder that contains "
                           f"training/patientNNN/patientNNN_frameFF.nii.gz.")
    frames = []
    for patient_dir in sorted(os.listdir(training)):
        pm = _ACDC_PATIENT.match(patient_dir)
        folder = os.path.join(training, patient_dir)
        if pm is None or not os.path.isdir(folder):
            continue
        cases = sorted(m.group(1) for m in map(_ACDC_FRAME.match, os.listdir(folder)) if m is not None)
        if not cases:
            raise NNWError(f"{folder} holds no {patient_dir}_frameFF.nii.gz image; fix or remove the folder.")
        for case in cases:
            paths = {kind: os.path.join(folder, f"{case}{suffix}.nii.gz")
                     for kind, suffix in (("image", ""), ("gt", "_gt"), ("scribble", "_scribble"))}
            for path in paths.values():
                if not os.path.isfile(path):
                    raise NNWError(f"{path} is missing; every ACDC frame needs its image, _gt and _scribble "
                                   f"files (restore it or remove the frame).")
            frames.append(AcdcFrame(case=case, patient=int(pm.group(1)), **paths))
    if not frames:
        raise NNWError(f"{training} holds no patientNNN folders; pass the ACDC folder that contains training/.")
    return frames


def convert_acdc(source: str, nnunet_raw: str, dataset_name: str, scribbles: bool, overwrite: bool = False,
                 verbose: bool = True,
                 weak_labels: Optional[Callable[[AcdcFrame, sitk.Image, np.ndarray], np.ndarray]] = None,
                 kind: Optional[str] = None) -> str:
    """Convert every ACDC frame into ``nnunet_raw/dataset_name``; shared by Dataset801 (``scribbles=True``:
    labelsTr = scribbles, ignore 4), Dataset802 (``scribbles=False``: labelsTr = dense gt) and Dataset804
    (``weak_labels``: a function (frame, image, dense gt (z, y, x)) -> labelsTr array with ignore 4, e.g. expanded
    points; ``kind`` describes it in dataset.json). All keep the dense gt in labelsTr_dense and write the 5-fold
    WSL4MIS/PCLMix splits. Returns the dataset folder."""
    frames = find_acdc_frames(source)
    target = os.path.join(nnunet_raw, dataset_name)
    splits = acdc_five_fold_splits(f.case for f in frames)
    check_target_folder(target, overwrite)
    check_splits_writable(target, splits, overwrite)
    prepare_dataset_folder(target, overwrite)

    geometry_fixed = 0
    for frame in frames:
        image = copy_image(frame.image, os.path.join(target, "imagesTr", f"{frame.case}_0000.nii.gz"))
        gt, gt_moved = label_array(frame.gt, CARDIAC_IGNORE - 1, image)
        write_label(gt, image, os.path.join(target, DENSE_FOLDER, f"{frame.case}.nii.gz"), frame.gt)
        if weak_labels is not None:
            write_label(weak_labels(frame, image, gt), image, os.path.join(target, "labelsTr", f"{frame.case}.nii.gz"),
                        frame.gt)
        elif scribbles:
            scribble, sc_moved = label_array(frame.scribble, CARDIAC_IGNORE, image)
            write_label(scribble, image, os.path.join(target, "labelsTr", f"{frame.case}.nii.gz"), frame.scribble)
            gt_moved = gt_moved or sc_moved
        else:
            shutil.copyfile(os.path.join(target, DENSE_FOLDER, f"{frame.case}.nii.gz"),
                            os.path.join(target, "labelsTr", f"{frame.case}.nii.gz"))
        geometry_fixed += int(gt_moved)

    labels = dict(CARDIAC_LABELS)
    weak = scribbles or weak_labels is not None
    if weak:
        labels["ignore"] = CARDIAC_IGNORE
    if kind is None:
        kind = "scribbles (Valvano et al. 2021)" if weak else "dense reference labels"
    write_dataset_json(target, labels, len(frames), name=dataset_name,
                       description=f"ACDC cine MRI, ED and ES frames of {len({f.patient for f in frames})} "
                                   f"patients; labelsTr: {kind}; {DENSE_FOLDER}: dense labels for evaluation. "
                                   f"Splits: WSL4MIS/PCLMix 5 folds (fold k validates patients 20k+1..20k+20).")
    write_splits(target, splits, overwrite)
    if verbose:
        if geometry_fixed:
            print(f"{geometry_fixed} frame(s) had label geometry differing from the image; labels were written "
                  f"with the image's geometry.")
        print(f"wrote {len(frames)} cases to {target}")
    return target
