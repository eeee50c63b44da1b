"""Simulated PA-Seg point clicks from dense 3D label maps, their JSON files and the
point-volume encoding of the original code.

Protocol: seven points per target, one *foreground* point inside it and six *background* points just
outside its extremes along -z, +z, -y, +y, -x, +x. A target is one connected component of one class. For
every class and every kept component:

* foreground point: the component voxel with the largest Euclidean distance to the component's boundary
  (distance transform with the voxel spacing), ties broken by the physical distance to the component's
  centroid, then by array order. Unlike the centroid this always lies inside non-convex shapes;
* background points: for each axis a and side s, among the component voxels on its extreme plane along a, the
  one nearest the centroid in the other two (physical) coordinates, moved outwards along a by
  ``m_a = max(1, round(margin_mm / spacing_a))`` voxels (default margin 2 mm; halves round up), then
  clipped to the volume;
* optional annotator noise: integer jitter of up to ``jitter`` voxels in the two in-plane coordinates of each
  background point (clipped to the volume) and in all coordinates of the foreground point, the latter drawn
  uniformly among the component voxels within that cube so the point stays inside the target.

The inclusive box of the six background points therefore contains the whole component and, unless
the component touches the image border, the background points lie outside it.

Choices where PA-Seg's paper and code are silent (what an nnU-Net user would expect):

* Connectivity: full (26-neighbour) connectivity, so voxels touching by a corner belong to one target, as an
  annotator would see them.
* Size filter: a component gets points if it has at least ``max(min_size, min_fraction * largest)`` voxels,
  ``largest`` being the largest component of the same class (defaults 10 and 0.1 %). Smaller components get no
  points and so end up as background (or ignore, inside another target's box) after the geodesic expansion.
* ``max_targets`` applies per class and keeps the largest components.
* Target numbering: classes in increasing order, within a class components by decreasing size (equal sizes in
  array order); k = 1, 2, ... across classes. The point volume stores 2k-1 at the background points and 2k at
  the foreground point of target k; the class of each target is kept in the records / JSON (the original
  data has a single class, so ``points_from_volume`` assumes class 1 unless told otherwise).
* Only 3D volumes: PA-Seg defines the protocol for 3D (and keeps the expansion 3D for 2D
  configurations); a 2D map is a user error here.
* Coordinates: ``voxel`` is the index in array order (z, y, x) of ``SimpleITK.GetArrayFromImage``; ``world``
  is the physical point (x, y, z, in the image's frame, mm) given by the image's origin, spacing and direction,
  identical to ``TransformContinuousIndexToPhysicalPoint`` of the (x, y, z) index.
* Randomness comes only from ``rng`` (a ``numpy.random.Generator`` or an int seed); without jitter the points
  are deterministic.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, replace
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from nnunet_weak.annotation.nnunet_io import Geometry
from nnunet_weak.utilities.errors import NNWError

FOREGROUND = "foreground"
BACKGROUND = "background"
JSON_FORMAT = "nnunet_weak.points/1"
DEFAULT_MARGIN_MM = 2.0
DEFAULT_MIN_SIZE = 10
DEFAULT_MIN_FRACTION = 0.001

Reference = Union[sitk.Image, Geometry]


@dataclass(frozen=True)
class PointRecord:
    """One click. ``target`` k is 1-based (point-volume values 2k-1 / 2k); ``label`` is the target's class;
    ``axis``/``side`` say which extreme a background point marks (array axis 0/1/2 = z/y/x, side -1 = low end,
    +1 = high end; ``None`` for foreground points and for points read from a point volume)."""
    target: int
    label: int
    kind: str
    voxel: Tuple[int, int, int]
    axis: Optional[int] = None
    side: Optional[int] = None
    world: Optional[Tuple[float, float, float]] = None


# ------------------------------------------------------------------------------------------------ geometry
def _geometry(reference: Reference) -> Geometry:
    return reference if isinstance(reference, Geometry) else Geometry.of(reference)


def voxel_to_world(voxel: Sequence[float], reference: Reference) -> Tuple[float, float, float]:
    """Physical (x, y, z) of an array index ``voxel`` (z, y, x) in ``reference`` (a SimpleITK image or a
    :class:`Geometry`): origin + direction @ (spacing * index)."""
    geo = _geometry(reference)
    index_xyz = np.asarray(voxel, dtype=np.float64)[::-1]
    direction = np.asarray(geo.direction, dtype=np.float64).reshape(len(index_xyz), len(index_xyz))
    world = np.asarray(geo.origin, dtype=np.float64) + direction @ (np.asarray(geo.spacing) * index_xyz)
    return tuple(float(c) for c in world)


def with_world_coordinates(points: Iterable[PointRecord], reference: Reference) -> List[PointRecord]:
    """Copies of ``points`` with ``world`` filled in from ``reference``."""
    return [replace(p, world=voxel_to_world(p.voxel, reference)) for p in points]


# ------------------------------------------------------------------------------------------------ simulation
def _margin_voxels(margin_mm: float, spacing: float) -> int:
    return max(1, int(math.floor(margin_mm / spacing + 0.5)))


def _foreground_point(centroid: np.ndarray, spacing: np.ndarray, lo: np.ndarray,
                      comp_mask: np.ndarray) -> np.ndarray:
    """Voxel of the component with the largest distance to its boundary (image border counts as boundary)."""
    padded = np.pad(comp_mask, 1)
    edt = ndimage.distance_transform_edt(padded, sampling=spacing)[1:-1, 1:-1, 1:-1]
    best = np.argwhere(edt == edt.max()) + lo
    if len(best) > 1:
        d2 = (((best - centroid) * spacing) ** 2).sum(axis=1)
        best = best[d2 == d2.min()]
    return best[0]


def _background_point(coords: np.ndarray, centroid: np.ndarray, spacing: np.ndarray, axis: int, side: int,
                      margin: int, shape: Tuple[int, ...]) -> np.ndarray:
    extreme = coords[:, axis].min() if side < 0 else coords[:, axis].max()
    plane = coords[coords[:, axis] == extreme]
    others = [b for b in range(3) if b != axis]
    d2 = (((plane[:, others] - centroid[others]) * spacing[others]) ** 2).sum(axis=1)
    point = plane[int(np.argmin(d2))].copy()
    point[axis] = min(max(extreme + side * margin, 0), shape[axis] - 1)
    return point


def simulate_points(labels: np.ndarray, spacing: Optional[Sequence[float]] = None, *,
                    reference: Optional[Reference] = None, classes: Optional[Sequence[int]] = None,
                    margin_mm: float = DEFAULT_MARGIN_MM, jitter: int = 0, min_size: int = DEFAULT_MIN_SIZE,
                    min_fraction: float = DEFAULT_MIN_FRACTION, max_targets: Optional[int] = None,
                    rng: Union[np.random.Generator, int, None] = 0) -> List[PointRecord]:
    """Seven PA-Seg clicks per target of the dense 3D label map ``labels`` (z, y, x).

    ``spacing`` (z, y, x) in mm; if omitted it is taken from ``reference`` (a SimpleITK image or
    :class:`Geometry` of the case, which also fills in world coordinates), else 1. ``classes``: the label
    values to click (default: every non-zero value present). Returns the records target by target, each as the
    foreground point followed by the background points of -z, +z, -y, +y, -x, +x.
    """
    labels = np.asarray(labels)
    if labels.dtype == bool:
        labels = labels.astype(np.uint8)
    if labels.ndim != 3:
        raise NNWError(f"point simulation needs a 3D label map (z, y, x), got shape {labels.shape}; the PA-Seg "
                       f"protocol (7 points) is defined for volumes.")
    if reference is not None:
        geo = _geometry(reference)
        if tuple(labels.shape[::-1]) != tuple(geo.size):
            raise NNWError(f"label map shape {labels.shape} (z, y, x) does not match the reference image size "
                           f"{tuple(geo.size)} (x, y, z); pass the case's own image.")
        if spacing is None:
            spacing = tuple(geo.spacing[::-1])
    sp = np.asarray(spacing if spacing is not None else (1.0, 1.0, 1.0), dtype=np.float64)
    if sp.shape != (3,) or np.any(sp <= 0):
        raise NNWError(f"spacing must be 3 positive values (z, y, x), got {tuple(sp.tolist())}.")
    if jitter < 0 or int(jitter) != jitter:
        raise NNWError(f"jitter must be a non-negative integer number of voxels, got {jitter}.")
    if margin_mm < 0:
        raise NNWError(f"margin_mm must be >= 0, got {margin_mm}.")
    if max_targets is not None and max_targets < 1:
        raise NNWError(f"max_targets must be >= 1 or None (all components), got {max_targets}.")
    if labels.size and (labels.min() < 0 or not np.all(np.mod(labels, 1) == 0)):
        raise NNWError("label map holds negative or non-integer values; pass a dense integer segmentation.")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    jitter = int(jitter)

    if classes is None:
        classes = [int(c) for c in np.unique(labels) if c != 0]
    margins = [_margin_voxels(margin_mm, s) for s in sp]
    structure = np.ones((3, 3, 3), dtype=bool)
    records: List[PointRecord] = []
    k = 0
    for cls in sorted(int(c) for c in classes):
        if cls <= 0:
            raise NNWError(f"class {cls} cannot be clicked; target classes are >= 1 (0 is background).")
        cc, n = ndimage.label(labels == cls, structure=structure)
        if n == 0:
            continue
        sizes = np.bincount(cc.ravel())[1:]
        keep = max(min_size, min_fraction * sizes.max())
        order = [i for i in np.argsort(-sizes, kind="stable") if sizes[i] >= keep]
        if max_targets is not None:
            order = order[:max_targets]
        boxes = ndimage.find_objects(cc)
        for i in order:
            k += 1
            box = boxes[i]
            lo = np.array([s.start for s in box])
            comp_mask = cc[box] == i + 1
            coords = np.argwhere(comp_mask) + lo
            centroid = coords.mean(axis=0)
            fg = _foreground_point(centroid, sp, lo, comp_mask)
            if jitter:
                near = coords[np.abs(coords - fg).max(axis=1) <= jitter]
                fg = near[int(gen.integers(len(near)))]
            records.append(PointRecord(k, cls, FOREGROUND, tuple(int(c) for c in fg)))
            for axis in range(3):
                for side in (-1, 1):
                    bg = _background_point(coords, centroid, sp, axis, side, margins[axis], labels.shape)
                    if jitter:
                        for b in range(3):
                            if b != axis:
                                bg[b] = min(max(bg[b] + int(gen.integers(-jitter, jitter + 1)), 0),
                                            labels.shape[b] - 1)
                    records.append(PointRecord(k, cls, BACKGROUND, tuple(int(c) for c in bg), axis, side))
    if reference is not None:
        records = with_world_coordinates(records, reference)
    return records


# ------------------------------------------------------------------------------------------------ point volume
def points_to_volume(points: Iterable[PointRecord], shape: Sequence[int]) -> np.ndarray:
    """Point volume of the original code: 2k-1 at the background points of target k, 2k at its foreground point,
    0 elsewhere (uint8, or uint16 beyond 127 targets). A later point overwrites an earlier one on the same
    voxel; foreground points are written last."""
    points = list(points)
    top = 2 * max((p.target for p in points), default=0)
    out = np.zeros(tuple(shape), dtype=np.uint8 if top <= 255 else np.uint16)
    for p in sorted(points, key=lambda q: q.kind == FOREGROUND):
        out[tuple(p.voxel)] = 2 * p.target - (p.kind != FOREGROUND)
    return out


def points_from_volume(volume: np.ndarray, target_classes: Optional[Dict[int, int]] = None,
                       source: str = "point volume") -> List[PointRecord]:
    """Records from a point volume (values 2k-1 / 2k, e.g. PA-Seg's downloaded annotations). ``target_classes``
    maps target k to its class (default 1 for every target); ``source`` names the file in error messages."""
    volume = np.asarray(volume)
    values = sorted(int(v) for v in np.unique(volume) if v != 0)
    if any(v < 0 for v in values):
        raise NNWError(f"{source} holds negative values; expected 0 and 2k-1 / 2k per target k.")
    targets = sorted({(v + 1) // 2 for v in values})
    records = []
    for k in targets:
        fg = np.argwhere(volume == 2 * k)
        if len(fg) == 0:
            raise NNWError(f"{source}: target {k} has background points ({2 * k - 1}) but no foreground point "
                           f"({2 * k}); fix the annotation.")
        cls = 1 if target_classes is None else int(target_classes.get(k, 1))
        records += [PointRecord(k, cls, FOREGROUND, tuple(int(c) for c in v)) for v in fg]
        records += [PointRecord(k, cls, BACKGROUND, tuple(int(c) for c in v))
                    for v in np.argwhere(volume == 2 * k - 1)]
    return records


# ------------------------------------------------------------------------------------------------ JSON
def write_points_json(path: str, points: Iterable[PointRecord], reference: Optional[Reference] = None,
                      metadata: Optional[dict] = None) -> dict:
    """Write ``points`` to ``path`` (voxel (z, y, x) and, with ``reference`` or records that carry them, world
    (x, y, z) coordinates). ``metadata`` (e.g. the simulation parameters) is stored as is. Returns the content."""
    points = list(points)
    if reference is not None:
        points = with_world_coordinates(points, reference)
    content = {
        "format": JSON_FORMAT,
        "protocol": "PA-Seg: per target 1 foreground point inside it and 6 background points just outside its "
                    "extremes; point volume value 2k-1 = background points, 2k = foreground point of target k",
        "voxel_axes": "z, y, x (array index of SimpleITK.GetArrayFromImage)",
        "world_axes": "x, y, z (physical, mm, image frame)",
        "metadata": dict(metadata or {}),
        "points": [asdict(p) for p in points],
    }
    if reference is not None:
        geo = _geometry(reference)
        content["geometry"] = {"size_xyz": list(geo.size), "spacing_xyz": list(geo.spacing),
                               "origin_xyz": list(geo.origin), "direction": list(geo.direction)}
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, "w") as f:
        json.dump(content, f, indent=2)
    return content


def read_points_json(path: str) -> List[PointRecord]:
    """Read the records written by :func:`write_points_json`."""
    if not os.path.isfile(path):
        raise NNWError(f"{path} does not exist; pass a points JSON written by nnunet_weak.")
    try:
        with open(path) as f:
            content = json.load(f)
        if content.get("format") != JSON_FORMAT:
            raise ValueError(f"format {content.get('format')!r}")
        out = []
        for d in content["points"]:
            world = d.get("world")
            out.append(PointRecord(int(d["target"]), int(d["label"]), str(d["kind"]),
                                   tuple(int(c) for c in d["voxel"]),
                                   None if d.get("axis") is None else int(d["axis"]),
                                   None if d.get("side") is None else int(d["side"]),
                                   None if world is None else tuple(float(c) for c in world)))
    except (ValueError, KeyError, TypeError) as e:
        raise NNWError(f"{path} is not a valid points file ({e}); expected format {JSON_FORMAT}, "
                       f"rewrite it with write_points_json.") from None
    for p in out:
        if p.kind not in (FOREGROUND, BACKGROUND):
            raise NNWError(f"{path}: point kind {p.kind!r} is neither {FOREGROUND!r} nor {BACKGROUND!r}.")
    return out
