"""ACDC with simulated PA-Seg point clicks, expanded by the geodesic distance, as nnU-Net v2 raw dataset 804.

    python dataset_conversion/Dataset804_ACDCPoints.py SOURCE NNUNET_RAW [--overwrite]
        [--recipe competing|paseg|zscore|zscore-exclusive] [--margin-mm 2] [--jitter 0] [--seed 0]

Per frame and per target (one connected component of RV, MYO or LV in 3D): seven clicks simulated from the dense
label (one inside, six just outside the extremes; ``nnunet_weak.annotation.points``), expanded with GeodisTK's
raster-scan geodesic distance (lambda 0.5, 4 iterations; ``nnunet_weak.annotation.geodesic``). labelsTr: 0
outside every target's box, the class inside the expanded seed, 4 = ignore elsewhere; labelsTr_dense: the dense
reference (evaluation only); points/CASE.json: the clicks in voxel and world coordinates.
seed_quality.{csv,json}: precision / recall / Dice of the expanded labels against the dense ones. Same case ids
and 5-fold WSL4MIS/PCLMix splits as Dataset801/802.

Expansion recipes (``nnunet_weak.annotation.seed_recipes.ACDC_RECIPES``, measured by
``benchmarks/seed_quality_acdc.py``):
``paseg`` is PA-Seg's (raw intensities, threshold 0.2 of the in-box maximum): on ACDC its myocardium seeds are
about 45 % other tissue, because the step cost saturates on raw intensities and a ball around a click in a thin
ring leaks out of it. ``competing`` (the default) z-scores the image, lets the clicks compete (a voxel joins a
target only when its foreground click is nearer than the target's background clicks, and the nearest foreground
click among targets) and uses tighter thresholds for the thin RV and myocardium (0.12, 0.08) and a wider one for
the LV cavity (0.3).
"""
import os

import numpy as np
import SimpleITK as sitk

from nnunet_weak.annotation.geodesic import expand_points
from nnunet_weak.annotation.nnunet_io import (CARDIAC_IGNORE, CARDIAC_LABELS, conversion_parser, convert_acdc)
from nnunet_weak.annotation.paseg_conversion import add_simulation_arguments
from nnunet_weak.annotation.points import DEFAULT_MARGIN_MM, simulate_points, write_points_json
from nnunet_weak.annotation.seed_quality import SeedQualityReport
from nnunet_weak.annotation.seed_recipes import ACDC_RECIPES as RECIPES, DEFAULT_ACDC_RECIPE as DEFAULT_RECIPE
from nnunet_weak.utilities.errors import NNWError

DATASET_NAME = "Dataset804_ACDCPoints"


def convert(source: str, nnunet_raw: str, overwrite: bool = False, verbose: bool = True,
            margin_mm: float = DEFAULT_MARGIN_MM, jitter: int = 0, seed: int = 0,
            recipe: str = DEFAULT_RECIPE, preprocessed=None) -> str:
    """Convert ACDC (expanded point labels) into ``nnunet_raw/Dataset804_ACDCPoints``; returns that folder."""
    target = os.path.join(nnunet_raw, DATASET_NAME)
    classes = {v: k for k, v in CARDIAC_LABELS.items()}  # background included: its precision matters too
    report = SeedQualityReport(classes, CARDIAC_IGNORE)
    rng = np.random.default_rng(seed)
    if recipe not in RECIPES:
        raise NNWError(f"unknown seed recipe {recipe!r}; use one of {', '.join(RECIPES)}")
    options = RECIPES[recipe]["options"]
    params = {"margin_mm": margin_mm, "jitter": jitter, "seed": seed, "recipe": recipe,
              "expansion": RECIPES[recipe]["description"], "lambda": 0.5, "iterations": 4}

    def point_labels(frame, image: sitk.Image, gt: np.ndarray) -> np.ndarray:
        spacing = image.GetSpacing()[::-1]
        points = simulate_points(gt, reference=image, margin_mm=margin_mm, jitter=jitter, rng=rng)
        write_points_json(os.path.join(target, "points", f"{frame.case}.json"), points, reference=image,
                          metadata={**params, "source": frame.gt})
        raw = sitk.GetArrayFromImage(image).astype(np.float32)
        labels = expand_points(raw, points, spacing, ignore_label=CARDIAC_IGNORE, **options).labels
        report.add(frame.case, labels, gt)
        return labels

    folder = convert_acdc(source, nnunet_raw, DATASET_NAME, scribbles=False, overwrite=overwrite, verbose=verbose,
                          weak_labels=point_labels, preprocessed=preprocessed,
                          kind="PA-Seg points (7 per target, simulated from the dense labels) expanded by a "
                               "geodesic distance (GeodisTK raster scan, lambda 0.5, 4 iterations; recipe "
                               f"{recipe}: {RECIPES[recipe]['description']})")
    report.write(os.path.join(folder, "seed_quality.csv"), os.path.join(folder, "seed_quality.json"), params)
    if verbose:
        print("expanded seeds against the dense labels (all frames):")
        print(report.table())
    return folder


def main(argv=None) -> None:
    parser = conversion_parser(__doc__.splitlines()[0], "ACDC folder containing training/")
    add_simulation_arguments(parser, threshold=False)
    parser.add_argument("--recipe", choices=sorted(RECIPES), default=DEFAULT_RECIPE,
                        help="seed expansion (module docstring); 'paseg' is PA-Seg's own")
    args = parser.parse_args(argv)
    convert(args.source, args.nnunet_raw, overwrite=args.overwrite, margin_mm=args.margin_mm, jitter=args.jitter,
            seed=args.seed, recipe=args.recipe, preprocessed=args.preprocessed)


if __name__ == "__main__":
    main()
