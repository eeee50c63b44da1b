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
import tempfile
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import SimpleITK as sitk

from nnunet_weak.utilities.env import preprocessed_from_env
from nnunet_weak.utilities.errors import NNWError

OVERWRITE_FLAG = "--overwrite"
DENSE_FOLDER = "labelsTr_dense"
SPLITS_FILE = "splits_final.json"
# the files a conversion wrote into a dataset folder: --overwrite replaces exactly these, nothing else
OUTPUTS_MANIFEST = ".nnunet_weak_outputs.json"

CARDIAC_LABELS = {"background": 0, "RV": 1, "MYO": 2, "LV": 3}
CARDIAC_IGNORE = 4
ACDC_NUM_FOLDS = 5
ACDC_PATIENTS_PER_FOLD = 20


# ------------------------------------------------------------------------------------------------------ CLI
def acdc_entry_points(dataset_name: str, scribbles: bool, description: str):
    """``(convert, main)`` of the plain ACDC dataset modules (Dataset801 scribbles, Dataset802 dense labels)."""
    def convert(source: str, nnunet_raw: str, overwrite: bool = False, verbose: bool = True,
                preprocessed: Optional[str] = None) -> str:
        return convert_acdc(source, nnunet_raw, dataset_name, scribbles=scribbles, overwrite=overwrite,
                            verbose=verbose, preprocessed=preprocessed)

    def main(argv=None) -> str:
        args = conversion_parser(description, "ACDC folder containing training/").parse_args(argv)
        return convert(args.source, args.nnunet_raw, overwrite=args.overwrite, preprocessed=args.preprocessed)

    convert.__doc__ = (f"Convert ACDC ({'scribble' if scribbles else 'dense'} labels) into "
                       f"``nnunet_raw/{dataset_name}``; returns that folder.")
    return convert, main


