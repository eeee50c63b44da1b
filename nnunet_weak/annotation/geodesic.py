"""Geodesic distance by raster scanning (GeodisTK semantics) and PA-Seg's expansion of point clicks into a
partial nnU-Net label map (it runs at dataset conversion time).

Distance
--------
:func:`geodesic_distance_3d` reproduces ``GeodisTK.geodesic3d_raster_scan`` (GeodisTK 0.1.7) exactly, and
:func:`geodesic_distance_2d` its ``geodesic2d_raster_scan``:

* every voxel starts at 0 (seed) or 1e10; each iteration is one forward sweep (planes, rows, columns in
  increasing order) followed by one backward sweep (all decreasing), updating each voxel in place from a fixed
  half of its neighbours: 13 of the 26 in 3D, 4 of the 8 in 2D. The 3D forward half is every neighbour whose
  in-plane offset (dh, dw) comes before (0, 0) in row-major order, in the plane above, the same plane and the
  plane *below* (whose values are those of the previous backward sweep), plus the voxel straight above; the
  backward half is its mirror image. This mask is not the causal one of the sweep order, so a few iterations
  leave direction-dependent over-estimates; PA-Seg uses 4 and its threshold depends on them (four iterations
  do not converge), so the scan is reproduced, not replaced by an exact geodesic solver;
* step cost from q to a neighbour p: ``len(p, q) / ((1 - lam) + lam / (|I_p - I_q| + 1e-5))``; ``len`` is the
  physical step length from the spacing (array order), ``|.|`` the Euclidean norm over channels;
* the arithmetic follows the C++ code: float32 distances, intensity differences and step lengths, the speed
  evaluated in double precision and rounded to float32. Our results match GeodisTK's to about 1e-5.

Extensions over GeodisTK: ``iterations=None`` repeats the scan until an iteration changes nothing (the
"converged" option; with it the result is the shortest path on the 26-/8-neighbour graph with the step
costs above, and the threshold must be re-tuned because the maximum shrinks); the 2D function accepts a
``spacing`` (GeodisTK's 2D scan has none; the default (1, 1) is its behaviour); images are channel-first
(``(C, D, H, W)``, nnU-Net's convention) instead of GeodisTK's channel-last.

Why numba: the scan is a sequential recurrence (every voxel depends on the one just updated), so it does not
vectorise; plain Python takes minutes per case and a numpy port (per-row min-plus prefix scans) is about 20x
slower than C++. A numba ``@njit`` kernel runs at close to C++ speed (the 60x80x80 box PA-Seg's GeodisTK times at 0.5 s
with GeodisTK), and numba ships binary wheels, so nothing has to be compiled at install time; GeodisTK is an
sdist whose C++ extension no longer builds against numpy 2. The kernel is compiled on first use (a few
seconds) and cached on disk (``cache=True``). ``backend="geodistk"`` calls an installed GeodisTK instead, for
cross-checking.

Expansion of points
------------------------
:func:`expand_points` turns the point records of :mod:`nnunet_weak.annotation.points` (seven per target: one
foreground point, six background points just outside the target) into a label map, per target k:

1. box B = the inclusive bounding box of all points of k (the background points lie on its faces);
2. crop the *raw* image (all channels given) to B as float32; D = geodesic distance from the foreground
   point(s), lam = 0.5, 4 iterations, physical spacing;
3. inside B: the target's class where D < tau * max_B(D), tau = 0.2 (the README value), else ignore;
   outside B: background (0);
4. optional (BraTS, ``background_at_min_intensity``): voxels at the global image minimum are background, even
   inside B (a voxel qualifies when every channel is at its own minimum);
5. several targets are merged as in the BraTS script: foreground where any target says foreground, background
   only where every target says background, ignore otherwise.

Choices where PA-Seg's paper and code are silent (what an nnU-Net user would expect):

* Classes: each target carries the class value of its records (PA-Seg: always 1), so multi-class datasets work.
  A voxel claimed as foreground by targets of *different* classes becomes ignore (contradictory evidence is left
  unlabelled); targets of the same class merge as in 5.
* Ignore value: ``ignore_label`` (default: highest target class + 1, at least 2: PA-Seg's 0/1/2). nnU-Net needs
  one ignore value per dataset, the highest label, so multi-class conversions should pass it explicitly.
* Clicks keep their labels: after 3-5 the foreground point voxels are set to their class (the code gives them
  the class anyway whenever max_B(D) > 0) and, with ``label_background_points=True`` (default), the background
  click voxels are set to 0. In the original code the six background clicks act only through the box and get
  whatever the threshold says (almost always ignore), so this changes at most six voxels per target and
  never makes a clicked background voxel foreground. Pass ``False`` for the code's behaviour.
* Every target needs at least one foreground record; a target without one is a user error (:class:`NNWError`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from nnunet_weak.utilities.errors import NNWError

try:  # numba is an install requirement; the guard only turns a broken environment into a clear message
    from numba import njit
except ImportError:  # pragma: no cover
    njit = None

DEFAULT_LAMBDA = 0.5
DEFAULT_ITERATIONS = 4
DEFAULT_THRESHOLD = 0.2
BACKENDS = ("numba", "geodistk")
_FAR = np.float32(1.0e10)  # GeodisTK's initial distance of a non-seed voxel


# ------------------------------------------------------------------------------------------------ half-masks
def _half_masks() -> Tuple[np.ndarray, np.ndarray]:
    """Neighbour offsets (13, 3) of GeodisTK's forward and backward sweeps, as (dd, dh, dw).

    Forward: for each plane offset dd in -1, 0, 1 the in-plane offsets (-1, -1), (-1, 0), (-1, 1), (0, -1), and
    (-1, 0, 0). Backward: the negated offsets. (The order inside a mask does not matter: only the minimum is
    kept.)
    """
    forward = [(dd, dh, dw) for dd in (-1, 0, 1) for dh, dw in ((-1, -1), (-1, 0), (-1, 1), (0, -1))]
    forward.append((-1, 0, 0))
    fwd = np.array(forward, dtype=np.int64)
    return fwd, -fwd


_FORWARD, _BACKWARD = _half_masks()


def _step_lengths(offsets: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Physical step lengths in float32, computed as GeodisTK does (sum of squared spacings in float32)."""
    sp2 = (spacing.astype(np.float32) ** 2).astype(np.float32)
    out = np.zeros(len(offsets), dtype=np.float32)
    for i, off in enumerate(offsets):
        acc = np.float32(0.0)
        for a in range(3):
            if off[a] != 0:
                acc = np.float32(acc + sp2[a])
        out[i] = np.sqrt(acc, dtype=np.float32)
    return out


