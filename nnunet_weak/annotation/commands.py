"""Installed commands that turn a user's own nnU-Net dataset into a weak-label one (any number of classes and
channels, 2D or 3D data), all through :func:`nnunet_weak.annotation.derive.derive_dataset`:

    nnunet_weak_simulate_scribbles SOURCE TARGET [--seed 0] [--thickness 3] [--axis 0]
    nnunet_weak_simulate_points    SOURCE TARGET [--recipe competing|paseg] [--threshold 0.2] [--margin-mm 2]
    nnunet_weak_sparse_slices      SOURCE TARGET --every K [--axis 0] [--offset 0]
    nnunet_weak_make_semi          SOURCE TARGET (--fraction F | --count N | --cases A,B) [--seed 0]
    nnunet_weak_make_few           SOURCE TARGET (--count N | --fraction F | --cases A,B) [--seed 0]
    nnunet_weak_add_ignore         SOURCE TARGET (--value V | --mask-folder DIR)

SOURCE is a dataset folder, id or name under $nnUNet_raw; TARGET a folder or a ``DatasetNNN_Name`` placed under
$nnUNet_raw. Every command refuses an existing TARGET unless ``--overwrite`` (which replaces only what an earlier
run wrote), keeps the source labels in ``labelsTr_dense`` and prints, per class, the share of its voxels that
kept a label.
"""
import argparse
import json
import os
from typing import List, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from nnunet_weak.annotation.derive import (SourceDataset, case_rng, derive_dataset, read_source, resolve_dataset,
                                           resolve_target)
from nnunet_weak.annotation.geodesic import DEFAULT_THRESHOLD, expand_points
from nnunet_weak.annotation.nnunet_io import add_output_arguments, read_image
from nnunet_weak.annotation.points import DEFAULT_MARGIN_MM, simulate_points, write_points_json
from nnunet_weak.annotation.scribbles import simulate_scribbles
from nnunet_weak.annotation.seed_quality import SeedQualityReport
from nnunet_weak.annotation.seed_recipes import POINT_RECIPES
from nnunet_weak.utilities.errors import NNWError



def _parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("source", help="nnU-Net raw dataset: folder, id or name under $nnUNet_raw")
    parser.add_argument("target", help="new dataset: folder, or DatasetNNN_Name under $nnUNet_raw")
    add_output_arguments(parser)
    return parser


def _open(args) -> tuple:
    return read_source(resolve_dataset(args.source)), resolve_target(args.target)


def _require_dense(source: SourceDataset, what: str) -> None:
    if source.ignore is not None:
        raise NNWError(f"{os.path.join(source.folder, 'dataset.json')} declares an ignore label: {what} needs a "
                       f"dataset with dense labels.")


# ------------------------------------------------------------------------------------------------ scribbles
def simulate_scribbles_dataset(source: str, target: str, seed: int = 0, overwrite: bool = False, thickness: int = 3,
                               axis: int = 0, verbose: bool = True, preprocessed: Optional[str] = None) -> dict:
    """Write ``target``, a copy of the dense dataset folder ``source`` whose labelsTr hold simulated scribbles
    (each case from its own generator seeded by (seed, case id)). Returns :func:`derive_dataset`'s summary plus
    "mean": the labelled share of a case's voxels, averaged over cases."""
    data = read_source(os.path.abspath(source))
    _require_dense(data, "scribble simulation")
    ignore = max(data.classes.values()) + 1
    result = derive_dataset(data, os.path.abspath(target), lambda case, dense, geometry: simulate_scribbles(
        dense, ignore, case_rng(seed, case), thickness=thickness, axis=axis),
        f"Scribbles simulated from {os.path.basename(data.folder)} (seed {seed}, thickness {thickness}, axis "
        f"{axis}; ScribbleBench-style).", overwrite, verbose=verbose, preprocessed=preprocessed)
    return {**result, "mean": float(np.mean(list(result["per_case"].values())))}


def simulate_scribbles_main(argv=None) -> int:
    parser = _parser("Simulated scribbles (ScribbleBench-style, slice by slice) from a dataset with dense labels.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--thickness", type=int, default=3, help="scribble width in pixels")
    parser.add_argument("--axis", type=int, default=0, help="array axis (z, y, x) to slice along")
    args = parser.parse_args(argv)
    simulate_scribbles_dataset(resolve_dataset(args.source), resolve_target(args.target), args.seed, args.overwrite,
                               args.thickness, args.axis, preprocessed=args.preprocessed)
    return 0


# ------------------------------------------------------------------------------------------------ sparse slices
def sparse_slices(labels: np.ndarray, ignore: int, every: int, axis: int = 0, offset: int = 0) -> np.ndarray:
    """Dense labels on every ``every``-th slice along ``axis`` (starting at ``offset``), ignore elsewhere."""
    if not 0 <= axis < labels.ndim:
        raise NNWError(f"--axis {axis}: the labels have {labels.ndim} axes")
    out = np.full_like(labels, ignore)
    index = [slice(None)] * labels.ndim
    index[axis] = slice(offset, None, every)
    out[tuple(index)] = labels[tuple(index)]
    return out


