import numpy as np
import pytest

from nnunet_weak.annotation.scribbles import annotated_fraction, simulate_scribbles

IGNORE = 4


def _phantom(n_slices: int = 4, size: int = 64) -> np.ndarray:
    """Cardiac-like phantom: LV disk (3), myocardium ring (2), RV crescent (1); slice 0 has no foreground,
    the last slice holds a second, separate LV blob (two components of one class)."""
    yy, xx = np.mgrid[:size, :size]
    seg = np.zeros((n_slices, size, size), dtype=np.uint8)
    for z in range(1, n_slices):
        r = 8 + 2 * z
        d = np.hypot(yy - size / 2, xx - size / 2)
        seg[z][d < r + 4] = 2
        seg[z][d < r] = 3
        d_rv = np.hypot(yy - size / 2, xx - size / 2 + r + 2)
        seg[z][(d_rv < r) & (d >= r + 4)] = 1
    seg[-1, 2:6, 2:7] = 3
    return seg


def test_scribbled_pixels_carry_dense_class_and_rest_is_ignore():
    seg = _phantom()
    scr = simulate_scribbles(seg, IGNORE, np.random.default_rng(1))
    assert scr.shape == seg.shape
    assert scr.dtype == np.uint8
    annotated = scr != IGNORE
    assert annotated.any()
    np.testing.assert_array_equal(scr[annotated], seg[annotated])
    assert set(np.unique(scr)) <= {0, 1, 2, 3, IGNORE}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_present_class_is_scribbled_in_every_slice(seed):
    seg = _phantom()
    scr = simulate_scribbles(seg, IGNORE, np.random.default_rng(seed))
    for z in range(seg.shape[0]):
        present = set(np.unique(seg[z]).tolist())
        scribbled = set(np.unique(scr[z]).tolist()) - {IGNORE}
        assert scribbled == present, (z, present, scribbled)
    # slice 0 has no foreground but still gets background scribbles
    assert (scr[0] == 0).any()


def test_other_axis_and_2d_input():
    seg = _phantom()
    scr = simulate_scribbles(seg, IGNORE, np.random.default_rng(3), axis=2)
    for x in range(seg.shape[2]):
        present = set(np.unique(seg[:, :, x]).tolist())
        assert set(np.unique(scr[:, :, x]).tolist()) - {IGNORE} == present
    scr2d = simulate_scribbles(seg[2], IGNORE, np.random.default_rng(3))
    assert scr2d.shape == seg[2].shape
    m = scr2d != IGNORE
    np.testing.assert_array_equal(scr2d[m], seg[2][m])


def test_deterministic_given_seed():
    seg = _phantom()
    a = simulate_scribbles(seg, IGNORE, np.random.default_rng(42))
    b = simulate_scribbles(seg, IGNORE, np.random.default_rng(42))
    c = simulate_scribbles(seg, IGNORE, np.random.default_rng(43))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_annotated_fraction_plausible():
    seg = _phantom(n_slices=3, size=96)
    fractions = [annotated_fraction(simulate_scribbles(seg, IGNORE, np.random.default_rng(s)), IGNORE)
                 for s in range(3)]
    for f in fractions:
        assert 0.002 < f < 0.15, fractions


def test_annotated_fraction_values():
    s = np.array([[0, 4], [4, 4]])
    assert annotated_fraction(s, 4) == pytest.approx(0.25)
    assert annotated_fraction(np.zeros((0,)), 4) == 0.0


def test_tiny_components_and_thickness_one():
    seg = np.zeros((2, 12, 12), dtype=np.int16)
    seg[0, 5, 5] = 1           # single pixel
    seg[1, 3:5, 3:5] = 2       # 2x2 square
    seg[1, 9, 2:10] = 1        # one-pixel-wide line
    scr = simulate_scribbles(seg, 3, np.random.default_rng(0), thickness=1)
    assert scr[0, 5, 5] == 1
    for z in range(2):
        assert set(np.unique(scr[z]).tolist()) - {3} == set(np.unique(seg[z]).tolist())
    m = scr != 3
    np.testing.assert_array_equal(scr[m], seg[m])


def test_rejects_labels_at_or_above_ignore():
    seg = np.zeros((1, 8, 8), dtype=np.uint8)
    seg[0, 2, 2] = 4
    with pytest.raises(ValueError):
        simulate_scribbles(seg, 4, np.random.default_rng(0))
