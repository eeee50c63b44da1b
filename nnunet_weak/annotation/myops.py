"""MyoPS 2020 (C0 / DE / T2 cardiac MRI) with the public ModelMix scribbles -> nnU-Net v2 raw dataset (Dataset813).

Source layout (the public releases):

    IMAGES/myops_training_1NN_{C0,DE,T2}.nii.gz      MyoPS 2020 ``train25`` (IMAGES = SOURCE/train25 or SOURCE)
    SCRIBBLES/myops_training_1NN_gd.nii.gz           ModelMix ``MyoPS_scribbles`` (default SOURCE/MyoPS_scribbles):
                                                     20 scribble files, 5 dense files (101, 106, 111, 116, 121)
    TEST/myops_test_2NN_{C0,DE,T2}.nii.gz            optional MyoPS 2020 test images (``--test``)

Output:

- ``imagesTr/<case>_0000`` = C0, ``_0001`` = DE, ``_0002`` = T2 (copied unchanged; the three files of a subject
  must share their geometry);
- ``labelsTr``: labels {background 0, myo 1, LV 2, edema 3, scar 4, ignore 5}. The label files are uint16 with a
  NIfTI scale factor (they load as 499.977, 200.00002, ...), so values are ROUNDED first. A file holding 3000 is a
  scribble file: 0 -> 5 (ignore), 3000 -> 0, 200 -> 1, 500 -> 2, 1220 -> 3, 2221 -> 4. Any other file is dense:
  0 -> 0, 600 (RV) -> 0 (merged into background), 200 -> 1, 500 -> 2, 1220 -> 3, 2221 -> 4. Any other value is an
  error naming the file. Labels are written with the C0 image's geometry;
- ``labelsTr_dense``: the dense subjects' labels (evaluation; scar = {4}, edema = {3, 4});
- ``splits_final.json``: one fold, train = the scribble subjects, val = the dense subjects;
- ``imagesTs``: the test subjects' three channels (their reference labels are not public).

With ``labelled``/``picks`` (ModelMix's few-scribble setting, :mod:`nnunet_weak.annotation.few_scribbles`) only the
picked scribble subjects keep their scribbles (official: 102, 103, 104, 105, 107) and the other training subjects
become all-ignore; the picks go to ``few_scribbles.json``.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from nnunet_weak.annotation.few_scribbles import (OFFICIAL_PICKS, SHUFFLE_SEED, record_selection, remove_stale_record,
                                                 select_few_scribbles)
from nnunet_weak.annotation.nnunet_io import (DENSE_FOLDER, Geometry, copy_image, prepare_dataset_folder, read_image,
                                              staged_dataset, write_dataset_json, write_label)
from nnunet_weak.utilities.errors import NNWError

MYOPS_LABELS = {"background": 0, "myo": 1, "LV": 2, "edema": 3, "scar": 4, "ignore": 5}
MYOPS_IGNORE = 5
CHANNELS = ("C0", "DE", "T2")                      # -> _0000, _0001, _0002
IMAGE_FOLDER = "train25"
SCRIBBLE_FOLDER = "MyoPS_scribbles"
LABEL_SUFFIX = "_gd"
SCRIBBLE_MARK = 3000                               # only scribble files hold the background-scribble value
SCRIBBLE_VALUES = {0: MYOPS_IGNORE, 3000: 0, 200: 1, 500: 2, 1220: 3, 2221: 4}
DENSE_VALUES = {0: 0, 600: 0, 200: 1, 500: 2, 1220: 3, 2221: 4}
EVALUATION_REGIONS = {"scar": [4], "edema": [3, 4]}

_CHANNEL_FILE = re.compile(r"^(.+)_(C0|DE|T2)\.nii\.gz$")
_LABEL_FILE = re.compile(rf"^(.+){LABEL_SUFFIX}\.nii\.gz$")


@dataclass(frozen=True)
class MyopsLabel:
    array: np.ndarray          # (z, y, x) uint8, mapped to MYOPS_LABELS
    scribble: bool             # scribble file (held 3000) or dense file
    path: str


# ---------------------------------------------------------------------------------------------------- images
def find_channel_images(folder: str) -> Dict[str, Tuple[str, str, str]]:
    """{case: (C0, DE, T2) paths} of every subject in ``folder``; a subject lacking a channel is an error."""
    if not os.path.isdir(folder):
        raise NNWError(f"MyoPS image folder {folder} does not exist; pass the folder holding "
                       f"myops_training_1NN_{{C0,DE,T2}}.nii.gz (or its parent containing {IMAGE_FOLDER}/).")
    cases = sorted({m.group(1) for m in map(_CHANNEL_FILE.match, os.listdir(folder)) if m is not None})
    if not cases:
        raise NNWError(f"{folder} holds no <case>_C0/_DE/_T2.nii.gz images; check the MyoPS folder.")
    found = {}
    for case in cases:
        paths = tuple(os.path.join(folder, f"{case}_{channel}.nii.gz") for channel in CHANNELS)
        for path in paths:
            if not os.path.isfile(path):
                raise NNWError(f"{path} is missing; every MyoPS subject needs its C0, DE and T2 images (restore the "
                               f"file or remove the subject's other channels).")
        found[case] = paths
    return found


def channel_geometry(paths: Sequence[str]) -> Geometry:
    """Geometry shared by a subject's channel files (headers only); differing geometry is an error."""
    geometries = [Geometry.of_file(p) for p in paths]
    for path, geometry in zip(paths[1:], geometries[1:]):
        if not geometry.matches(geometries[0]):
            raise NNWError(f"{path} (size {geometry.size}, spacing {geometry.spacing}, origin {geometry.origin}) "
                           f"does not share the geometry of {paths[0]} (size {geometries[0].size}, spacing "
                           f"{geometries[0].spacing}, origin {geometries[0].origin}); the channels of a subject "
                           f"must be co-registered on one grid -- resample them or remove the subject.")
    return geometries[0]