def sparse_slices_main(argv=None) -> int:
    parser = _parser("Dense labels on every k-th slice, the rest ignore (sparse-slice annotation).")
    parser.add_argument("--every", type=int, required=True, help="keep every k-th slice")
    parser.add_argument("--axis", type=int, default=0, help="array axis (z, y, x) of the slices")
    parser.add_argument("--offset", type=int, default=0, help="index of the first kept slice")
    args = parser.parse_args(argv)
    if args.every < 1 or not 0 <= args.offset < args.every:
        raise NNWError(f"--every {args.every} --offset {args.offset}: need every >= 1 and 0 <= offset < every")
    source, target = _open(args)
    _require_dense(source, "sparse slices")
    ignore = max(source.classes.values()) + 1
    derive_dataset(source, target, lambda case, dense, geometry: sparse_slices(dense, ignore, args.every, args.axis,
                                                                              args.offset),
                   f"Dense labels of {os.path.basename(source.folder)} on every {args.every}. slice along axis "
                   f"{args.axis} (offset {args.offset}), the rest ignore.", args.overwrite,
                   preprocessed=args.preprocessed)
    return 0


# ------------------------------------------------------------------------------------------------ labelled subset
def choose_cases(cases: Sequence[str], fraction: Optional[float], count: Optional[int],
                 listed: Optional[str], seed: int) -> List[str]:
    """The cases that keep their labels: a listed set, or ``count`` / round(fraction * n) (at least 1) drawn
    with ``seed``."""
    if sum(x is not None for x in (fraction, count, listed)) != 1:
        raise NNWError("give exactly one of --fraction, --count and --cases")
    if listed is not None:
        chosen = [c.strip() for c in listed.split(",") if c.strip()]
        unknown = [c for c in chosen if c not in cases]
        if unknown:
            raise NNWError(f"--cases names {unknown[:3]}, which the source's labelsTr does not hold")
        return sorted(chosen)
    n = count if count is not None else max(1, int(round(fraction * len(cases))))
    if not 1 <= n <= len(cases) or (fraction is not None and not 0 < fraction <= 1):
        raise NNWError(f"keep between 1 and {len(cases)} cases (got {count if count is not None else fraction})")
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(sorted(cases), size=n, replace=False).tolist())


def splits_validating_on(labelled: Sequence[str], source: SourceDataset, folds: int = 5) -> list:
    """Folds that validate on labelled cases only (nothing to validate against in the others): the source's folds
    with unlabelled cases moved from validation to training, or, for a source without splits, nnU-Net's k-fold
    split of the labelled cases (k = min(5, their number)) with every unlabelled case in every training list."""
    keep = set(labelled)
    if source.splits is not None:
        out = []
        for i, fold in enumerate(source.splits):
            val = [c for c in fold["val"] if c in keep]
            if not val:
                raise NNWError(f"fold {i} of {source.folder}/splits_final.json would validate on no labelled case; "
                               f"keep more cases labelled or name them with --cases")
            out.append({"train": list(fold["train"]) + [c for c in fold["val"] if c not in keep], "val": val})
        return out
    if len(labelled) < 2:
        raise NNWError("keep at least 2 cases labelled: one trains, one validates")
    from nnunetv2.utilities.crossval_split import generate_crossval_split
    unlabelled = [c for c in source.cases if c not in keep]
    return [{"train": list(f["train"]) + unlabelled, "val": list(f["val"])}
            for f in generate_crossval_split(sorted(labelled), seed=12345, n_splits=min(folds, len(labelled)))]


def _keep_labels_main(argv, description: str, kind: str) -> int:
    parser = _parser(description)
    parser.add_argument("--fraction", type=float, default=None, help="share of the cases that keep labels")
    parser.add_argument("--count", type=int, default=None, help="number of cases that keep labels")
    parser.add_argument("--cases", default=None, help="comma-separated case ids that keep labels")
    parser.add_argument("--seed", type=int, default=0, help="seed of the drawn cases")
    args = parser.parse_args(argv)
    source, target = _open(args)
    if kind == "semi":
        _require_dense(source, "a semi-supervised dataset (dense labels on some cases)")
    labelled = choose_cases(source.cases, args.fraction, args.count, args.cases, args.seed)
    ignore = source.ignore if source.ignore is not None else max(source.classes.values()) + 1
    keep = set(labelled)

    def make(case, labels, geometry):
        return labels if case in keep else np.full_like(labels, ignore)
    def record(folder):
        with open(os.path.join(folder, "labelled_cases.json"), "w") as f:
            json.dump({"labelled": labelled, "seed": args.seed}, f, indent=1)
    result = derive_dataset(source, target, make,
                            f"Labels of {os.path.basename(source.folder)} kept for {len(labelled)} of "
                            f"{len(source.cases)} cases, the others all ignore (unlabelled).", args.overwrite,
                            splits=splits_validating_on(labelled, source), extra_outputs=record,
                            preprocessed=args.preprocessed)
    print(f"labelled cases ({len(labelled)}): {', '.join(labelled)}; unlabelled: "
          f"{result['cases'] - len(labelled)}")
    return 0


