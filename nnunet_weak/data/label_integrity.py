"""The raw-data checks of ``nnUNetv2_plan_and_preprocess --verify_dataset_integrity``, run by our trainers at
start-up so that a label map nnU-Net would have refused never reaches training silently.

Preprocessing casts label maps to integers: NaN becomes a class, 2.5 becomes 2, and a value missing from
dataset.json's ``labels`` fails later as an IndexError inside the loss. Each check here names the case and the
fix in one line. Cases that passed are remembered by file size and modification time in a small JSON file
(``cache_file``), so a second fold or a resumed run reads only what changed.
"""
import json
import os
from typing import Dict, List, Optional, Sequence

import numpy as np

from nnunet_weak.utilities.errors import NNWError

CACHE_NAME = "nnunet_weak_label_check.json"


def _stamp(files: Sequence[str]) -> List[list]:
    return [[os.path.basename(f), os.path.getsize(f), os.stat(f).st_mtime_ns] for f in files]


def _floats(values) -> tuple:
    return tuple(round(float(v), 6) for v in values)


def _nan_on_disk(path: str) -> bool:
    """NaN voxels stored in a float NIfTI file: SimpleITK (nnU-Net's default reader) reads them as 0, i.e.
    background annotation, so look at the stored values with nibabel."""
    if not path.endswith((".nii", ".nii.gz")):
        return False
    import nibabel
    image = nibabel.load(path)
    if not np.issubdtype(image.get_data_dtype(), np.floating):
        return False
    return bool(np.isnan(np.asanyarray(image.dataobj)).any())


def case_problem(image_files: Sequence[str], label_file: str, reader, expected: Sequence[int]) -> Optional[str]:
    """What is wrong with one case (a phrase naming the file), or None.

    ``reader``: an nnU-Net ``BaseReaderWriter`` instance; ``expected``: every value a label map may hold
    (classes, and the ignore value where the dataset has one).
    """
    seg, seg_props = reader.read_seg(label_file)
    name = os.path.basename(label_file)
    if np.isnan(seg).any() or _nan_on_disk(label_file):
        return f"{name} holds NaN values"
    values = np.unique(seg)
    fractional = values[values != np.round(values)]
    if fractional.size:
        return f"{name} holds non-integer values (e.g. {fractional[0]:g}), which preprocessing would truncate"
    unexpected = sorted(set(int(v) for v in values) - set(int(e) for e in expected))
    if unexpected:
        return (f"{name} holds label value(s) {unexpected} that dataset.json's 'labels' does not declare "
                f"(declared: {sorted(int(e) for e in expected)})")
    images, image_props = reader.read_images(list(image_files))
    if np.isnan(images).any():
        return f"an image of {name}'s case ({os.path.basename(image_files[0])}...) holds NaN values"
    if tuple(images.shape[1:]) != tuple(seg.shape[1:]):
        return f"{name} has shape {tuple(seg.shape[1:])} but its image has {tuple(images.shape[1:])}"
    if not np.allclose(seg_props["spacing"], image_props["spacing"]):
        return (f"{name} has spacing {_floats(seg_props['spacing'])} but its image has "
                f"{_floats(image_props['spacing'])}")
    return None


def check_raw_dataset(dataset: Dict[str, dict], reader_class, expected: Sequence[int], where: str,
                      cache_file: Optional[str] = None) -> int:
    """Check every case of ``dataset`` ({identifier: {'images': [...], 'label': path}}, as nnU-Net's
    ``get_filenames_of_train_images_and_targets`` returns it). Raises :class:`NNWError` naming the first bad case
    and how many others there are; returns the number of cases read (0 when all were unchanged since the check
    recorded in ``cache_file``)."""
    cache = {}
    if cache_file and os.path.isfile(cache_file):
        try:
            with open(cache_file) as f:
                cache = json.load(f)
        except (OSError, ValueError):
            cache = {}
    expected_key = sorted(int(e) for e in expected)
    if cache.get("expected") != expected_key:
        cache = {}
    passed = cache.get("cases", {})
    reader = reader_class()
    problems, read = [], 0
    for identifier, entry in sorted(dataset.items()):
        files = list(entry["images"]) + [entry["label"]]
        missing = [f for f in files if not os.path.isfile(f)]
        if missing:
            problems.append(f"{missing[0]} is missing")
            continue
        stamp = _stamp(files)
        if passed.get(identifier) == stamp:
            continue
        read += 1
        problem = case_problem(entry["images"], entry["label"], reader, expected)
        if problem:
            problems.append(problem)
            passed.pop(identifier, None)
        else:
            passed[identifier] = stamp
    if cache_file:
        os.makedirs(os.path.dirname(cache_file), exist_ok=True)
        with open(cache_file, "w") as f:
            json.dump({"expected": expected_key, "cases": passed}, f)
    if problems:
        others = f" ({len(problems) - 1} more case(s) too)" if len(problems) > 1 else ""
        raise NNWError(f"{where}: {problems[0]}{others}. Fix the label files (every voxel one integer value "
                       f"from dataset.json's 'labels', same shape and spacing as its image), preprocess again, "
                       f"and list every such case with nnUNetv2_plan_and_preprocess --verify_dataset_integrity.")
    return read
