"""Where does a high HD95 come from? Per class: how many connected components a prediction has, and HD95 of the
whole prediction against HD95 of its largest 3D component only (what nnU-Net's "remove all but the largest
component" postprocessing would keep). Writes a markdown table.

    python benchmarks/largest_component_hd95.py --ref REF_FOLDER --pred NAME=FOLDER [NAME=FOLDER ...] \\
        --classes RV:1 MYO:2 LV:3 --out benchmarks/results/components_814
"""
import argparse
import os
import sys

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from nnunet_weak.evaluation.metrics import surface_distances


def class_components(pred: np.ndarray, ref: np.ndarray, value: int, spacing) -> tuple:
    """(number of components, HD95 of the prediction, HD95 of its largest component); HD95s None when either
    mask is empty."""
    mask = pred == value
    labels, n = ndimage.label(mask)
    if n == 0 or not (ref == value).any():
        return n, None, None
    sizes = ndimage.sum(mask, labels, range(1, n + 1))
    largest = labels == 1 + int(np.argmax(sizes))
    return n, surface_distances(mask, ref == value, spacing)[0], surface_distances(largest, ref == value, spacing)[0]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", required=True)
    parser.add_argument("--pred", nargs="+", required=True, metavar="NAME=FOLDER")
    parser.add_argument("--classes", nargs="+", default=["RV:1", "MYO:2", "LV:3"])
    parser.add_argument("--out", required=True, help="output prefix (.md)")
    args = parser.parse_args(argv)
    classes = {c.split(":")[0]: int(c.split(":")[1]) for c in args.classes}
    lines = ["# Connected components and HD95 of the largest component", "",
             "Per class, over cases: median number of 3D components of the prediction, mean HD95 (mm) of the whole "
             "prediction and of its largest component only.", "",
             "| model | class | cases | components (median) | HD95 | HD95, largest component |", "|---|---|---|---|---|---|"]
    for item in args.pred:
        name, folder = item.split("=", 1)
        rows = {c: [] for c in classes}
        for f in sorted(x for x in os.listdir(folder) if x.endswith(".nii.gz")):
            ref_image = sitk.ReadImage(os.path.join(args.ref, f))
            pred = sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(folder, f)))
            ref = sitk.GetArrayFromImage(ref_image)
            for c, v in classes.items():
                rows[c].append(class_components(pred, ref, v, ref_image.GetSpacing()[::-1]))
        for c in classes:
            n = [r[0] for r in rows[c]]
            hd = [r[1] for r in rows[c] if r[1] is not None]
            lcc = [r[2] for r in rows[c] if r[2] is not None]
            lines.append(f"| {name} | {c} | {len(n)} | {np.median(n):.0f} | {np.mean(hd):.1f} | {np.mean(lcc):.1f} |")
    quoted = " ".join(f'"{a}"' if " " in a else a for a in (argv or sys.argv[1:]))
    lines += ["", f"Reproduce: `python benchmarks/largest_component_hd95.py {quoted}`", ""]
    text = "\n".join(lines)
    with open(args.out + ".md", "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
