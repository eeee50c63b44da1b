"""PA-Seg annotation side: point simulator, GeodisTK-exact raster-scan geodesic distance, expansion of points
into a partial label map (spec paseg.md §1, §2, §9)."""
import itertools
import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra

from nnunet_weak.annotation.geodesic import (expand_points, geodesic_distance_2d, geodesic_distance_3d)
from nnunet_weak.annotation.nnunet_io import Geometry
from nnunet_weak.annotation.points import (BACKGROUND, FOREGROUND, PointRecord, points_from_volume,
                                           points_to_volume, read_points_json, simulate_points, voxel_to_world,
                                           write_points_json)
from nnunet_weak.utilities.errors import NNWError


# ------------------------------------------------------------------------------------------------ references
def _half_mask(ndim: int, forward: bool):
    """Offsets of GeodisTK's half-masks, derived from a rule rather than copied: an offset belongs to the forward
    half when its in-plane part followed by its plane part, (dh, dw, dd), is lexicographically negative."""
    out = []
    for off in itertools.product((-1, 0, 1), repeat=ndim):
        if not any(off):
            continue
        key = off[1:] + off[:1] if ndim == 3 else off
        if (key < (0,) * ndim) == forward:
            out.append(off)
    return out


def _reference_scan(image, seeds, spacing, lam, iterations):
    """Slow, plain-Python float64 version of the sequential forward/backward sweeps (channel-first image)."""
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == seeds.ndim:
        img = img[None]
    dist = np.where(seeds, 0.0, 1e10)
    ndim = seeds.ndim
    shape = seeds.shape
    all_idx = list(itertools.product(*[range(s) for s in shape]))
    for _ in range(iterations):
        for forward, order in ((True, all_idx), (False, all_idx[::-1])):
            mask = _half_mask(ndim, forward)
            for p in order:
                best = dist[p]
                for off in mask:
                    q = tuple(a + b for a, b in zip(p, off))
                    if not all(0 <= c < s for c, s in zip(q, shape)):
                        continue
                    diff = np.sqrt(((img[(slice(None),) + p] - img[(slice(None),) + q]) ** 2).sum())
                    length = np.sqrt(sum((o * s) ** 2 for o, s in zip(off, spacing)))
                    best = min(best, dist[q] + length / ((1 - lam) + lam / (diff + 1e-5)))
                dist[p] = best
    return dist


def _dijkstra(image, seeds, spacing, lam):
    """Shortest paths on the 26-neighbour graph with the raster scan's step costs (its converged limit)."""
    img = np.asarray(image, dtype=np.float64)
    idx = np.arange(img.size).reshape(img.shape)
    rows, cols, weights = [], [], []
    for off in itertools.product((-1, 0, 1), repeat=3):
        if not any(off):
            continue
        src = tuple(slice(max(0, -o), s - max(0, o)) for o, s in zip(off, img.shape))
        dst = tuple(slice(max(0, o), s - max(0, -o)) for o, s in zip(off, img.shape))
        length = np.sqrt(sum((o * s) ** 2 for o, s in zip(off, spacing)))
        diff = np.abs(img[src] - img[dst])
        rows.append(idx[src].ravel())
        cols.append(idx[dst].ravel())
        weights.append((length / ((1 - lam) + lam / (diff + 1e-5))).ravel())
    graph = coo_matrix((np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))),
                       shape=(img.size, img.size)).tocsr()
    d = dijkstra(graph, indices=np.flatnonzero(seeds.ravel()), min_only=True)
    return d.reshape(img.shape)


def _golden_image():
    d, h, w = np.mgrid[:6, :7, :8]
    image = (10 * ((7 * d + 3 * h + 5 * w) % 11)).astype(np.float32)
    seeds = np.zeros(image.shape, dtype=np.uint8)
    seeds[3, 3, 4] = 1
    return image, seeds