# ------------------------------------------------------------------------------------------------ numba kernel
def _raster_scan_py(img, dist, fwd, len_f, bwd, len_b, lam, iterations):
    """In-place raster scan on ``dist`` (D, H, W) float32 with image ``img`` (D, H, W, C) float32.

    ``iterations`` < 0 means: repeat until an iteration changes nothing. Returns the iterations run.
    """
    depth, height, width, channels = img.shape
    lam32 = np.float32(lam)
    lam64 = np.float64(lam32)
    one_minus = 1.0 - lam64
    n_nb = fwd.shape[0]
    it = 0
    while True:
        if iterations >= 0 and it >= iterations:
            break
        changed = False
        for sweep in range(2):
            if sweep == 0:
                offs, lens, step = fwd, len_f, 1
            else:
                offs, lens, step = bwd, len_b, -1
            for di in range(depth):
                d = di if step == 1 else depth - 1 - di
                for hi in range(height):
                    h = hi if step == 1 else height - 1 - hi
                    for wi in range(width):
                        w = wi if step == 1 else width - 1 - wi
                        p_dis = dist[d, h, w]
                        old = p_dis
                        for i in range(n_nb):
                            nd = d + offs[i, 0]
                            nh = h + offs[i, 1]
                            nw = w + offs[i, 2]
                            if nd < 0 or nd >= depth or nh < 0 or nh >= height or nw < 0 or nw >= width:
                                continue
                            if channels == 1:
                                diff = np.float32(abs(img[d, h, w, 0] - img[nd, nh, nw, 0]))
                            else:
                                sq = np.float32(0.0)
                                for c in range(channels):
                                    t = np.float32(img[d, h, w, c] - img[nd, nh, nw, c])
                                    sq = np.float32(sq + np.float32(t * t))
                                diff = np.float32(np.sqrt(sq))
                            speed = np.float32(one_minus + lam64 / (np.float64(diff) + 1e-5))
                            cand = np.float32(dist[nd, nh, nw] + np.float32(lens[i] / speed))
                            if cand < p_dis:
                                p_dis = cand
                        if p_dis < old:
                            dist[d, h, w] = p_dis
                            changed = True
        it += 1
        if iterations < 0 and not changed:
            break
    return it


