"""Derive a weak-label nnU-Net dataset from one of the user's own: the shared plumbing of the installed commands
(``nnunet_weak.annotation.commands``) and of ``dataset_conversion/simulate_scribbles.py``.

:func:`read_source` checks an nnU-Net v2 raw dataset (``dataset.json``, ``imagesTr`` with every channel of every
labelled case, ``labelsTr``) and lists its cases; :func:`derive_dataset` writes a new dataset whose ``labelsTr``
are a function of each case's label map, with

* the images copied unchanged (and ``imagesTs`` / ``labelsTs`` when present),
* the source labels kept in ``labelsTr_dense`` for evaluation (``nnunet_weak_evaluate``),
* ``ignore`` added to ``dataset.json`` as the highest label (or kept, for a source that already has one),
* the splits given, else the source's ``splits_final.json`` when it has one,
* the whole dataset staged beside the target and moved in at the end; an existing target is refused unless
  ``overwrite``, which replaces only what an earlier run of these tools wrote there,
* a summary per class: the share of each class's voxels that kept a label (``annotated``).
"""
import json
import os
import re
import shutil
import sys
import zlib
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from nnunet_weak.annotation.nnunet_io import (DENSE_FOLDER, SPLITS_FILE, Geometry, label_array,
                                              prepare_dataset_folder, staged_dataset, write_label)
from nnunet_weak.utilities.errors import NNWError
from nnunet_weak.utilities.labels import check_ignore_label


@dataclass
class SourceDataset:
    folder: str
    dataset_json: dict
    classes: Dict[str, int]          # without ignore
    ignore: Optional[int]            # the source's own ignore label, if it has one
    ending: str
    cases: List[str]
    image_files: Dict[str, List[str]]
    splits: Optional[list]

    def label_path(self, case: str) -> str:
        return os.path.join(self.folder, "labelsTr", case + self.ending)

    def dense_path(self, case: str) -> Optional[str]:
        """The dense reference of a case: the source's own ``labelsTr_dense`` copy, else (dense sources) its
        ``labelsTr``; None for a weak source without one."""
        kept = os.path.join(self.folder, DENSE_FOLDER, case + self.ending)
        if os.path.isfile(kept):
            return kept
        return self.label_path(case) if self.ignore is None else None


def case_rng(seed: int, case: str) -> np.random.Generator:
    """A generator per case, seeded by (seed, case id): a case's draw does not depend on the other cases."""
    return np.random.default_rng([int(seed), zlib.crc32(case.encode("utf-8"))])


def resolve_dataset(value: str) -> str:
    """A dataset folder from a folder path, a dataset id (``801``) or name (``Dataset801_X``) under $nnUNet_raw."""
    if os.path.isdir(value):
        return os.path.abspath(value)
    raw = os.environ.get("nnUNet_raw", "").strip()
    if raw and os.path.isdir(raw):
        if value.isdigit():
            matches = sorted(d for d in os.listdir(raw) if re.match(rf"^Dataset{int(value):03d}_", d))
            if len(matches) == 1:
                return os.path.join(raw, matches[0])
        elif os.path.isdir(os.path.join(raw, value)):
            return os.path.join(raw, value)
    raise NNWError(f"dataset {value!r} not found: pass a dataset folder, or a dataset id / name under "
                   f"$nnUNet_raw ({raw or 'unset'}).")


def resolve_target(value: str) -> str:
    """The target folder: a path, or a bare ``DatasetNNN_Name`` placed under $nnUNet_raw."""
    if os.sep not in value and re.match(r"^Dataset\d{3}_", value):
        raw = os.environ.get("nnUNet_raw", "").strip()
        if not raw:
            raise NNWError(f"target {value!r} is a dataset name but nnUNet_raw is not set; set it or give a path.")
        return os.path.join(raw, value)
    return os.path.abspath(value)


def read_source(folder: str) -> SourceDataset:
    json_path = os.path.join(folder, "dataset.json")
    if not os.path.isfile(json_path):
        raise NNWError(f"{json_path} does not exist; pass an nnU-Net raw dataset folder as the source.")
    with open(json_path) as f:
        dataset_json = json.load(f)
    ignore = check_ignore_label(dataset_json, json_path, required=False)
    classes = {n: int(v) for n, v in dataset_json["labels"].items() if n != "ignore"}
    ending = dataset_json.get("file_ending", ".nii.gz")
    labels_dir, images_dir = os.path.join(folder, "labelsTr"), os.path.join(folder, "imagesTr")
    for sub in (labels_dir, images_dir):
        if not os.path.isdir(sub):
            raise NNWError(f"{sub} does not exist; the source must be an nnU-Net raw dataset.")
    cases = sorted(n[:-len(ending)] for n in os.listdir(labels_dir) if n.endswith(ending))
    if not cases:
        raise NNWError(f"{labels_dir} holds no {ending} label files.")
    image_files: Dict[str, list] = {c: [] for c in cases}
    channel = re.compile(r"^(.+)_\d{4}" + re.escape(ending) + "$")
    orphans = set()
    for name in sorted(os.listdir(images_dir)):
        m = channel.match(name)
        if m is None:
            continue
        (image_files[m.group(1)].append(name) if m.group(1) in image_files else orphans.add(m.group(1)))
    if orphans:
        print(f"warning: {len(orphans)} image(s) in {images_dir} have no label file in {labels_dir} and are left "
              f"out, e.g. {sorted(orphans)[0]}", file=sys.stderr)
    for case, files in image_files.items():
        if not files:
            raise NNWError(f"{os.path.join(images_dir, case + '_0000' + ending)} is missing (image of "
                           f"{os.path.join(labels_dir, case + ending)}).")
    splits = None
    if os.path.isfile(os.path.join(folder, SPLITS_FILE)):
        with open(os.path.join(folder, SPLITS_FILE)) as f:
            splits = json.load(f)
    return SourceDataset(folder, dataset_json, classes, ignore, ending, cases, image_files, splits)