# ------------------------------------------------------------------------------------------------ geodesic
def test_golden_values_of_geodistk():
    image, seeds = _golden_image()
    d4 = geodesic_distance_3d(image, seeds, (2.0, 1.0, 1.0), lam=0.5, iterations=4)
    assert d4.dtype == np.float32 and d4.shape == image.shape
    assert d4.max() == pytest.approx(16.30569, abs=1e-4)
    assert d4.astype(np.float64).sum() == pytest.approx(3092.8823, abs=1e-3)
    assert d4[5, 6, 7] == pytest.approx(12.34666, abs=1e-4)
    assert d4[0, 6, 0] == pytest.approx(15.95787, abs=1e-4)
    d1 = geodesic_distance_3d(image, seeds, (2.0, 1.0, 1.0), lam=0.5, iterations=1)
    assert d1.max() == pytest.approx(17.73287, abs=1e-4)
    assert d1[0, 6, 0] == pytest.approx(17.42607, abs=1e-4)
    e4 = geodesic_distance_3d(image, seeds, (2.0, 1.0, 1.0), lam=0.0, iterations=4)
    assert e4.max() == pytest.approx(8.34847, abs=1e-4)
    assert e4.astype(np.float64).sum() == pytest.approx(1620.1030, abs=1e-3)


def test_euclidean_case_four_iterations_do_not_converge():
    seeds = np.zeros((20, 30, 30), dtype=bool)
    seeds[10, 15, 15] = True
    flat = np.zeros(seeds.shape, dtype=np.float32)
    d4 = geodesic_distance_3d(flat, seeds, lam=0.0, iterations=4)
    assert d4.max() == pytest.approx(27.48, abs=5e-3)
    assert d4[0, 29, 29] == pytest.approx(27.07, abs=5e-3)
    d16 = geodesic_distance_3d(flat, seeds, lam=0.0, iterations=16)
    assert d16.max() == pytest.approx(24.39, abs=5e-3)
    assert d16[0, 29, 29] == pytest.approx(22.98, abs=5e-3)
    np.testing.assert_array_equal(geodesic_distance_3d(flat, seeds, lam=0.0, iterations=None), d16)


@pytest.mark.parametrize("channels,lam,iterations", [(1, 0.5, 1), (2, 0.3, 2), (1, 0.0, 3)])
def test_raster_scan_equals_slow_reference_3d(channels, lam, iterations):
    rng = np.random.default_rng(channels + iterations)
    image = rng.integers(0, 6, size=(channels, 3, 4, 5)).astype(np.float32) * 0.7
    seeds = np.zeros((3, 4, 5), dtype=bool)
    seeds[1, 2, 2] = seeds[2, 0, 4] = True
    spacing = (2.5, 1.0, 0.7)
    ours = geodesic_distance_3d(image if channels > 1 else image[0], seeds, spacing, lam, iterations)
    np.testing.assert_allclose(ours, _reference_scan(image, seeds, spacing, lam, iterations), rtol=1e-5)


def test_raster_scan_equals_slow_reference_2d():
    rng = np.random.default_rng(5)
    image = rng.normal(size=(2, 6, 7)).astype(np.float32)
    seeds = np.zeros((6, 7), dtype=bool)
    seeds[4, 1] = True
    ours = geodesic_distance_2d(image, seeds, lam=0.5, iterations=2)
    np.testing.assert_allclose(ours, _reference_scan(image, seeds, (1.0, 1.0), 0.5, 2), rtol=1e-5)
    ours_sp = geodesic_distance_2d(image[0], seeds, lam=0.2, iterations=1, spacing=(1.5, 0.5))
    np.testing.assert_allclose(ours_sp, _reference_scan(image[0], seeds, (1.5, 0.5), 0.2, 1), rtol=1e-5)


@pytest.mark.parametrize("lam", [0.0, 0.5])
def test_converged_scan_equals_shortest_paths(lam):
    rng = np.random.default_rng(7)
    image = (10 * rng.integers(0, 4, size=(4, 5, 6))).astype(np.float32)
    seeds = np.zeros(image.shape, dtype=bool)
    seeds[0, 4, 0] = True
    spacing = (2.0, 1.0, 1.0)
    converged = geodesic_distance_3d(image, seeds, spacing, lam, iterations=None)
    np.testing.assert_allclose(converged, _dijkstra(image, seeds, spacing, lam), rtol=1e-5, atol=1e-5)
    assert np.all(geodesic_distance_3d(image, seeds, spacing, lam, iterations=1) >= converged - 1e-5)


def test_geodesic_input_errors():
    image, seeds = _golden_image()
    with pytest.raises(NNWError):
        geodesic_distance_3d(image, seeds[:-1])
    with pytest.raises(NNWError):
        geodesic_distance_3d(image, seeds, lam=1.5)
    with pytest.raises(NNWError):
        geodesic_distance_3d(image, seeds, backend="fastgeodis")
    with pytest.raises(NNWError):
        geodesic_distance_3d(image, seeds, spacing=(1.0, 1.0))