# error_model="numpy": no zero-division checks in the inner loop (the speed is always > 0)
_raster_scan = (njit(cache=True, nogil=True, error_model="numpy")(_raster_scan_py) if njit is not None
                else None)


# ------------------------------------------------------------------------------------------------ public API
def _as_channel_last(image: np.ndarray, spatial_ndim: int, name: str = "image") -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim == spatial_ndim:
        arr = arr[None]
    elif arr.ndim != spatial_ndim + 1:
        raise NNWError(f"{name} has shape {arr.shape}; expected {spatial_ndim} spatial axes, optionally preceded by "
                       f"a channel axis (C, ...).")
    return np.ascontiguousarray(np.moveaxis(arr, 0, -1), dtype=np.float32)


def _check_common(lam: float, iterations: Optional[int], backend: str) -> int:
    if not 0.0 <= lam <= 1.0:
        raise NNWError(f"geodesic lambda must lie in [0, 1], got {lam}.")
    if backend not in BACKENDS:
        raise NNWError(f"unknown geodesic backend {backend!r}; choose one of {', '.join(BACKENDS)}.")
    if iterations is None:
        return -1
    if int(iterations) != iterations or iterations < 0:
        raise NNWError(f"geodesic iterations must be a non-negative integer or None (until converged), "
                       f"got {iterations}.")
    return int(iterations)


def _scan(img_cl: np.ndarray, seeds: np.ndarray, spacing3: Sequence[float], lam: float, n_iter: int) -> np.ndarray:
    if _raster_scan is None:  # pragma: no cover
        raise NNWError("numba is not installed; `pip install numba` (an nnunet_weak requirement).")
    dist = np.where(seeds, np.float32(0.0), _FAR).astype(np.float32)
    spacing = np.asarray(spacing3, dtype=np.float64)
    _raster_scan(img_cl, dist, _FORWARD, _step_lengths(_FORWARD, spacing), _BACKWARD,
                 _step_lengths(_BACKWARD, spacing), float(lam), int(n_iter))
    return dist


def _geodistk():
    try:
        import GeodisTK  # noqa: N813 (third-party module name)
    except ImportError:
        raise NNWError("backend 'geodistk' needs GeodisTK (`pip install geodistk`, builds with numpy<2 only); "
                       "use the default backend 'numba'.") from None
    return GeodisTK


def _checked_inputs(image, seeds, spacing, lam, iterations, backend, axes: str):
    """(iterations as int, channel-last image, seeds array) after the checks shared by the 2D and 3D scans;
    ``axes`` names the spatial axes in order, e.g. "z, y, x"."""
    ndim = len(axes.split(","))
    n_iter = _check_common(lam, iterations, backend)
    img = _as_channel_last(image, ndim)
    seeds = np.asarray(seeds)
    if seeds.shape != img.shape[:ndim]:
        raise NNWError(f"seeds have shape {seeds.shape} but the image has spatial shape {img.shape[:ndim]}.")
    if len(spacing) != ndim:
        raise NNWError(f"spacing must have {ndim} values ({axes}), got {tuple(spacing)}.")
    return n_iter, img, seeds