def derive_dataset(source: SourceDataset, target: str, make_label: Callable[[str, np.ndarray, Geometry], np.ndarray],
                   note: str, overwrite: bool = False, splits: Optional[Sequence[dict]] = None,
                   verbose: bool = True, classes: Optional[Dict[str, int]] = None, read_max: Optional[int] = None,
                   keep_dense: bool = True, extra_outputs: Optional[Callable[[str], None]] = None,
                   preprocessed: Optional[str] = None) -> dict:
    """Write ``target`` (module docstring). ``make_label(case, labels, geometry)`` gets the source label map
    (z, y, x) and returns the new one, with ``ignore`` (``source.ignore`` or max class + 1) for unlabelled voxels.
    ``classes``: the target's classes when they differ from the source's (then ignore = their max + 1);
    ``read_max``: the highest value the source label files may hold (default: ignore); ``keep_dense=False`` for
    a source whose labels are not a dense reference (nothing goes to ``labelsTr_dense``); ``extra_outputs(folder)``
    writes a command's own files (points, reports) into the staged dataset, so they move in and are recorded with
    the rest. ``preprocessed``: the nnUNet_preprocessed folder that also gets the splits (None: only the target).

    Returns {"ignore", "cases", "per_class": {name: share of that class's dense voxels still labelled with it},
    "labelled_fraction": share of all voxels labelled, "per_case": {case: labelled share}}."""
    if os.path.realpath(source.folder) == os.path.realpath(target):
        raise NNWError(f"target {target} is the source dataset {os.path.realpath(source.folder)}; choose a new "
                       f"dataset folder.")
    classes = dict(source.classes if classes is None else classes)
    ignore = source.ignore if source.ignore is not None and classes == source.classes else max(classes.values()) + 1
    read_max = ignore if read_max is None else read_max
    splits = splits if splits is not None else source.splits
    kept = {n: 0 for n in classes}
    dense_total = {n: 0 for n in classes}
    per_case, labelled, voxels = {}, 0, 0
    with staged_dataset(target, overwrite, splits, preprocessed) as out:
        prepare_dataset_folder(out)
        for case in source.cases:
            for name in source.image_files[case]:
                shutil.copyfile(os.path.join(source.folder, "imagesTr", name), os.path.join(out, "imagesTr", name))
            geometry = Geometry.of_file(os.path.join(source.folder, "imagesTr", source.image_files[case][0]))
            labels, _ = label_array(source.label_path(case), read_max, geometry)
            new = make_label(case, labels, geometry).astype(labels.dtype)
            write_label(new, geometry, os.path.join(out, "labelsTr", case + source.ending), source.label_path(case))
            dense_file = source.dense_path(case) if keep_dense else None
            if dense_file is not None:
                shutil.copyfile(dense_file, os.path.join(out, DENSE_FOLDER, case + source.ending))
                dense = labels if dense_file == source.label_path(case) else label_array(dense_file, read_max,
                                                                                         geometry)[0]
                for name, value in classes.items():
                    kept[name] += int(np.count_nonzero((new == value) & (dense == value)))
                    dense_total[name] += int(np.count_nonzero(dense == value))
            per_case[case] = float(np.count_nonzero(new != ignore)) / max(new.size, 1)
            labelled += int(np.count_nonzero(new != ignore))
            voxels += int(new.size)
        for folder in ("imagesTs", "labelsTs"):
            if os.path.isdir(os.path.join(source.folder, folder)):
                shutil.copytree(os.path.join(source.folder, folder), os.path.join(out, folder))
        new_json = dict(source.dataset_json)
        new_json["labels"] = {**classes, "ignore": ignore}
        new_json["numTraining"] = len(source.cases)
        new_json["name"] = os.path.basename(target)
        new_json["description"] = (source.dataset_json.get("description", "") + " " + note +
                                   f" {DENSE_FOLDER}: the source's labels (evaluation only).").strip()
        with open(os.path.join(out, "dataset.json"), "w") as f:
            json.dump(new_json, f, indent=4)
        if extra_outputs is not None:
            extra_outputs(out)
    result = {"ignore": ignore, "cases": len(source.cases), "per_case": per_case,
              "labelled_fraction": labelled / max(voxels, 1),
              "per_class": {n: (kept[n] / dense_total[n] if dense_total[n] else None) for n in classes}}
    if verbose:
        shares = ", ".join(f"{n} {100 * v:.2f} %" for n, v in result["per_class"].items() if v is not None)
        print(f"wrote {len(source.cases)} cases to {target} ({note}); labelled voxels "
              f"{100 * result['labelled_fraction']:.3f} % of all" +
              (f"; share of each class's voxels labelled: {shares}" if shares else ""))
    return result