# ---------------------------------------------------------------------------------------------------- labels
def map_label_values(values: np.ndarray, path: str) -> MyopsLabel:
    """Round a MyoPS label array and map it to :data:`MYOPS_LABELS` (scribble or dense file, see the module)."""
    rounded = np.rint(np.asarray(values, dtype=np.float64))
    present = np.unique(rounded)
    scribble = bool(np.any(present == SCRIBBLE_MARK))
    mapping = SCRIBBLE_VALUES if scribble else DENSE_VALUES
    unknown = [v for v in present.tolist() if v not in mapping]
    if unknown:
        kind = f"scribble file (it holds {SCRIBBLE_MARK})" if scribble else "dense file"
        raise NNWError(f"{path} holds label value(s) {[float(v) for v in unknown][:10]} after rounding, which a MyoPS "
                       f"{kind} cannot hold (expected {sorted(mapping)}); fix or remove the label file.")
    out = np.zeros(rounded.shape, dtype=np.uint8)
    for value, label in mapping.items():
        out[rounded == value] = label
    return MyopsLabel(array=out, scribble=scribble, path=path)


def read_label(path: str, reference: Geometry) -> MyopsLabel:
    """Read, check the shape against the subject's images, round and map one MyoPS label file."""
    image = read_image(path)
    if tuple(image.GetSize()) != reference.size:
        raise NNWError(f"{path} has size {image.GetSize()} but its images have size {reference.size}; the label must "
                       f"have the images' shape (fix or remove this subject).")
    return map_label_values(sitk.GetArrayFromImage(image), path)


def find_labels(folder: str) -> Dict[str, str]:
    """{case: path} of the ``<case>_gd.nii.gz`` label files in ``folder``."""
    if not os.path.isdir(folder):
        raise NNWError(f"MyoPS scribble folder {folder} does not exist; pass --scribbles FOLDER (the ModelMix "
                       f"{SCRIBBLE_FOLDER} folder with myops_training_1NN{LABEL_SUFFIX}.nii.gz).")
    found = {m.group(1): os.path.join(folder, m.group(0))
             for m in map(_LABEL_FILE.match, os.listdir(folder)) if m is not None}
    if not found:
        raise NNWError(f"{folder} holds no <case>{LABEL_SUFFIX}.nii.gz label files; check --scribbles.")
    return found


def _image_folder(source: str) -> str:
    if not os.path.isdir(source):
        raise NNWError(f"MyoPS source folder {source} does not exist; pass the folder holding {IMAGE_FOLDER}/ (or "
                       f"the image files themselves).")
    nested = os.path.join(source, IMAGE_FOLDER)
    return nested if os.path.isdir(nested) else source


