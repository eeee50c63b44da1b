"""How good are the expanded PA-Seg seeds on ACDC? Precision / recall per class of the weak labels that the
Dataset804 conversion writes, for the expansion recipes of ``nnunet_weak.annotation.geodesic.expand_points``,
against the dense labels. No training: it measures the labels PA-Seg would learn from.

    python benchmarks/seed_quality_acdc.py --source ../shared/data [--every 2] [--out benchmarks/results/seed_quality_acdc]

Frames: both frames of every ``--every``-th ACDC training patient (all 100 patients with --every 1). Clicks are
simulated exactly as Dataset804 does (seven per connected target, no jitter); each recipe expands the same clicks.
Micro precision / recall: voxel counts summed over frames.
"""
import argparse
import glob
import json
import os
import sys
import time

import numpy as np
import SimpleITK as sitk

from nnunet_weak.annotation.geodesic import expand_points
from nnunet_weak.annotation.nnunet_io import CARDIAC_IGNORE
from nnunet_weak.annotation.points import simulate_points
from nnunet_weak.annotation.seed_quality import SeedQualityReport

from nnunet_weak.annotation.seed_recipes import ACDC_RECIPES as RECIPES

HERE = os.path.dirname(os.path.abspath(__file__))

CLASSES = {0: "background", 1: "RV", 2: "MYO", 3: "LV"}


def frames(source: str, every: int) -> list:
    root = os.path.join(source, "ACDC", "training")
    patients = sorted(p for p in os.listdir(root) if p.startswith("patient"))[::every]
    return [f for p in patients for f in sorted(glob.glob(os.path.join(root, p, f"{p}_frame??.nii.gz")))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, help="folder holding ACDC/ (../shared/data)")
    parser.add_argument("--every", type=int, default=2, help="use every N-th patient")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "seed_quality_acdc"))
    args = parser.parse_args(argv)
    sitk.ProcessObject_SetGlobalWarningDisplay(False)  # ACDC's sform scale warnings
    files = frames(args.source, args.every)
    reports = {name: SeedQualityReport(CLASSES, CARDIAC_IGNORE) for name in RECIPES}
    seconds = {name: 0.0 for name in RECIPES}
    for path in files:
        image = sitk.ReadImage(path)
        gt = sitk.GetArrayFromImage(sitk.ReadImage(path.replace(".nii.gz", "_gt.nii.gz"))).astype(np.uint8)
        points = simulate_points(gt, reference=image, rng=0)
        raw = sitk.GetArrayFromImage(image).astype(np.float32)
        for name, recipe in RECIPES.items():
            start = time.perf_counter()
            labels = expand_points(raw, points, image.GetSpacing()[::-1], ignore_label=CARDIAC_IGNORE,
                                   **recipe["options"]).labels
            seconds[name] += time.perf_counter() - start
            reports[name].add(os.path.basename(path), labels, gt)

    lines = [f"# Expanded point seeds on ACDC: precision / recall per class ({len(files)} frames, every "
             f"{args.every}. patient)", "",
             "Seven simulated clicks per connected target, as Dataset804; micro scores over all frames. "
             "Precision: share of a class's seed voxels that are that class; recall: share of the class's voxels "
             "that got the seed.", "",
             "| recipe | " + " | ".join(f"{c} precision | {c} recall" for c in CLASSES.values()) +
             " | labelled voxels | s/frame |",
             "|---|" + "---|---|" * len(CLASSES) + "---|---|"]
    summary = {}
    for name, report in reports.items():
        s = report.summary()
        summary[name] = {"options": {k: (v if not isinstance(v, dict) else {str(a): b for a, b in v.items()})
                                     for k, v in RECIPES[name]["options"].items()},
                         "description": RECIPES[name]["description"], **s}
        cells = " | ".join(f"{s['classes'][c]['micro']['precision']:.3f} | {s['classes'][c]['micro']['recall']:.3f}"
                           for c in CLASSES.values())
        lines.append(f"| {name} | {cells} | {100 * s['labelled_fraction']:.1f} % | "
                     f"{seconds[name] / len(files):.2f} |")
    lines += ["", "Recipes:", ""] + [f"- `{n}`: {r['description']}" for n, r in RECIPES.items()]
    lines += ["", "Reproduce: `python benchmarks/seed_quality_acdc.py --source ../shared/data "
                  f"--every {args.every}`", ""]
    text = "\n".join(lines)
    with open(args.out + ".md", "w") as f:
        f.write(text)
    with open(args.out + ".json", "w") as f:
        json.dump({"frames": [os.path.basename(p) for p in files], "recipes": summary}, f, indent=1,
                  default=lambda v: None)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