# ------------------------------------------------------------------------------------------------ simulator
def _phantom():
    """Labels (z, y, x): a large and a small ellipsoid of class 1, a ring (centroid outside) of class 2, a
    3-voxel speck of class 1 (below min_size) and a class-2 block touching the image border."""
    z, y, x = np.mgrid[:16, :40, :40]
    lab = np.zeros(z.shape, dtype=np.uint8)
    lab[((z - 6) / 4.0) ** 2 + ((y - 12) / 7.0) ** 2 + ((x - 12) / 6.0) ** 2 <= 1] = 1
    lab[((z - 10) / 2.0) ** 2 + ((y - 30) / 3.0) ** 2 + ((x - 9) / 3.0) ** 2 <= 1] = 1
    r = np.hypot(y - 14, x - 30)
    lab[(z >= 7) & (z <= 10) & (r >= 4) & (r <= 6.5)] = 2
    lab[2, 36, 36:39] = 1
    lab[12:16, 33:40, 24:30] = 2
    return lab


SPACING = (3.0, 1.0, 0.8)


def _components(lab, cls):
    return ndimage.label(lab == cls, structure=np.ones((3, 3, 3)))


def _by_target(points):
    out = {}
    for p in points:
        out.setdefault(p.target, []).append(p)
    return out


def test_seven_points_per_component_and_their_invariants():
    lab = _phantom()
    points = simulate_points(lab, SPACING)
    targets = _by_target(points)
    assert sorted(targets) == list(range(1, 5))          # 2 + 2 components; the speck is dropped
    assert [targets[k][0].label for k in sorted(targets)] == [1, 1, 2, 2]
    margins = [max(1, int(np.floor(2.0 / s + 0.5))) for s in SPACING]   # 2 mm -> (1, 2, 3) voxels
    for k, recs in targets.items():
        assert len(recs) == 7
        fg = [p for p in recs if p.kind == FOREGROUND]
        bg = [p for p in recs if p.kind == BACKGROUND]
        assert len(fg) == 1 and len(bg) == 6
        cc, _ = _components(lab, fg[0].label)
        comp = cc == cc[fg[0].voxel]
        assert cc[fg[0].voxel] > 0                          # foreground point inside its component
        assert {(p.axis, p.side) for p in bg} == {(a, s) for a in range(3) for s in (-1, 1)}
        coords = np.argwhere(comp)
        box = np.array([p.voxel for p in bg])
        assert np.all(box.min(axis=0) <= coords.min(axis=0)) and np.all(box.max(axis=0) >= coords.max(axis=0))
        for p in bg:
            assert all(0 <= c < s for c, s in zip(p.voxel, lab.shape))
            extreme = coords[:, p.axis].max() if p.side > 0 else coords[:, p.axis].min()
            expected = min(max(extreme + p.side * margins[p.axis], 0), lab.shape[p.axis] - 1)
            assert p.voxel[p.axis] == expected
            if expected != extreme:                          # not clipped at the image border
                assert not comp[p.voxel]
    # the ring's centroid lies in its hole; the foreground point must not
    ring = [recs for recs in targets.values() if recs[0].label == 2 and recs[0].voxel[0] < 12][0]
    assert lab[ring[0].voxel] == 2
    # the border block is clipped on +z and +y and its box still covers it
    block = [recs for recs in targets.values() if recs[0].label == 2 and recs[0].voxel[0] >= 12][0]
    assert {p.voxel[p.axis] for p in block if p.kind == BACKGROUND and p.side > 0 and p.axis < 2} == {15, 39}


def test_min_size_max_targets_and_classes():
    lab = _phantom()
    assert len(simulate_points(lab, SPACING, min_size=1)) == 7 * 5
    one_each = simulate_points(lab, SPACING, max_targets=1)
    assert len(one_each) == 14 and {p.label for p in one_each} == {1, 2}
    big = _by_target(one_each)[1][0]
    assert big.label == 1 and big.voxel[1] < 20         # the largest class-1 component comes first
    assert {p.label for p in simulate_points(lab, SPACING, classes=[2])} == {2}