def geodesic_distance_3d(image: np.ndarray, seeds: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0),
                         lam: float = DEFAULT_LAMBDA, iterations: Optional[int] = DEFAULT_ITERATIONS,
                         backend: str = "numba") -> np.ndarray:
    """Geodesic distance from the non-zero voxels of ``seeds`` (D, H, W), GeodisTK ``geodesic3d_raster_scan``.

    ``image``: (D, H, W) or channel-first (C, D, H, W); ``spacing``: physical spacing in array order (z, y, x);
    ``lam`` in [0, 1] (0: spatial distance only); ``iterations``: forward+backward sweep pairs, ``None`` = until
    converged. Returns float32 (D, H, W); voxels no seed reaches keep 1e10 (as GeodisTK).
    """
    n_iter, img, seeds = _checked_inputs(image, seeds, spacing, lam, iterations, backend, "z, y, x")
    if backend == "geodistk":
        if n_iter < 0:
            raise NNWError("GeodisTK has no 'until converged' mode; pass an integer number of iterations.")
        arr = img[..., 0] if img.shape[-1] == 1 else img
        return np.asarray(_geodistk().geodesic3d_raster_scan(arr, (seeds != 0).astype(np.uint8),
                                                             [float(s) for s in spacing], float(lam), n_iter),
                          dtype=np.float32)
    return _scan(img, seeds != 0, spacing, lam, n_iter)


def geodesic_distance_2d(image: np.ndarray, seeds: np.ndarray, lam: float = DEFAULT_LAMBDA,
                         iterations: Optional[int] = DEFAULT_ITERATIONS, spacing: Sequence[float] = (1.0, 1.0),
                         backend: str = "numba") -> np.ndarray:
    """2D counterpart (GeodisTK ``geodesic2d_raster_scan``): ``image`` (H, W) or (C, H, W), ``seeds`` (H, W).

    GeodisTK's 2D scan has no spacing (unit steps); ``spacing`` (y, x) defaults to that. The 2D half-masks are
    the in-plane parts of the 3D ones, so this runs the 3D kernel on a single plane.
    """
    n_iter, img, seeds = _checked_inputs(image, seeds, spacing, lam, iterations, backend, "y, x")
    if backend == "geodistk":
        if n_iter < 0 or tuple(float(s) for s in spacing) != (1.0, 1.0):
            raise NNWError("GeodisTK's 2D scan supports neither spacing nor 'until converged'.")
        arr = img[..., 0] if img.shape[-1] == 1 else img
        return np.asarray(_geodistk().geodesic2d_raster_scan(arr, (seeds != 0).astype(np.uint8), float(lam),
                                                             n_iter), dtype=np.float32)
    return _scan(img[None], (seeds != 0)[None], (1.0,) + tuple(spacing), lam, n_iter)[0]


# ------------------------------------------------------------------------------------------------ expansion
@dataclass
class TargetExpansion:
    """One target's part of :func:`expand_points`: its inclusive box and the distance / labels inside it."""
    target: int
    label: int
    box_min: Tuple[int, ...]
    box_max: Tuple[int, ...]            # inclusive
    distance: np.ndarray                # float32, shape of the box
    threshold_value: float              # tau * max_B(D)

    @property
    def slices(self) -> Tuple[slice, ...]:
        return tuple(slice(lo, hi + 1) for lo, hi in zip(self.box_min, self.box_max))


@dataclass
class PointExpansion:
    """Result of :func:`expand_points`: the merged label map and the per-target distances."""
    labels: np.ndarray
    ignore_label: int
    targets: List[TargetExpansion]

    def distance_map(self) -> np.ndarray:
        """Full-size float32 map: each target's D inside its box (minimum where boxes overlap), 0 elsewhere (the
        original scripts write one such map per target)."""
        out = np.zeros(self.labels.shape, dtype=np.float32)
        seen = np.zeros(self.labels.shape, dtype=bool)
        for t in self.targets:
            sl = t.slices
            out[sl] = np.where(seen[sl], np.minimum(out[sl], t.distance), t.distance)
            seen[sl] = True
        return out