def conversion_parser(description: str, source_help: str) -> argparse.ArgumentParser:
    """Command line shared by the conversion scripts: ``SOURCE NNUNET_RAW [--overwrite] [--preprocessed FOLDER]``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("source", help=source_help)
    parser.add_argument("nnunet_raw", help="nnUNet_raw folder to write the dataset into (created if missing)")
    add_output_arguments(parser)
    return parser


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """``--overwrite`` and ``--preprocessed FOLDER``, shared by every command that writes a dataset."""
    parser.add_argument(OVERWRITE_FLAG, dest="overwrite", action="store_true",
                        help="replace the files an earlier run of this command wrote into the dataset folder")
    parser.add_argument("--preprocessed", default=preprocessed_from_env(), metavar="FOLDER",
                        help="nnUNet_preprocessed folder that also gets the dataset's splits_final.json "
                             "(default: $nnUNet_preprocessed; unset: the dataset folder only)")


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
    parent = os.path.dirname(os.path.abspath(folder))
    if os.path.exists(parent) and not os.path.isdir(parent):
        raise NNWError(f"{parent} is not a folder; point the conversion at an nnUNet_raw folder.")
    if _is_nonempty_dir(folder) and not overwrite:
        raise NNWError(f"dataset folder {folder} already exists; pass {OVERWRITE_FLAG} to replace its contents.")
    match = re.match(r"^(Dataset\d{3})_", os.path.basename(os.path.abspath(folder)))
    if match and os.path.isdir(parent):
        twins = sorted(n for n in os.listdir(parent) if n.startswith(match.group(1) + "_")
                       and n != os.path.basename(os.path.abspath(folder)) and not n.startswith("."))
        if twins:
            raise NNWError(f"{os.path.join(parent, twins[0])} already uses dataset id {match.group(1)[7:]}; nnU-Net "
                           f"needs one folder per id. Remove or rename it, or convert under another id.")


def _files_under(folder: str) -> List[str]:
    return sorted(os.path.relpath(os.path.join(root, name), folder)
                  for root, _, names in os.walk(folder) for name in names)


def _recorded_outputs(target: str) -> List[str]:
    """Files an earlier conversion wrote into ``target`` (its manifest); entries leaving the folder are dropped."""
    path = os.path.join(target, OUTPUTS_MANIFEST)
    try:
        with open(path) as f:
            files = json.load(f)["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    inside = []
    for rel in files:
        norm = os.path.normpath(str(rel))
        if not os.path.isabs(norm) and not norm.startswith(os.pardir):
            inside.append(norm)
    return inside


def _move_outputs(staging: str, target: str) -> None:
    """Replace the files the previous conversion wrote into ``target`` (its manifest) by those in ``staging``;
    everything else in ``target`` (a user's files) stays."""
    new, old = _files_under(staging), _recorded_outputs(target)
    os.makedirs(target, exist_ok=True)
    for rel in set(old) - set(new):
        path = os.path.join(target, rel)
        if os.path.isfile(path) or os.path.islink(path):
            os.remove(path)
    for rel in new:
        destination = os.path.join(target, rel)
        os.makedirs(os.path.dirname(destination), exist_ok=True)
        os.replace(os.path.join(staging, rel), destination)
    for folder in sorted({os.path.dirname(rel) for rel in old if os.path.dirname(rel)}, key=len, reverse=True):
        path = os.path.join(target, folder)
        if os.path.isdir(path) and not os.listdir(path):
            os.rmdir(path)
    with open(os.path.join(target, OUTPUTS_MANIFEST), "w") as f:
        json.dump({"written_by": "nnunet_weak", "files": new}, f, indent=1)


@contextlib.contextmanager
def staged_dataset(target: str, overwrite: bool, splits: Optional[Sequence[dict]] = None,
                   preprocessed: Optional[str] = None):
    """Yield a new folder beside ``target`` for a conversion to write the whole dataset into.

    Before anything is written: refuses a non-empty ``target`` without ``overwrite`` and, given the conversion's
    ``splits``, splits in ``preprocessed`` it may not replace (:func:`check_splits_writable`). Nothing in
    ``target`` changes until the block completes: a bad case found half-way leaves the earlier dataset as it was.
    Then the ``splits`` are written (into the dataset and ``preprocessed``, :func:`write_splits`) and the files of
    the previous conversion (listed in ``target``'s manifest) are replaced by the new ones; files the user added
    stay.
    """
    check_target_folder(target, overwrite)
    if splits is not None:
        check_splits_writable(target, splits, overwrite, preprocessed)
    parent = os.path.dirname(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(target))}.partial-", dir=parent)
    try:
        yield staging
        if splits is not None:
            write_splits(staging, splits, dataset_name=os.path.basename(os.path.abspath(target)),
                         preprocessed=preprocessed)
        _move_outputs(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def prepare_dataset_folder(folder: str, test_set: bool = False) -> None:
    """Create imagesTr/labelsTr/labelsTr_dense (and imagesTs when ``test_set``) in a staging folder."""
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
def _preprocessed_splits_path(dataset_name: str, preprocessed: Optional[str]) -> Optional[str]:
    if not preprocessed:
        return None
    return os.path.join(preprocessed, dataset_name, SPLITS_FILE)


def _normalise_splits(splits: Sequence[dict]) -> List[dict]:
    return [{"train": list(s["train"]), "val": list(s["val"])} for s in splits]


def _read_json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def check_splits_writable(dataset_folder: str, splits: Sequence[dict], overwrite: bool,
                          preprocessed: Optional[str] = None) -> None:
    """Refuse when ``preprocessed/<dataset>/splits_final.json`` holds other splits, unless a conversion wrote them
    (they equal the dataset folder's own ``splits_final.json``) and ``overwrite`` is given: a user's own splits
    there are never replaced. ``preprocessed``: the nnUNet_preprocessed folder, or None (nothing to check)."""
    path = _preprocessed_splits_path(os.path.basename(os.path.normpath(dataset_folder)), preprocessed)
    if path is None or not os.path.isfile(path):
        return
    existing = _read_json(path)
    if existing == _normalise_splits(splits):
        return
    ours = existing is not None and existing == _read_json(os.path.join(dataset_folder, SPLITS_FILE))
    if not ours:
        raise NNWError(f"{path} holds splits this conversion did not write (they differ from "
                       f"{os.path.join(dataset_folder, SPLITS_FILE)}); move it away or delete it to use the "
                       f"conversion's splits.")
    if not overwrite:
        raise NNWError(f"{path} already exists with different splits; pass {OVERWRITE_FLAG} to replace it "
                       f"(or delete it).")


def write_splits(dataset_folder: str, splits: Sequence[dict], dataset_name: Optional[str] = None,
                 preprocessed: Optional[str] = None) -> List[str]:
    """Write ``splits_final.json`` into ``dataset_folder`` and, given the nnUNet_preprocessed folder
    ``preprocessed``, into ``preprocessed/<dataset_name>/`` (default: the folder's name; pass the target's name when
    writing into a staging folder). Returns the paths written."""
    splits = _normalise_splits(splits)
    name = dataset_name or os.path.basename(os.path.normpath(dataset_folder))
    paths = [os.path.join(dataset_folder, SPLITS_FILE)]
    extra = _preprocessed_splits_path(name, preprocessed)
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
    scribble: Optional[str]   # None when the release has no scribbles and the conversion needs none


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


def find_acdc_frames(source: str, scribbles: bool = True) -> List[AcdcFrame]:
    """List the frames of an ACDC release laid out as ``SOURCE/training/patientNNN/patientNNN_frameFF*.nii.gz``
    (``SOURCE`` may also be the ``training`` folder itself). Every frame needs a ``_gt`` file and, when
    ``scribbles``, a ``_scribble`` file (the official ACDC release has none: dense conversions do not ask)."""
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
            kinds = (("image", ""), ("gt", "_gt")) + ((("scribble", "_scribble"),) if scribbles else ())
            paths = {kind: os.path.join(folder, f"{case}{suffix}.nii.gz") for kind, suffix in kinds}
            for path in paths.values():
                if not os.path.isfile(path):
                    needed = "image, _gt and _scribble files" if scribbles else "image and _gt files"
                    raise NNWError(f"{path} is missing; every ACDC frame needs its {needed} (restore it or "
                                   f"remove the frame).")
            paths.setdefault("scribble", None)
            frames.append(AcdcFrame(case=case, patient=int(pm.group(1)), **paths))
    if not frames:
        raise NNWError(f"{training} holds no patientNNN folders; pass the ACDC folder that contains training/.")
    return frames


def convert_acdc(source: str, nnunet_raw: str, dataset_name: str, scribbles: bool, overwrite: bool = False,
                 verbose: bool = True,
                 weak_labels: Optional[Callable[[AcdcFrame, sitk.Image, np.ndarray], np.ndarray]] = None,
                 kind: Optional[str] = None, splits: Optional[List[dict]] = None, description: Optional[str] = None,
                 dataset_json_extra: Optional[dict] = None, preprocessed: Optional[str] = None) -> str:
    """Convert every ACDC frame into ``nnunet_raw/dataset_name``; shared by Dataset801 (``scribbles=True``:
    labelsTr = scribbles, ignore 4), Dataset802 (``scribbles=False``: labelsTr = dense gt) and Dataset804
    (``weak_labels``: a function (frame, image, dense gt (z, y, x)) -> labelsTr array with ignore 4, e.g. expanded
    points; ``kind`` describes it in dataset.json). All keep the dense gt in labelsTr_dense and write the 5-fold
    WSL4MIS/PCLMix splits unless ``splits`` are given; ``description`` and ``dataset_json_extra`` replace and extend
    dataset.json's defaults; ``preprocessed``: nnUNet_preprocessed folder that also gets the splits. Returns the
    dataset folder."""
    frames = find_acdc_frames(source, scribbles=scribbles)
    target = os.path.join(nnunet_raw, dataset_name)
    splits = acdc_five_fold_splits(f.case for f in frames) if splits is None else splits
    geometry_fixed = 0
    with staged_dataset(target, overwrite, splits, preprocessed) as out:
        prepare_dataset_folder(out)
        for frame in frames:
            image = copy_image(frame.image, os.path.join(out, "imagesTr", f"{frame.case}_0000.nii.gz"))
            gt, gt_moved = label_array(frame.gt, CARDIAC_IGNORE - 1, image)
            write_label(gt, image, os.path.join(out, DENSE_FOLDER, f"{frame.case}.nii.gz"), frame.gt)
            if weak_labels is not None:
                write_label(weak_labels(frame, image, gt), image,
                            os.path.join(out, "labelsTr", f"{frame.case}.nii.gz"), frame.gt)
            elif scribbles:
                scribble, sc_moved = label_array(frame.scribble, CARDIAC_IGNORE, image)
                write_label(scribble, image, os.path.join(out, "labelsTr", f"{frame.case}.nii.gz"), frame.scribble)
                gt_moved = gt_moved or sc_moved
            else:
                shutil.copyfile(os.path.join(out, DENSE_FOLDER, f"{frame.case}.nii.gz"),
                                os.path.join(out, "labelsTr", f"{frame.case}.nii.gz"))
            geometry_fixed += int(gt_moved)

        labels = dict(CARDIAC_LABELS)
        weak = scribbles or weak_labels is not None
        if weak:
            labels["ignore"] = CARDIAC_IGNORE
        if kind is None:
            kind = "scribbles (Valvano et al. 2021)" if weak else "dense reference labels"
        write_dataset_json(out, labels, len(frames), name=dataset_name,
                           description=description or
                           f"ACDC cine MRI, ED and ES frames of {len({f.patient for f in frames})} patients; labelsTr: "
                           f"{kind}; {DENSE_FOLDER}: dense labels for evaluation. Splits: WSL4MIS/PCLMix 5 folds "
                           f"(fold k validates patients 20k+1..20k+20).", **(dataset_json_extra or {}))
    if verbose:
        if geometry_fixed:
            print(f"{geometry_fixed} frame(s) had label geometry differing from the image; labels were written "
                  f"with the image's geometry.")
        print(f"wrote {len(frames)} cases to {target}")
    return target