def test_jitter_is_seeded_and_keeps_invariants():
    lab = _phantom()
    plain = simulate_points(lab, SPACING)
    a = simulate_points(lab, SPACING, jitter=2, rng=3)
    b = simulate_points(lab, SPACING, jitter=2, rng=np.random.default_rng(3))
    c = simulate_points(lab, SPACING, jitter=2, rng=4)
    assert a == b and a != c
    for p, q in zip(plain, a):
        assert (p.target, p.kind, p.axis, p.side) == (q.target, q.kind, q.axis, q.side)
        delta = np.abs(np.subtract(p.voxel, q.voxel))
        assert delta.max() <= 2
        if q.kind == FOREGROUND:
            assert lab[q.voxel] == q.label
        else:
            assert delta[q.axis] == 0
            assert all(0 <= v < s for v, s in zip(q.voxel, lab.shape))


def test_point_volume_round_trip_and_encoding():
    lab = _phantom()
    points = simulate_points(lab, SPACING)
    vol = points_to_volume(points, lab.shape)
    for p in points:
        assert vol[p.voxel] == (2 * p.target if p.kind == FOREGROUND else 2 * p.target - 1)
    assert (vol > 0).sum() == len({p.voxel for p in points})
    back = points_from_volume(vol, target_classes={k: recs[0].label for k, recs in _by_target(points).items()})
    key = lambda p: (p.target, p.kind, p.voxel)  # noqa: E731
    assert sorted((key(p), p.label) for p in back) == sorted((key(p), p.label) for p in points)
    bad = vol.copy()
    bad[bad == 2] = 0
    with pytest.raises(NNWError, match="no foreground point"):
        points_from_volume(bad)


def test_json_round_trip_with_world_coordinates(tmp_path):
    lab = _phantom()
    image = sitk.GetImageFromArray(lab)
    image.SetSpacing(SPACING[::-1])
    image.SetOrigin((-12.5, 40.0, 3.25))
    c, s = np.cos(0.3), np.sin(0.3)
    image.SetDirection((c, -s, 0.0, s, c, 0.0, 0.0, 0.0, -1.0))
    points = simulate_points(lab, reference=image)            # spacing taken from the image
    assert points == simulate_points(lab, SPACING, reference=Geometry.of(image))
    for p in points:
        expected = image.TransformContinuousIndexToPhysicalPoint([float(v) for v in p.voxel[::-1]])
        np.testing.assert_allclose(p.world, expected, atol=1e-9)
        np.testing.assert_allclose(voxel_to_world(p.voxel, Geometry.of(image)), expected, atol=1e-9)
    path = tmp_path / "case_000.json"
    write_points_json(str(path), points, reference=image, metadata={"margin_mm": 2.0})
    assert read_points_json(str(path)) == points
    content = json.loads(path.read_text())
    assert content["geometry"]["spacing_xyz"] == list(SPACING[::-1]) and content["metadata"]["margin_mm"] == 2.0
    path.write_text("{}")
    with pytest.raises(NNWError, match="case_000.json"):
        read_points_json(str(path))


def test_simulator_errors():
    with pytest.raises(NNWError, match="3D"):
        simulate_points(np.ones((8, 8), dtype=np.uint8))
    with pytest.raises(NNWError):
        simulate_points(_phantom(), SPACING, jitter=-1)
    with pytest.raises(NNWError, match="reference"):
        simulate_points(_phantom(), reference=sitk.Image(4, 4, 4, sitk.sitkUInt8))


# ------------------------------------------------------------------------------------------------ expansion
def _sphere_case(rng_seed=0):
    """A bright noisy ellipsoid (class 1) in a darker noisy background; a zero-valued slab at the bottom."""
    rng = np.random.default_rng(rng_seed)
    z, y, x = np.mgrid[:14, :30, :30]
    lab = (((z - 7) / 4.0) ** 2 + ((y - 14) / 7.0) ** 2 + ((x - 15) / 8.0) ** 2 <= 1).astype(np.uint8)
    image = np.where(lab > 0, 300.0, 100.0) + rng.normal(0, 10, size=lab.shape)
    image[:, 25:] = 0.0
    return lab, image.astype(np.float32)