def _group_targets(points) -> Dict[int, list]:
    groups: Dict[int, list] = {}
    for p in points:
        groups.setdefault(int(p.target), []).append(p)
    return dict(sorted(groups.items()))


def expand_points(image: np.ndarray, points, spacing: Sequence[float], lam: float = DEFAULT_LAMBDA,
                  iterations: Optional[int] = DEFAULT_ITERATIONS,
                  threshold: Union[float, Dict[int, float]] = DEFAULT_THRESHOLD,
                  ignore_label: Optional[int] = None, background_at_min_intensity: bool = False,
                  label_background_points: bool = True, backend: str = "numba", normalise: str = "none",
                  exclusive: bool = False) -> PointExpansion:
    """Expand point clicks into a partial label map (0 background, target classes, ``ignore_label``).

    ``image``: the raw (not normalised) image, (D, H, W) or channel-first (C, D, H, W); ``points``: records with
    ``target``, ``label``, ``kind`` ("foreground"/"background") and ``voxel`` (z, y, x), e.g. from
    :func:`nnunet_weak.annotation.points.simulate_points`; ``spacing``: physical spacing (z, y, x). See the
    module docstring for the rules and the choices made.

    Options beyond PA-Seg (defaults: PA-Seg's behaviour):
    ``threshold`` may map a class to its own tau (thin targets such as a myocardial ring need a tighter one);
    ``normalise="zscore"`` computes the distances on the per-case z-scored image (per channel, as nnU-Net's
    normalisation), so that the intensity term of the step cost does not saturate on raw scanner values;
    ``exclusive=True`` makes the expansion a competition of the clicks: a voxel joins target k only where k's
    foreground click is geodesically nearer than k's own background clicks, and a voxel that several targets
    claim goes to the one whose foreground click is nearest (absolute distance), never to two and never ignore.
    """
    img = np.asarray(image)
    if img.ndim not in (3, 4):
        raise NNWError(f"image has shape {img.shape}; expected (D, H, W) or channel-first (C, D, H, W).")
    shape = img.shape if img.ndim == 3 else img.shape[1:]
    taus = threshold if isinstance(threshold, dict) else {}
    for tau in list(taus.values()) + ([] if isinstance(threshold, dict) else [threshold]):
        if not 0.0 < tau <= 1.0:
            raise NNWError(f"geodesic threshold must lie in (0, 1], got {tau}.")
    if normalise not in ("none", "zscore"):
        raise NNWError(f"normalise={normalise!r}: expected 'none' (PA-Seg: raw intensities) or 'zscore'.")
    groups = _group_targets(points)
    if not groups:
        raise NNWError("no points given; every case needs at least one target (1 foreground + 6 background "
                       "points).")
    classes = {}
    for k, recs in groups.items():
        labels_k = {int(r.label) for r in recs}
        if len(labels_k) != 1:
            raise NNWError(f"target {k} mixes classes {sorted(labels_k)}; all points of a target share its class.")
        classes[k] = labels_k.pop()
        if classes[k] < 1:
            raise NNWError(f"target {k} has class {classes[k]}; target classes must be >= 1 (0 is background).")
        if not any(r.kind == "foreground" for r in recs):
            raise NNWError(f"target {k} has no foreground point; each target needs one (2k in a point volume).")
        for r in recs:
            v = tuple(int(c) for c in r.voxel)
            if len(v) != 3 or any(not 0 <= c < s for c, s in zip(v, shape)):
                raise NNWError(f"point {v} of target {k} lies outside the image of shape {shape}.")
    max_class = max(classes.values())
    ignore = max(max_class + 1, 2) if ignore_label is None else int(ignore_label)
    if ignore <= max_class:
        raise NNWError(f"ignore_label {ignore} must be higher than every target class (max {max_class}).")
    dtype = np.uint8 if ignore <= 255 else np.int16

    channels = img if img.ndim == 4 else img[None]
    if normalise == "zscore":
        flat = channels.reshape(channels.shape[0], -1).astype(np.float64)
        mean, std = flat.mean(axis=1), flat.std(axis=1)
        channels = ((channels - mean[:, None, None, None]) / np.maximum(std, 1e-8)[:, None, None, None])
    nearest = np.full(shape, np.inf)                       # exclusive: nearest foreground click so far
    owner = np.zeros(shape, dtype=np.int32)                # exclusive: class of that target
    n_fg = np.zeros(shape, dtype=np.int32)                 # how many targets call a voxel foreground
    fg_class = np.zeros(shape, dtype=np.int32)             # class of those targets (-1: several classes)
    n_bg = np.zeros(shape, dtype=np.int32)                 # how many targets call a voxel background
    results = []
    for k, recs in groups.items():
        vox = np.array([tuple(int(c) for c in r.voxel) for r in recs], dtype=np.int64)
        lo, hi = vox.min(axis=0), vox.max(axis=0)
        sl = tuple(slice(a, b + 1) for a, b in zip(lo, hi))
        crop = channels[(slice(None),) + sl].astype(np.float32)
        seeds = np.zeros(crop.shape[1:], dtype=bool)
        for r, v in zip(recs, vox):
            if r.kind == "foreground":
                seeds[tuple(v - lo)] = True
        dist = geodesic_distance_3d(crop, seeds, spacing, lam, iterations, backend)
        c = classes[k]
        tau = taus.get(c, DEFAULT_THRESHOLD) if isinstance(threshold, dict) else threshold
        thr = float(dist.max()) * float(tau)
        fg = dist.astype(np.float64) < thr
        if exclusive:
            background_seeds = np.zeros(crop.shape[1:], dtype=bool)
            for r, v in zip(recs, vox):
                if r.kind != "foreground":
                    background_seeds[tuple(v - lo)] = True
            if background_seeds.any():
                fg &= dist < geodesic_distance_3d(crop, background_seeds, spacing, lam, iterations, backend)
            absolute = np.full(shape, np.inf)
            absolute[sl] = np.where(fg, dist, np.inf)
            closer = absolute < nearest
            nearest[closer], owner[closer] = absolute[closer], c
        fg_full = np.zeros(shape, dtype=bool)
        fg_full[sl] = fg
        fg_class[fg_full & (n_fg > 0) & (fg_class != c)] = -1
        fg_class[fg_full & (n_fg == 0)] = c
        n_fg += fg_full
        in_box = np.zeros(shape, dtype=bool)
        in_box[sl] = True
        n_bg += ~in_box
        results.append(TargetExpansion(k, c, tuple(int(a) for a in lo), tuple(int(b) for b in hi), dist, thr))

    labels = np.full(shape, ignore, dtype=dtype)
    labels[n_bg == len(groups)] = 0
    agree = (n_fg > 0) & (fg_class > 0)
    labels[agree] = fg_class[agree]
    if exclusive:
        contested = (n_fg > 0) & (fg_class < 0)
        labels[contested] = owner[contested]
    if background_at_min_intensity:
        flat = channels.reshape(channels.shape[0], -1)
        at_min = np.all(flat == flat.min(axis=1, keepdims=True), axis=0).reshape(shape)
        labels[at_min] = 0
    if label_background_points:
        for recs in groups.values():
            for r in recs:
                if r.kind != "foreground":
                    labels[tuple(int(c) for c in r.voxel)] = 0
    for k, recs in groups.items():  # foreground clicks win over any background click on the same voxel
        for r in recs:
            if r.kind == "foreground":
                labels[tuple(int(c) for c in r.voxel)] = classes[k]
    return PointExpansion(labels=labels, ignore_label=ignore, targets=results)
