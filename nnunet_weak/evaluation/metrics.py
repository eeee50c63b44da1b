"""Overlap and surface-distance metrics for dense label maps (numpy/scipy only).

Conventions, shared by every function here and by ``evaluate_dense``:

* Masks are boolean arrays of identical shape, 2D ``(y, x)`` or 3D ``(z, y, x)``. ``spacing`` gives the voxel
  size in mm per array axis, in the same order as the array axes (for SimpleITK images that is
  ``image.GetSpacing()[::-1]``).
* Surface of a mask = the mask minus its binary erosion with ``generate_binary_structure(ndim, 1)`` (face
  connectivity: 4-neighbourhood in 2D, 6-neighbourhood in 3D; medpy's default ``connectivity=1``). Voxels on
  the array border count as surface (erosion treats the outside as background).
* HD95 follows medpy's ``hd95``: the 95th percentile (``np.percentile``, linear interpolation) of the pooled
  distances ``np.hstack([d_pred_to_ref, d_ref_to_pred])``, not the maximum of the two directed percentiles.
* ASSD follows medpy's ``assd``: the mean of the two directed mean surface distances.
* Empty masks: both empty -> Dice 1.0, HD95 = ASSD = 0.0. Exactly one empty -> Dice 0.0, HD95 = ASSD = NaN
  (excluded from distance means by ``nanmean``; the case is counted through ``pred_empty`` / ``ref_empty``).
"""
from typing import Dict, Sequence, Tuple

import numpy as np
from scipy.ndimage import binary_erosion, distance_transform_edt, generate_binary_structure


def _check_pair(pred: np.ndarray, ref: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=bool)
    ref = np.asarray(ref, dtype=bool)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    return pred, ref


def _check_spacing(spacing: Sequence[float], ndim: int) -> np.ndarray:
    spacing = np.asarray(spacing, dtype=float)
    if spacing.shape != (ndim,) or not np.all(spacing > 0):
        raise ValueError(f"spacing must hold {ndim} positive values (mm per array axis), got {spacing.tolist()}")
    return spacing


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice coefficient ``2|P & R| / (|P| + |R|)`` of two boolean masks of the same shape (any dimension).

    Both masks empty -> 1.0 (nothing to find, nothing found). Exactly one empty -> 0.0.
    """
    pred, ref = _check_pair(pred, ref)
    denominator = int(pred.sum()) + int(ref.sum())
    if denominator == 0:
        return 1.0
    return 2.0 * int(np.logical_and(pred, ref).sum()) / denominator


def _surface(mask: np.ndarray) -> np.ndarray:
    """Boolean surface of ``mask`` (same shape): mask voxels removed by a face-connectivity erosion."""
    structure = generate_binary_structure(mask.ndim, 1)
    return np.logical_and(mask, ~binary_erosion(mask, structure=structure, border_value=0))


def _directed_distances(from_surface: np.ndarray, to_surface: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """1D array (one entry per voxel of ``from_surface``): distance in mm to the nearest ``to_surface`` voxel."""
    distance_map = distance_transform_edt(~to_surface, sampling=spacing)
    return distance_map[from_surface]


def _crop_to_union(pred: np.ndarray, ref: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    # Everything outside the bounding box of pred | ref is background for both masks, so erosion (border_value=0)
    # and the nearest-surface search give identical results on the crop, at a fraction of the cost.
    coords = np.nonzero(np.logical_or(pred, ref))
    box = tuple(slice(int(c.min()), int(c.max()) + 1) for c in coords)
    return pred[box], ref[box]


def surface_distances(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> Tuple[float, float]:
    """Return ``(hd95_mm, assd_mm)`` between two boolean masks.

    ``pred`` and ``ref``: boolean arrays of identical shape, 2D ``(y, x)`` or 3D ``(z, y, x)``.
    ``spacing``: voxel size in mm for each array axis, same order as the axes.

    Surfaces use a face-connectivity erosion (``generate_binary_structure(ndim, 1)``); distances come from
    ``distance_transform_edt(~surface, sampling=spacing)``. HD95 is medpy's: 95th percentile of the pooled
    directed distances ``np.hstack([d_pred_to_ref, d_ref_to_pred])``. ASSD is the mean of the two directed mean
    distances. Both masks empty -> ``(0.0, 0.0)``; exactly one empty -> ``(nan, nan)``.
    """
    pred, ref = _check_pair(pred, ref)
    spacing = _check_spacing(spacing, pred.ndim)
    pred_any, ref_any = bool(pred.any()), bool(ref.any())
    if not pred_any and not ref_any:
        return 0.0, 0.0
    if not pred_any or not ref_any:
        return float("nan"), float("nan")
    pred, ref = _crop_to_union(pred, ref)
    pred_surface, ref_surface = _surface(pred), _surface(ref)
    pred_to_ref = _directed_distances(pred_surface, ref_surface, spacing)
    ref_to_pred = _directed_distances(ref_surface, pred_surface, spacing)
    hd95 = float(np.percentile(np.hstack([pred_to_ref, ref_to_pred]), 95))
    assd = float((pred_to_ref.mean() + ref_to_pred.mean()) / 2.0)
    return hd95, assd


def case_metrics(pred_labels: np.ndarray, ref_labels: np.ndarray, classes: Dict[str, int],
                 spacing: Sequence[float]) -> Dict[str, dict]:
    """Per-class metrics of one case.

    ``pred_labels`` and ``ref_labels``: integer label maps of identical shape, 2D ``(y, x)`` or 3D ``(z, y, x)``.
    ``classes``: class name -> label value; each class is evaluated as the binary mask ``labels == value``
    (other values, e.g. background, are ignored). ``spacing``: mm per array axis.

    Returns ``{name: {"dice", "hd95", "assd", "pred_empty", "ref_empty"}}`` with distances in mm, where

    * both masks empty -> dice 1.0, hd95 = assd = 0.0, both flags False;
    * reference non-empty, prediction empty -> dice 0.0, hd95 = assd = NaN, ``pred_empty=True`` (a missed
      structure; counted, and excluded from distance means);
    * prediction non-empty, reference empty -> dice 0.0, hd95 = assd = NaN, ``ref_empty=True``.
    """
    pred_labels = np.asarray(pred_labels)
    ref_labels = np.asarray(ref_labels)
    if pred_labels.shape != ref_labels.shape:
        raise ValueError(f"prediction shape {pred_labels.shape} differs from reference shape {ref_labels.shape}")
    results = {}
    for name, value in classes.items():
        pred = pred_labels == value
        ref = ref_labels == value
        pred_any, ref_any = bool(pred.any()), bool(ref.any())
        hd95, assd = surface_distances(pred, ref, spacing)
        results[name] = {
            "dice": dice(pred, ref),
            "hd95": hd95,
            "assd": assd,
            "pred_empty": ref_any and not pred_any,
            "ref_empty": pred_any and not ref_any,
        }
    return results
