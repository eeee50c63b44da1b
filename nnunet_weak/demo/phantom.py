"""A synthetic short-axis cardiac cine phantom: bright LV and RV blood pools, a dark myocardial ring, body and
lungs, smooth bias field and noise. Labels follow ACDC: 0 background, 1 RV, 2 MYO, 3 LV.

Good enough to show that a trainer learns (shapes vary per case, the ventricles shrink towards the apex),
cheap enough to generate in a second, and never a substitute for real data.
"""
from typing import Tuple

import numpy as np
from scipy.ndimage import gaussian_filter

LABELS = {"background": 0, "RV": 1, "MYO": 2, "LV": 3}


def _disk(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def make_case(rng: np.random.Generator, shape: Tuple[int, int, int] = (8, 128, 128)) -> Tuple[np.ndarray, np.ndarray]:
    """One volume. Returns (image float32 (z, y, x), dense labels uint8 (z, y, x))."""
    nz, ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float32)
    image = np.zeros(shape, np.float32)
    labels = np.zeros(shape, np.uint8)

    cy = ny / 2 + rng.uniform(-8, 8)
    cx = nx / 2 + rng.uniform(-8, 8)
    r_lv = rng.uniform(0.10, 0.14) * nx
    wall = rng.uniform(0.05, 0.07) * nx
    r_rv = rng.uniform(1.0, 1.35) * (r_lv + wall)
    rv_angle = rng.uniform(np.pi * 0.85, np.pi * 1.15)  # RV on the patient's right (image left)
    body = _disk(yy, xx, ny / 2, nx / 2, 0.42 * ny, 0.47 * nx)
    lungs = (_disk(yy, xx, ny * 0.45, nx * 0.2, 0.2 * ny, 0.12 * nx) |
             _disk(yy, xx, ny * 0.45, nx * 0.8, 0.2 * ny, 0.12 * nx)) & body
    contrast = rng.uniform(0.8, 1.2)

    for z in range(nz):
        shrink = 1.0 - 0.55 * z / max(1, nz - 1)  # base to apex
        lv = _disk(yy, xx, cy, cx, r_lv * shrink, r_lv * shrink * rng.uniform(0.92, 1.08))
        outer = _disk(yy, xx, cy, cx, (r_lv + wall) * shrink, (r_lv + wall) * shrink)
        myo = outer & ~lv
        d = (r_lv + wall) * shrink * 0.9
        rv_c = (cy + d * np.sin(rv_angle), cx + d * np.cos(rv_angle))
        rv = _disk(yy, xx, rv_c[0], rv_c[1], r_rv * shrink * 0.8, r_rv * shrink) & ~outer
        rv &= ~_disk(yy, xx, cy, cx, (r_lv + wall) * shrink + 2, (r_lv + wall) * shrink + 2)
        if z == nz - 1:
            rv[:] = False  # apical slice: no RV, as often in ACDC

        sl = np.where(body, 0.45, 0.05).astype(np.float32)
        sl[lungs] = 0.12
        sl[myo] = 0.28
        sl[lv] = 0.92
        sl[rv] = 0.85
        image[z] = sl * contrast
        labels[z][rv] = LABELS["RV"]
        labels[z][myo] = LABELS["MYO"]
        labels[z][lv] = LABELS["LV"]

    texture = gaussian_filter(rng.normal(0, 1, shape).astype(np.float32), sigma=(0, 2, 2)) * 0.15
    bias = 1 + 0.2 * np.sin(xx / nx * np.pi * rng.uniform(0.5, 1.5) + rng.uniform(0, 6))[None]
    image = (gaussian_filter(image, sigma=(0, 0.8, 0.8)) + texture) * bias + rng.normal(0, 0.04, shape)
    return (image * 1000).astype(np.float32), labels