def make_semi_main(argv=None) -> int:
    return _keep_labels_main(argv, "Dense labels kept for some cases, the rest unlabelled (all ignore).", "semi")


def make_few_main(argv=None) -> int:
    return _keep_labels_main(argv, "Weak (or dense) labels kept for N cases, the rest unlabelled (all ignore).",
                             "few")


# ------------------------------------------------------------------------------------------------ ignore value
def add_ignore_main(argv=None) -> int:
    parser = _parser("Rewrite a dataset whose 'not annotated' voxels carry another value (or lie outside a mask) "
                     "into nnU-Net's ignore-label convention.")
    parser.add_argument("--value", type=int, default=None, help="label value meaning 'not annotated'")
    parser.add_argument("--mask-folder", default=None,
                        help="folder of CASE<file_ending> masks, nonzero = annotated; the rest becomes ignore")
    args = parser.parse_args(argv)
    if (args.value is None) == (args.mask_folder is None):
        raise NNWError("give exactly one of --value and --mask-folder")
    source, target = _open(args)
    if source.ignore is not None:
        raise NNWError(f"{os.path.join(source.folder, 'dataset.json')} already declares an ignore label.")
    values = dict(source.classes)
    if args.value is not None:
        kept = {n: v for n, v in values.items() if v != args.value}
        remap = {v: i for i, v in enumerate(sorted(kept.values()))}   # nnU-Net needs consecutive class values
        classes = {n: remap[v] for n, v in kept.items()}
        read_max = max(list(values.values()) + [args.value])
    else:
        remap, classes, read_max = None, values, max(values.values())
    ignore = max(classes.values()) + 1

    def make(case, labels, geometry):
        if remap is not None:
            out = np.full(labels.shape, ignore, dtype=np.int16)
            for old, new in remap.items():
                out[labels == old] = new
            return out
        path = os.path.join(args.mask_folder, case + source.ending)
        if not os.path.isfile(path):
            raise NNWError(f"{path} is missing: --mask-folder needs one mask per training case")
        mask = sitk.GetArrayFromImage(read_image(path))
        if mask.shape != labels.shape:
            raise NNWError(f"{path} has shape {mask.shape}, its label {labels.shape}; masks must match the labels")
        return np.where(mask != 0, labels, ignore)
    what = f"value {args.value}" if args.value is not None else "outside the masks"
    derive_dataset(source, target, make, f"'Not annotated' ({what}) rewritten to nnU-Net's ignore label {ignore}.",
                   args.overwrite, classes=classes, read_max=read_max, keep_dense=False,
                   preprocessed=args.preprocessed)
    return 0


# ------------------------------------------------------------------------------------------------ points
def simulate_points_main(argv=None) -> int:
    parser = _parser("PA-Seg point clicks (1 inside + 6 just outside each 3D target) simulated from dense labels "
                     "and expanded by a geodesic distance into seeds; writes seed_quality.json.")
    parser.add_argument("--recipe", choices=sorted(POINT_RECIPES), default="competing",
                        help="competing: z-scored image, clicks compete (default); paseg: PA-Seg's own")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                        help="seed = geodesic distance below this fraction of the in-box maximum")
    parser.add_argument("--margin-mm", type=float, default=DEFAULT_MARGIN_MM,
                        help="distance of the background clicks outside the target")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    source, target = _open(args)
    _require_dense(source, "point simulation")
    ignore = max(source.classes.values()) + 1
    names = {v: n for n, v in source.classes.items()}
    report = SeedQualityReport(names, ignore)
    points_of = {}

    def make(case, dense, geometry):
        if dense.ndim != 3:
            raise NNWError("point simulation needs 3D label maps (z, y, x)")
        image = np.stack([sitk.GetArrayFromImage(read_image(os.path.join(source.folder, "imagesTr", name)))
                          for name in source.image_files[case]]).astype(np.float32)
        points = simulate_points(dense, reference=geometry, margin_mm=args.margin_mm, rng=case_rng(args.seed, case))
        points_of[case] = (points, geometry)
        labels = expand_points(image, points, geometry.spacing[::-1], threshold=args.threshold, ignore_label=ignore,
                               **POINT_RECIPES[args.recipe]).labels
        report.add(case, labels, dense)
        return labels
    def write_points_and_report(folder):
        for case, (points, geometry) in points_of.items():
            write_points_json(os.path.join(folder, "points", f"{case}.json"), points, reference=geometry)
        report.write(os.path.join(folder, "seed_quality.csv"), os.path.join(folder, "seed_quality.json"),
                     {"recipe": args.recipe, "threshold": args.threshold, "margin_mm": args.margin_mm})
    derive_dataset(source, target, make, f"PA-Seg points simulated from {os.path.basename(source.folder)}, expanded "
                                         f"by the geodesic distance (recipe {args.recipe}, threshold "
                                         f"{args.threshold}).", args.overwrite, extra_outputs=write_points_and_report,
                   preprocessed=args.preprocessed)
    print("expanded seeds against the dense labels:\n" + report.table())
    return 0