def test_expansion_follows_the_threshold_rule_and_keeps_clicks():
    lab, image = _sphere_case()
    spacing = (2.0, 1.0, 1.0)
    points = simulate_points(lab, spacing)
    res = expand_points(image, points, spacing)
    labels = res.labels
    assert labels.dtype == np.uint8 and res.ignore_label == 2
    assert set(np.unique(labels)) <= {0, 1, 2}
    (t,) = res.targets
    box = np.array([p.voxel for p in points])
    assert t.box_min == tuple(box.min(axis=0)) and t.box_max == tuple(box.max(axis=0))
    inside = np.zeros(lab.shape, dtype=bool)
    inside[t.slices] = True
    assert np.all(labels[~inside] == 0)
    # the box's distance is the plain geodesic distance of the raw crop from the foreground point
    fg_point = points[0]
    seeds = np.zeros(t.distance.shape, dtype=bool)
    seeds[tuple(np.subtract(fg_point.voxel, t.box_min))] = True
    np.testing.assert_array_equal(t.distance, geodesic_distance_3d(image[t.slices], seeds, spacing))
    expected = np.where(t.distance < 0.2 * t.distance.max(), 1, 2)
    clicks = np.zeros(lab.shape, dtype=bool)
    for p in points:
        clicks[p.voxel] = True
    box_labels, box_clicks = labels[t.slices], clicks[t.slices]
    np.testing.assert_array_equal(box_labels[~box_clicks], expected[~box_clicks])
    assert labels[fg_point.voxel] == 1
    assert all(labels[p.voxel] == 0 for p in points if p.kind == BACKGROUND)
    assert (labels == 1).sum() > 1 and (lab[labels == 1] == 1).mean() > 0.9   # foreground stays in the target
    faithful = expand_points(image, points, spacing, label_background_points=False).labels
    np.testing.assert_array_equal(faithful[~clicks], labels[~clicks])
    assert all(faithful[p.voxel] in (1, 2) for p in points if p.kind == BACKGROUND)
    dmap = res.distance_map()
    np.testing.assert_array_equal(dmap[t.slices], t.distance)
    assert np.all(dmap[~inside] == 0)


def test_min_intensity_rule_and_two_target_merge():
    lab, image = _sphere_case()
    lab[1:4, 20:25, 22:28] = 1                                    # a second, small target next to the slab
    spacing = (2.0, 1.0, 1.0)
    points = simulate_points(lab, spacing)
    assert len(_by_target(points)) == 2
    kw = dict(label_background_points=False)
    merged = expand_points(image, points, spacing, **kw).labels
    singles = [expand_points(image, [p for p in points if p.target == k], spacing, **kw).labels for k in (1, 2)]
    expected = np.full(lab.shape, 2, dtype=np.uint8)
    expected[(singles[0] == 0) & (singles[1] == 0)] = 0
    expected[(singles[0] == 1) | (singles[1] == 1)] = 1
    np.testing.assert_array_equal(merged, expected)
    brats = expand_points(image, points, spacing, background_at_min_intensity=True, **kw).labels
    at_min = image == image.min()
    assert np.all(brats[at_min] == 0)
    np.testing.assert_array_equal(brats[~at_min], merged[~at_min])
    assert np.any(merged[at_min] != 0)                          # the rule changed voxels inside a box


def test_multiclass_conflict_is_ignore_and_errors():
    image = np.zeros((5, 9, 9), dtype=np.float32)                # flat image: both targets grow alike
    def target(k, cls, centre):
        cz, cy, cx = centre
        recs = [PointRecord(k, cls, FOREGROUND, centre)]
        for a, d in itertools.product(range(3), (-2, 2)):
            v = [cz, cy, cx]
            v[a] += d
            recs.append(PointRecord(k, cls, BACKGROUND, tuple(v), a, int(np.sign(d))))
        return recs
    points = target(1, 1, (2, 4, 3)) + target(2, 2, (2, 4, 5))
    res = expand_points(image, points, (1.0, 1.0, 1.0), lam=0.0, threshold=0.5)
    labels = res.labels
    assert res.ignore_label == 3 and set(np.unique(labels)) <= {0, 1, 2, 3}
    assert labels[2, 4, 3] == 1 and labels[2, 4, 5] == 2
    single = [expand_points(image, [p for p in points if p.target == k], (1.0, 1.0, 1.0), lam=0.0,
                            threshold=0.5).labels
              for k in (1, 2)]
    both = (single[0] == 1) & (single[1] == 2)
    both[2, 4, 3] = both[2, 4, 5] = False
    assert both.any() and np.all(labels[both] == 3)
    assert expand_points(image, points, (1.0, 1.0, 1.0), ignore_label=7).labels.max() == 7
    with pytest.raises(NNWError, match="ignore_label"):
        expand_points(image, points, (1.0, 1.0, 1.0), ignore_label=2)
    with pytest.raises(NNWError, match="no foreground point"):
        expand_points(image, [p for p in points if p.kind == BACKGROUND], (1.0, 1.0, 1.0))
    with pytest.raises(NNWError, match="outside the image"):
        expand_points(image, [PointRecord(1, 1, FOREGROUND, (9, 0, 0))], (1.0, 1.0, 1.0))


