"""Named recipes of the point-seed expansion (``nnunet_weak.annotation.geodesic.expand_points`` options), shared by
the ACDC points conversion (Dataset804), its seed-quality benchmark and ``nnunet_weak_simulate_points``.

``COMPETING``: the image z-scored and the clicks competing (a voxel joins a target only where its foreground click is
nearer than the target's background clicks, and the nearest click among targets); PA-Seg's own recipe is no
options at all. ``ACDC_RECIPES`` adds per-class thresholds tuned on ACDC's RV / myocardium / LV (classes 1-3).
"""
COMPETING = {"normalise": "zscore", "exclusive": True}
POINT_RECIPES = {"paseg": {}, "competing": COMPETING}   # for any dataset (one threshold for every class)
ACDC_RECIPES = {
    "paseg": {"options": {}, "description": "PA-Seg: raw intensities, threshold 0.2 of the in-box maximum"},
    "zscore": {"options": {"normalise": "zscore"}, "description": "PA-Seg on the z-scored image"},
    "zscore-exclusive": {"options": dict(COMPETING),
                         "description": "z-scored image, clicks compete (foreground vs the target's background "
                                        "clicks, nearest foreground click among targets), threshold 0.2"},
    "competing": {"options": dict(COMPETING, threshold={1: 0.12, 2: 0.08, 3: 0.3}),
                  "description": "as zscore-exclusive, thresholds RV 0.12, MYO 0.08, LV 0.3 (the default)"},
}
DEFAULT_ACDC_RECIPE = "competing"
