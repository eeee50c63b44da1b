"""Shared part of the PA-Seg dataset conversions (``nnunet_weak.dataset_conversion.Dataset811_VSPoints`` and
``Dataset812_BraTSPoints``): PA-Seg's click simulation, seed expansion, data and splits.

A conversion lists its cases (:class:`PasegCase`: id, raw image, dense segmentation) and their phases
(training / validation / inference, from a PA-Seg split CSV or :func:`hashed_split`), then
:func:`convert_paseg_dataset` writes one nnU-Net v2 raw dataset:

* ``imagesTr`` / ``labelsTr``: training + validation cases; labels 0 background, 1 tumour, 2 ignore, i.e. the seven
  clicks of every target (simulated from the dense labels, or read from the official point volumes, values 2k-1 =
  background points, 2k = foreground point of target k) expanded by the GeodisTK-exact geodesic distance on the
  raw image (:func:`nnunet_weak.annotation.geodesic.expand_points`);
* ``labelsTr_dense``: the dense tumour mask of the same cases (evaluation only; nnU-Net never reads it);
* ``imagesTs`` / ``labelsTs``: the inference (test) cases and their dense tumour masks (nnU-Net's usual name for
  test references; ``nnUNetv2_evaluate_simple`` can compare predictions against it);
* ``points/CASE.json`` (voxel (z, y, x) and world coordinates), ``seed_quality.{csv,json}`` (precision / recall /
  Dice of the expanded labels against the dense masks, the figures PA-Seg's scripts log), ``dataset.json`` and a
  single-fold ``splits_final.json`` (fold 0 = the split's training / validation lists).

Optional GT-centred crop: PA-Seg crops every VS case, test cases included, to a 48x128x128 (z, y, x)
window centred on the tumour's bounding box (``data/VS/image_crop.py``): zero-pad symmetrically to at least the
window, centre = floor of the middle of the inclusive box, window clipped to the padded volume. The window here is
the same, so the official (already cropped) VS point volumes line up voxel for voxel; unlike the original, the
cropped files get the origin of the window's first voxel, so they stay aligned with the uncropped scans.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from nnunet_weak.annotation.geodesic import DEFAULT_THRESHOLD, expand_points
from nnunet_weak.annotation.nnunet_io import (DENSE_FOLDER, Geometry, label_array, prepare_dataset_folder, read_image,
                                              staged_dataset, write_dataset_json, write_image, write_label)
from nnunet_weak.annotation.points import (DEFAULT_MARGIN_MM, PointRecord, points_from_volume, simulate_points,
                                           voxel_to_world, write_points_json)
from nnunet_weak.annotation.seed_quality import SeedQualityReport
from nnunet_weak.utilities.errors import NNWError

PASEG_LABELS = {"background": 0, "tumour": 1, "ignore": 2}
IGNORE_LABEL = 2
TRAINING, VALIDATION, INFERENCE = "training", "validation", "inference"
# PA-Seg's split files say training/validation/inference; InExtremIS's (the VS split's origin) say "testing"
_PHASES = {"training": TRAINING, "train": TRAINING, "validation": VALIDATION, "val": VALIDATION,
           "inference": INFERENCE, "testing": INFERENCE, "test": INFERENCE}
POINTS_SUFFIX = "_7points.nii.gz"   # PA-Seg's annotation_7points/<case>_7points.nii.gz
TEST_LABELS = "labelsTs"
VS_CROP_SIZE = (48, 128, 128)       # z, y, x (PA-Seg: 128x128x48 in x, y, z)


# ------------------------------------------------------------------------------------------------ splits
def read_split_csv(path: str) -> Dict[str, str]:
    """Read a PA-Seg split file: rows ``case,phase`` (phase training / validation / inference; train, val, test and
    testing are accepted too), no header needed. Returns {case: phase} in file order."""
    if not os.path.isfile(path):
        raise NNWError(f"split file {path} does not exist; pass the PA-Seg split CSV (rows 'case,phase').")
    out: Dict[str, str] = {}
    rows = 0
    try:
        with open(path, newline="") as f:
            for lineno, row in enumerate(csv.reader(f), 1):
                fields = [c.strip() for c in row]
                while fields and not fields[-1]:
                    fields.pop()
                if not fields:
                    continue
                rows += 1
                if len(fields) != 2 or not fields[0]:
                    raise NNWError(f"{path}, line {lineno}: expected 'case,phase', got {','.join(row)!r}; fix the "
                                   f"split file.")
                case, phase = fields
                if rows == 1 and phase.lower() == "phase":  # optional header row
                    continue
                key = _PHASES.get(phase.lower())
                if key is None:
                    raise NNWError(f"{path}, line {lineno}: unknown phase {phase!r} of case {case!r}; use training, "
                                   f"validation or inference.")
                if case in out:
                    raise NNWError(f"{path}, line {lineno}: case {case!r} is listed twice; fix the split file.")
                out[case] = key
    except (UnicodeDecodeError, csv.Error) as e:
        raise NNWError(f"{path} is not a readable CSV ({e}); pass the PA-Seg split file.") from None
    if not out:
        raise NNWError(f"{path} lists no case; expected rows 'case,phase'.")
    return out


def hashed_split(cases: Sequence[str], val_fraction: float, test_fraction: float) -> Dict[str, str]:
    """Deterministic split without a CSV: cases ordered by the MD5 of their id, the first round(test_fraction * n)
    -> inference, the next round(val_fraction * n) -> validation (each at least 1 when n >= 3), the rest ->
    training; returned in sorted id order. MD5 order depends neither on the file system nor on numpy's random
    streams."""
    ordered = sorted(cases, key=lambda c: (hashlib.md5(c.encode("utf-8")).hexdigest(), c))
    n = len(ordered)
    n_test, n_val = int(round(test_fraction * n)), int(round(val_fraction * n))
    if n >= 3:
        n_test, n_val = max(n_test, 1), max(n_val, 1)
    out = {c: INFERENCE for c in ordered[:n_test]}
    out.update({c: VALIDATION for c in ordered[n_test:n_test + n_val]})
    out.update({c: TRAINING for c in ordered[n_test + n_val:]})
    return {c: out[c] for c in sorted(out)}


def phase_lists(phases: Dict[str, str], source: str) -> Tuple[List[str], List[str], List[str]]:
    """(training, validation, inference) case lists of ``phases``; ``source`` names the split in errors."""
    lists = {p: [c for c, q in phases.items() if q == p] for p in (TRAINING, VALIDATION, INFERENCE)}
    for p in (TRAINING, VALIDATION):
        if not lists[p]:
            raise NNWError(f"{source} has no {p} case; the single nnU-Net fold needs training and validation "
                           f"cases.")
    return lists[TRAINING], lists[VALIDATION], lists[INFERENCE]


# ------------------------------------------------------------------------------------------------ GT-centred crop
def gt_centred_window(mask: np.ndarray, size: Sequence[int], source: str = "label") -> np.ndarray:
    """Start index (z, y, x) of PA-Seg's window of ``size`` (z, y, x) centred on the box of ``mask`` (z, y, x), in
    ``mask``'s own index space; negative where the volume is smaller than the window (those voxels are padding)."""
    idx = np.nonzero(mask)
    if len(idx[0]) == 0:
        raise NNWError(f"{source} holds no tumour voxel, so the GT-centred crop has no centre; drop the case or "
                       f"convert without --crop-gt-centred.")
    start = []
    for axis, (n, s) in enumerate(zip(mask.shape, size)):
        pad = max(s - n, 0) // 2          # MONAI SpatialPad "symmetric": the smaller half before
        centre = (int(idx[axis].min()) + int(idx[axis].max())) // 2 + pad
        first = min(max(0, centre - s // 2), n + max(s - n, 0) - s)
        start.append(first - pad)
    return np.asarray(start, dtype=np.int64)


def crop_window(array: np.ndarray, start: Sequence[int], size: Sequence[int], fill=0) -> np.ndarray:
    """Window [start, start + size) of ``array`` (z, y, x); voxels outside the array are ``fill``."""
    out = np.full(tuple(size), fill, dtype=array.dtype)
    src = tuple(slice(max(a, 0), min(a + s, n)) for a, s, n in zip(start, size, array.shape))
    dst = tuple(slice(sl.start - a, sl.stop - a) for sl, a in zip(src, start))
    out[dst] = array[src]
    return out


def crop_image(image: sitk.Image, start: Sequence[int], size: Sequence[int]) -> sitk.Image:
    """``image`` cropped (zero-padded where needed) to the window at ``start`` (z, y, x) of ``size`` (z, y, x), with
    the origin of the window's first voxel."""
    out = sitk.GetImageFromArray(crop_window(sitk.GetArrayFromImage(image), start, size))
    out.SetSpacing(image.GetSpacing())
    out.SetDirection(image.GetDirection())
    out.SetOrigin(voxel_to_world(start, Geometry.of(image)))
    return out


# ------------------------------------------------------------------------------------------------ one case
@dataclass(frozen=True)
class PasegCase:
    """One source case: nnU-Net case id, raw image file and dense segmentation file."""
    case: str
    image: str
    gt: str


@dataclass(frozen=True)
class PointOptions:
    """How clicks are obtained and expanded (CLI options of both conversions)."""
    points_dir: Optional[str] = None     # official point volumes; None = simulate from the dense labels
    margin_mm: float = DEFAULT_MARGIN_MM
    jitter: int = 0
    seed: int = 0
    threshold: float = DEFAULT_THRESHOLD

    def metadata(self) -> dict:
        source = (f"official point volumes in {self.points_dir}" if self.points_dir
                  else "simulated from the dense labels")
        out = {"points": source, "threshold": self.threshold, "lambda": 0.5, "iterations": 4}
        if not self.points_dir:
            out.update(margin_mm=self.margin_mm, jitter=self.jitter, seed=self.seed)
        return out


def add_point_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --points, --margin-mm, --jitter, --seed and --threshold to a conversion's command line."""
    parser.add_argument("--points", metavar="DIR", default=None,
                        help=f"read the official point volumes DIR/<case>{POINTS_SUFFIX} (value 2k-1 = background "
                             f"points, 2k = foreground point of target k) instead of simulating clicks")
    add_simulation_arguments(parser)


def add_simulation_arguments(parser: argparse.ArgumentParser, threshold: bool = True) -> None:
    """Add the click-simulation options --margin-mm, --jitter, --seed and (``threshold``) the expansion's
    --threshold (every PA-Seg points conversion; Dataset804 names whole expansion recipes instead)."""
    parser.add_argument("--margin-mm", type=float, default=DEFAULT_MARGIN_MM,
                        help="simulation: distance of the background clicks outside the target (mm, >= 1 voxel)")
    parser.add_argument("--jitter", type=int, default=0, help="simulation: annotator noise of the clicks (voxels)")
    parser.add_argument("--seed", type=int, default=0, help="simulation: random seed of the jitter")
    if threshold:
        parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                            help="foreground = geodesic distance below this fraction of the in-box maximum")


def point_options(args: argparse.Namespace) -> PointOptions:
    """PointOptions from the arguments added by :func:`add_point_arguments`."""
    return PointOptions(args.points, args.margin_mm, args.jitter, args.seed, args.threshold)


def point_volume_path(points_dir: str, case: str) -> str:
    """``points_dir/<case>_7points.nii.gz`` (PA-Seg's name) or else ``points_dir/<case>.nii.gz``."""
    for name in (case + POINTS_SUFFIX, case + ".nii.gz"):
        path = os.path.join(points_dir, name)
        if os.path.isfile(path):
            return path
    raise NNWError(f"{os.path.join(points_dir, case + POINTS_SUFFIX)} does not exist; --points needs one point "
                   f"volume per training/validation case (values 2k-1 background points, 2k foreground point).")


def read_point_volume(path: str, shape: Sequence[int], hint: str = "") -> List[PointRecord]:
    """Point records of the point volume file ``path``, which must have ``shape`` (z, y, x), the image's."""
    arr = sitk.GetArrayFromImage(read_image(path))
    if tuple(arr.shape) != tuple(shape):
        raise NNWError(f"{path} has shape {tuple(arr.shape)} (z, y, x) but its image has {tuple(shape)}; point "
                       f"volumes must lie on the image grid{hint}.")
    if arr.size and (arr.min() < 0 or not np.all(np.mod(arr, 1) == 0)):
        raise NNWError(f"{path} holds negative or non-integer values; expected 0 and 2k-1 / 2k per target k.")
    points = points_from_volume(arr.astype(np.int64), source=path)
    if not points:
        raise NNWError(f"{path} holds no point; every case needs 1 foreground (2k) and 6 background (2k-1) points.")
    return points


def expand_case(image: sitk.Image, gt: np.ndarray, points: Optional[List[PointRecord]], options: PointOptions,
                rng: np.random.Generator, background_at_min_intensity: bool = False,
                source: str = "label") -> Tuple[np.ndarray, List[PointRecord]]:
    """PA-Seg weak labels of one case: (labels (z, y, x) uint8 with 0 / 1 / 2 = ignore, the point records).

    ``gt``: dense tumour mask (z, y, x) on the image grid, used to simulate the clicks when ``points`` is None;
    the expansion runs on the raw intensities of ``image``."""
    if points is None:
        if not np.any(gt):
            raise NNWError(f"{source} holds no tumour voxel, so no click can be simulated; drop the case from the "
                           f"split or pass its point volume with --points.")
        points = simulate_points(gt.astype(np.uint8), reference=image, margin_mm=options.margin_mm,
                                 jitter=options.jitter, rng=rng)
    raw = sitk.GetArrayFromImage(image).astype(np.float32)
    labels = expand_points(raw, points, image.GetSpacing()[::-1], threshold=options.threshold,
                           ignore_label=IGNORE_LABEL, background_at_min_intensity=background_at_min_intensity).labels
    return labels, points


# ------------------------------------------------------------------------------------------------ dataset
def convert_paseg_dataset(cases: Sequence[PasegCase], phases: Dict[str, str], split_source: str, nnunet_raw: str,
                          dataset_name: str, *, channel_name: str, gt_max_value: int, description: str,
                          options: PointOptions = PointOptions(), background_at_min_intensity: bool = False,
                          crop_size: Optional[Sequence[int]] = None, overwrite: bool = False,
                          verbose: bool = True, preprocessed: Optional[str] = None) -> str:
    """Write ``nnunet_raw/dataset_name`` (layout in the module docstring) and return its folder.

    ``phases``: {case id: training / validation / inference}, every id one of ``cases``; tumour = gt > 0 with gt
    values checked to lie in 0..``gt_max_value``; ``crop_size`` (z, y, x): apply the GT-centred crop to every case.
    Everything that can be checked without reading images (split, point files, target folder) is checked before
    anything is written."""
    by_id = {c.case: c for c in cases}
    unknown = [c for c in phases if c not in by_id]
    if unknown:
        raise NNWError(f"{split_source} lists {len(unknown)} case(s) missing from the source, e.g. {unknown[0]!r}; "
                       f"fix the split or restore the case.")
    train, val, test = phase_lists(phases, split_source)
    labelled = train + val
    if options.points_dir is not None:
        if not os.path.isdir(options.points_dir):
            raise NNWError(f"point folder {options.points_dir} does not exist; pass the folder of "
                           f"<case>{POINTS_SUFFIX} files.")
        point_files = {c: point_volume_path(options.points_dir, c) for c in labelled}
    target = os.path.join(nnunet_raw, dataset_name)
    splits = [{"train": train, "val": val}]
    with staged_dataset(target, overwrite, splits, preprocessed) as out:
        prepare_dataset_folder(out, test_set=True)
        os.makedirs(os.path.join(out, TEST_LABELS), exist_ok=True)

        report = SeedQualityReport({0: "background", 1: "tumour"}, IGNORE_LABEL)
        rng = np.random.default_rng(options.seed)
        meta = {**options.metadata(), "crop_zyx": list(crop_size) if crop_size else None}
        hint = (" (the official VS point files are on the 48x128x128 GT-centred crop: pass --crop-gt-centred)"
                if crop_size is None else "")
        for case_id in labelled + test:
            case = by_id[case_id]
            image = read_image(case.image)
            gt_values, _ = label_array(case.gt, gt_max_value, image)
            gt = (gt_values > 0).astype(np.uint8)
            if crop_size is not None:
                start = gt_centred_window(gt, crop_size, case.gt)
                image, gt = crop_image(image, start, crop_size), crop_window(gt, start, crop_size)
            is_test = phases[case_id] == INFERENCE
            write_image(image, os.path.join(out, "imagesTs" if is_test else "imagesTr", f"{case_id}_0000.nii.gz"))
            write_label(gt, image, os.path.join(out, TEST_LABELS if is_test else DENSE_FOLDER, f"{case_id}.nii.gz"),
                        case.gt)
            if is_test:
                continue
            points = None
            if options.points_dir is not None:
                points = read_point_volume(point_files[case_id], gt.shape, hint)
            labels, points = expand_case(image, gt, points, options, rng, background_at_min_intensity, case.gt)
            write_points_json(os.path.join(out, "points", f"{case_id}.json"), points, reference=image,
                              metadata={**meta, "source": point_files[case_id] if options.points_dir else case.gt})
            write_label(labels, image, os.path.join(out, "labelsTr", f"{case_id}.nii.gz"), case.gt)
            report.add(case_id, labels, gt)

        write_dataset_json(out, PASEG_LABELS, len(labelled), name=dataset_name, channel_names={"0": channel_name},
                           description=f"{description} labelsTr: PA-Seg points (1 foreground + 6 background per "
                                       f"target, {meta['points']}) expanded by a geodesic distance (GeodisTK raster "
                                       f"scan, lambda 0.5, 4 iterations, threshold {options.threshold}); "
                                       f"{DENSE_FOLDER} / {TEST_LABELS}: dense tumour masks for evaluation. Split: "
                                       f"{split_source}.",
                           numTest=len(test))
        report.write(os.path.join(out, "seed_quality.csv"), os.path.join(out, "seed_quality.json"), meta)
    if verbose:
        print(f"wrote {len(train)} training + {len(val)} validation cases to imagesTr and {len(test)} test cases "
              f"to imagesTs of {target}")
        print("expanded seeds against the dense labels (training + validation):")
        print(report.table())
    return target