def test_competing_expansion_gives_contested_voxels_to_the_nearest_click():
    """Flat image, lam 0: geodesic = Euclidean. Two classes' clicks 3 voxels apart claim the voxels between
    them; PA-Seg leaves them ignore, the competing expansion gives each to the nearer click, and a voxel nearer
    to a target's own background click than to its foreground click is never that target's."""
    image = np.zeros((7, 9, 12), dtype=np.float32)

    def target(k, cls, centre, reach=3):
        recs = [PointRecord(k, cls, FOREGROUND, centre)]
        for a, d in itertools.product(range(3), (-reach, reach)):
            v = list(centre)
            v[a] += d
            recs.append(PointRecord(k, cls, BACKGROUND, tuple(v), a, int(np.sign(d))))
        return recs
    points = target(1, 1, (3, 4, 4)) + target(2, 2, (3, 4, 7))
    kw = dict(lam=0.0, threshold=0.5, label_background_points=False)
    paseg = expand_points(image, points, (1.0, 1.0, 1.0), **kw).labels
    competing = expand_points(image, points, (1.0, 1.0, 1.0), exclusive=True, **kw).labels
    contested = paseg == 3
    contested &= np.isin(expand_points(image, points[:7], (1.0, 1.0, 1.0), **kw).labels, [1])
    assert contested.any()
    z, y, x = np.nonzero(contested)
    d1 = np.sqrt((z - 3) ** 2 + (y - 4) ** 2 + (x - 4) ** 2)
    d2 = np.sqrt((z - 3) ** 2 + (y - 4) ** 2 + (x - 7) ** 2)
    got = competing[z, y, x]
    assert np.all(got[d1 < d2] != 2) and np.all(got[d2 < d1] != 1)   # never the farther click's class
    assert np.isin(got, [1, 2]).any()                                 # PA-Seg's ignore becomes a class
    # the background-click rule: with distant background clicks nothing changes, with close ones the seed shrinks
    alone = expand_points(image, target(1, 1, (3, 4, 5)), (1.0, 1.0, 1.0), exclusive=True, **kw).labels
    assert (alone == 1).sum() <= (expand_points(image, target(1, 1, (3, 4, 5)), (1.0, 1.0, 1.0),
                                                **kw).labels == 1).sum()
    bg_points = [p.voxel for p in target(1, 1, (3, 4, 5)) if p.kind == BACKGROUND]
    assert all(alone[v] != 1 for v in bg_points)


def test_zscore_expansion_is_invariant_to_intensity_scale_and_per_class_thresholds():
    lab, image = _sphere_case()
    spacing = (2.0, 1.0, 1.0)
    points = simulate_points(lab, spacing)
    z = expand_points(image, points, spacing, normalise="zscore").labels
    np.testing.assert_array_equal(z, expand_points(image * 7.0 + 50.0, points, spacing, normalise="zscore").labels)
    raw = expand_points(image, points, spacing).labels
    # PA-Seg's cost depends on the raw intensity scale
    assert not np.array_equal(raw, expand_points(image * 0.01, points, spacing).labels)
    tight = expand_points(image, points, spacing, threshold={1: 0.05}).labels
    assert 0 < (tight == 1).sum() < (raw == 1).sum()
    np.testing.assert_array_equal(expand_points(image, points, spacing, threshold={2: 0.9}).labels, raw)  # default
    with pytest.raises(NNWError, match="threshold"):
        expand_points(image, points, spacing, threshold={1: 1.5})
    with pytest.raises(NNWError, match="zscore"):
        expand_points(image, points, spacing, normalise="minmax")