# -------------------------------------------------------------------------------------------------- convert
def convert_myops(source: str, nnunet_raw: str, dataset_name: str, scribbles: Optional[str] = None,
                  test: Optional[str] = None, labelled: Optional[int] = None, picks: Optional[Sequence[str]] = None,
                  seed: int = SHUFFLE_SEED, overwrite: bool = False, verbose: bool = True,
                  preprocessed: Optional[str] = None) -> str:
    """Write ``nnunet_raw/dataset_name`` from MyoPS 2020 images and ModelMix labels (see the module docstring);
    ``labelled``/``picks`` switch on the few-scribble setting. Returns the dataset folder."""
    images = find_channel_images(_image_folder(source))
    labels_folder = scribbles if scribbles is not None else os.path.join(source, SCRIBBLE_FOLDER)
    label_files = find_labels(labels_folder)
    for case in sorted(set(images) | set(label_files)):
        if case not in label_files:
            raise NNWError(f"{os.path.join(labels_folder, case + LABEL_SUFFIX + '.nii.gz')} is missing (label of "
                           f"{images[case][0]}); add it or remove the subject's images.")
        if case not in images:
            raise NNWError(f"{label_files[case]} has no images: {os.path.join(_image_folder(source), case)}_C0.nii.gz "
                           f"(and _DE, _T2) are missing; add them or remove the label file.")
    test_images = find_channel_images(test) if test is not None else {}
    overlap = sorted(set(test_images) & set(images))
    if overlap:
        raise NNWError(f"subject {overlap[0]} is both in the training images and in --test {test}; remove one.")

    # everything is read and checked before anything is written
    geometries = {case: channel_geometry(paths) for case, paths in {**images, **test_images}.items()}
    labels = {case: read_label(label_files[case], geometries[case]) for case in sorted(images)}
    train = sorted(c for c, lab in labels.items() if lab.scribble)
    val = sorted(c for c, lab in labels.items() if not lab.scribble)
    if not train or not val:
        raise NNWError(f"{labels_folder} holds {len(train)} scribble and {len(val)} dense label files; the split needs "
                       f"both (ModelMix: 20 scribble files and the dense 101, 106, 111, 116, 121).")
    selection = None
    if labelled is not None or picks is not None:
        selection = select_few_scribbles(train, val, OFFICIAL_PICKS["MyoPS"], labelled=labelled, picks=picks,
                                         seed=seed)
    splits = [{"train": train, "val": val}]
    target = os.path.join(nnunet_raw, dataset_name)
    with staged_dataset(target, overwrite, splits, preprocessed) as out:
        prepare_dataset_folder(out, test_set=bool(test_images))
        for case in sorted(images):
            for k, path in enumerate(images[case]):
                copy_image(path, os.path.join(out, "imagesTr", f"{case}_{k:04d}.nii.gz"))
            label = labels[case]
            array = label.array if selection is None else selection.labels_for(case, label.array, MYOPS_IGNORE)
            write_label(array, geometries[case], os.path.join(out, "labelsTr", f"{case}.nii.gz"), label.path)
            if not label.scribble:
                write_label(label.array, geometries[case], os.path.join(out, DENSE_FOLDER, f"{case}.nii.gz"),
                            label.path)
        for case in sorted(test_images):
            for k, path in enumerate(test_images[case]):
                copy_image(path, os.path.join(out, "imagesTs", f"{case}_{k:04d}.nii.gz"))

        scribbled = len(train) if selection is None else len(selection.picks)
        description = (f"MyoPS 2020 (C0, DE, T2) with the ModelMix scribbles: {scribbled} training subjects with "
                       f"scribbles, {len(train) - scribbled} unlabelled (all-ignore), {len(val)} dense subjects "
                       f"(validation; RV merged into background); {DENSE_FOLDER}: their dense labels. Evaluation "
                       f"regions: scar = {{4}}, edema = {{3, 4}}.")
        write_dataset_json(out, MYOPS_LABELS, len(images), name=dataset_name, description=description,
                           channel_names={str(k): c for k, c in enumerate(CHANNELS)}, scribble_cases=train,
                           dense_cases=val, test_cases=sorted(test_images), evaluation_regions=EVALUATION_REGIONS)
    if selection is not None:
        record_selection(target, selection, verbose=verbose)
    else:
        remove_stale_record(target)
    if verbose:
        print(f"wrote {len(images)} training ({len(train)} scribble, {len(val)} dense) and {len(test_images)} test "
              f"subjects to {target}")
    return target
