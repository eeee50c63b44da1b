"""``nnunet_weak_evaluate``: Dice, HD95 and ASSD (mm) of predicted label maps against dense references.

    nnunet_weak_evaluate -pred PRED_FOLDER -ref LABELS_FOLDER -djfile dataset.json
    nnunet_weak_evaluate -pred PRED_FOLDER -ref LABELS_FOLDER -l RV:1 MYO:2 LV:3 -o results/dense_eval

Every prediction file must have a reference of the same name and vice versa. Spacing is taken from the reference
image. Writes ``<prefix>.json`` (NaN as null) and ``<prefix>.md``; the default prefix is
``<PRED_FOLDER>/dense_eval``. Existing outputs are kept unless ``--overwrite`` is given.
See ``nnunet_weak.evaluation.metrics`` for the metric and empty-mask conventions.
"""
import argparse
import json
import math
import multiprocessing
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from nnunet_weak.evaluation.metrics import case_metrics
from nnunet_weak.utilities.errors import NNWError

METRICS = ("dice", "hd95", "assd")
CONVENTIONS = ("Empty masks: both empty -> Dice 1, HD95 = ASSD = 0; exactly one empty -> Dice 0 and HD95/ASSD "
               "undefined (null, excluded from means, counted in empty_predictions/empty_references); HD95 is "
               "medpy's 95th percentile of the pooled directed surface distances (mm), surfaces from a "
               "face-connectivity erosion, and ASSD the mean of the two directed mean surface distances (mm).")
# Relative tolerance for prediction vs reference spacing: exported predictions copy the spacing of their
# input, but a round trip through float32 headers may change the last digits.
SPACING_RTOL = 1e-4
ORIGIN_TOLERANCE = 1e-3  # of the largest voxel spacing: float32 header round trips, not a real shift
DIRECTION_ATOL = 1e-4


def _case_files(folder: str, file_ending: str) -> List[str]:
    return sorted(f for f in os.listdir(folder)
                  if f.endswith(file_ending) and os.path.isfile(os.path.join(folder, f)))


def _match_cases(pred_folder: str, ref_folder: str, file_ending: str,
                 require_all: bool = True) -> Tuple[List[str], List[str]]:
    """(prediction file names, each checked to have a reference; reference file names without a prediction). A
    reference without a prediction is refused unless not ``require_all`` (e.g. a full labelsTr_dense next to one
    fold's predictions): a missing prediction must not silently leave the mean."""
    for folder, role in ((pred_folder, "prediction"), (ref_folder, "reference")):
        if not os.path.isdir(folder):
            raise NNWError(f"{role} folder {folder} does not exist. Check the path given to "
                           f"{'-pred' if role == 'prediction' else '-ref'}.")
    pred_files = _case_files(pred_folder, file_ending)
    ref_files = set(_case_files(ref_folder, file_ending))
    if not pred_files:
        raise NNWError(f"no prediction files ending in {file_ending!r} in {pred_folder}. Check -pred and the file "
                       f"ending (dataset.json 'file_ending' or -fe).")
    missing_refs = [f for f in pred_files if f not in ref_files]
    if missing_refs:
        raise NNWError(f"no reference for {len(missing_refs)} prediction(s): "
                       f"{', '.join(os.path.join(ref_folder, f) for f in missing_refs)}. Point -ref at the folder "
                       f"with the dense labels of these cases, or remove the extra predictions.")
    missing_preds = sorted(ref_files.difference(pred_files))
    if missing_preds and require_all:
        shown = ", ".join(os.path.join(pred_folder, f) for f in missing_preds[:5])
        more = f" and {len(missing_preds) - 5} more" if len(missing_preds) > 5 else ""
        raise NNWError(f"no prediction for {len(missing_preds)} of {len(ref_files)} reference(s): {shown}{more}. "
                       f"Predict these cases, or pass --allow-missing to score only the {len(pred_files)} predicted "
                       f"case(s).")
    return pred_files, missing_preds


def _read_case(pred_file: str, ref_file: str, ignore_label: Optional[int] = None):
    """Return ``(pred, ref, spacing)``: label arrays in numpy axis order and the reference spacing in that order.

    The prediction must lie on the reference's grid (shape, spacing, origin, direction); a reference holding the
    ``ignore_label`` is a weak label map, not a dense reference."""
    pred_image = sitk.ReadImage(pred_file)
    ref_image = sitk.ReadImage(ref_file)
    pred = sitk.GetArrayFromImage(pred_image)
    ref = sitk.GetArrayFromImage(ref_image)
    if pred.shape != ref.shape:
        raise NNWError(f"{pred_file} has shape {pred.shape} but its reference {ref_file} has {ref.shape} "
                       f"(numpy order). Predictions must be exported on the reference grid.")
    # SimpleITK spacing is (x, y, z); GetArrayFromImage returns (z, y, x), so reverse it.
    spacing = tuple(float(s) for s in ref_image.GetSpacing()[::-1])
    pred_spacing = tuple(float(s) for s in pred_image.GetSpacing()[::-1])
    if not np.allclose(pred_spacing, spacing, rtol=SPACING_RTOL, atol=0):
        raise NNWError(f"{pred_file} has spacing {pred_spacing} but its reference {ref_file} has {spacing} "
                       f"(mm, numpy axis order). Predictions must be exported on the reference grid.")
    origin_tolerance = ORIGIN_TOLERANCE * max(spacing)
    if not np.allclose(pred_image.GetOrigin(), ref_image.GetOrigin(), rtol=0, atol=origin_tolerance) or \
            not np.allclose(pred_image.GetDirection(), ref_image.GetDirection(), rtol=0, atol=DIRECTION_ATOL):
        raise NNWError(f"{pred_file} lies elsewhere than its reference {ref_file}: origin "
                       f"{tuple(round(v, 3) for v in pred_image.GetOrigin())} vs "
                       f"{tuple(round(v, 3) for v in ref_image.GetOrigin())} mm, direction "
                       f"{tuple(round(v, 3) for v in pred_image.GetDirection())} vs "
                       f"{tuple(round(v, 3) for v in ref_image.GetDirection())}. Predict from the images that belong "
                       f"to these references (nnU-Net copies their geometry into the prediction).")
    if ignore_label is not None and np.any(ref == ignore_label):
        raise NNWError(f"{ref_file} holds the ignore label {ignore_label}: it is a weak (scribble / point) label "
                       f"map, not a dense reference. Point -ref at the dense labels (e.g. labelsTr_dense).")
    return pred, ref, spacing


def _evaluate_case(pred_file: str, ref_file: str, classes: Dict[str, int],
                   ignore_label: Optional[int] = None) -> Dict[str, dict]:
    pred, ref, spacing = _read_case(pred_file, ref_file, ignore_label)
    return case_metrics(pred, ref, classes, spacing)


def _nanmean(values: Sequence[float]) -> float:
    values = np.asarray(values, dtype=float)
    if values.size == 0 or np.all(np.isnan(values)):
        return float("nan")  # np.nanmean would warn "Mean of empty slice"
    return float(np.nanmean(values))


def summarize(per_case: Dict[str, Dict[str, dict]], classes: Dict[str, int]) -> dict:
    """Aggregate ``{case: {class: case_metrics entry}}`` into the result dict of :func:`evaluate_folder`."""
    mean = {name: {m: _nanmean([per_case[c][name][m] for c in per_case]) for m in METRICS} for name in classes}
    return {
        "per_case": per_case,
        "mean": mean,
        "mean_over_classes": {m: _nanmean([mean[name][m] for name in classes]) for m in METRICS},
        "n_cases": len(per_case),
        "empty_predictions": {name: sum(bool(per_case[c][name]["pred_empty"]) for c in per_case) for name in classes},
        "empty_references": {name: sum(bool(per_case[c][name]["ref_empty"]) for c in per_case) for name in classes},
        "conventions": CONVENTIONS,
    }


def _check_outputs_free(paths: Sequence[Optional[str]], overwrite: bool) -> None:
    """Before the (slow) evaluation: outputs must be writable, and existing ones are kept without ``overwrite``."""
    for path in paths:
        parent = os.path.dirname(os.path.abspath(path)) if path is not None else None
        while parent and not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if parent and not os.path.isdir(parent):
            raise NNWError(f"cannot write {path}: {parent} is a file, not a folder. Choose another output prefix "
                           f"with -o.")
    existing = [p for p in paths if p is not None and os.path.exists(p)]
    if existing and not overwrite:
        raise NNWError(f"{', '.join(existing)} already exist(s); not overwriting. Pass --overwrite "
                       f"(overwrite=True) to replace, or choose another output prefix with -o.")


def json_ready(obj):
    """Copy of ``obj`` with NaN/inf floats as None and numpy scalars as Python numbers (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def _fmt(value: float, digits: int) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def format_markdown(results: dict, classes: Dict[str, int]) -> str:
    """Markdown table: one row per case plus a mean row (Dice per class, mean Dice, HD95 per class in mm, mean
    HD95, mean ASSD), followed by the empty-mask counts and the conventions."""
    names = list(classes)
    header = (["case"] + [f"Dice {n}" for n in names] + ["mean Dice"]
              + [f"HD95 {n} (mm)" for n in names] + ["mean HD95 (mm)", "mean ASSD (mm)"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def row(label: str, per_class: Dict[str, dict], overall: Dict[str, float]) -> str:
        cells = ([label] + [_fmt(per_class[n]["dice"], 4) for n in names] + [_fmt(overall["dice"], 4)]
                 + [_fmt(per_class[n]["hd95"], 2) for n in names] + [_fmt(overall["hd95"], 2), _fmt(overall["assd"], 2)])
        return "| " + " | ".join(cells) + " |"

    for case, per_class in results["per_case"].items():
        overall = {m: _nanmean([per_class[n][m] for n in names]) for m in METRICS}
        lines.append(row(case, per_class, overall))
    lines.append(row("**mean**", results["mean"], results["mean_over_classes"]))
    counts = ", ".join(f"{n} {results['empty_predictions'][n]}/{results['empty_references'][n]}" for n in names)
    lines += ["", f"{results['n_cases']} cases. Empty predictions / empty references per class: {counts}.",
              "", results["conventions"]]
    return "\n".join(lines) + "\n"


def evaluate_folder(pred_folder: str, ref_folder: str, classes: Dict[str, int], file_ending: str = ".nii.gz",
                    output_json: Optional[str] = None, output_md: Optional[str] = None, num_processes: int = 1,
                    overwrite: bool = False, allow_missing: bool = False, ignore_label: Optional[int] = None) -> dict:
    """Evaluate every prediction in ``pred_folder`` against the reference of the same name in ``ref_folder``.

    ``classes``: class name -> integer label value. Images are read with SimpleITK; the spacing (mm) of the
    reference is used, in numpy axis order. Returns ``{"per_case": {case: {class: {"dice", "hd95", "assd",
    "pred_empty", "ref_empty"}}}, "mean": {class: {"dice", "hd95", "assd"}}, "mean_over_classes": {...},
    "n_cases", "empty_predictions": {class: count}, "empty_references": {class: count}, "conventions"}``.
    Class means are nanmeans over cases; ``mean_over_classes`` is the nanmean of the class means.

    Writes ``output_json`` (NaN as null) and ``output_md`` when given; existing files raise NNWError unless
    ``overwrite``. Raises NNWError for a prediction without reference, a reference without prediction (unless
    ``allow_missing``: then they are listed under ``"missing_predictions"``), a reference holding
    ``ignore_label``, and predictions off the reference grid (shape, spacing, origin, direction).
    """
    if not classes:
        raise NNWError("no classes to evaluate. Give -l NAME:VALUE ... or a dataset.json with labels besides "
                       "'background' and 'ignore'.")
    _check_outputs_free([output_json, output_md], overwrite)  # fail before the (slow) evaluation
    files, missing = _match_cases(pred_folder, ref_folder, file_ending, require_all=not allow_missing)
    jobs = [(os.path.join(pred_folder, f), os.path.join(ref_folder, f), dict(classes), ignore_label) for f in files]
    if num_processes > 1 and len(jobs) > 1:
        # spawn, as nnU-Net does: forking a process that already holds torch/threads can deadlock
        with multiprocessing.get_context("spawn").Pool(min(num_processes, len(jobs))) as pool:
            case_results = pool.starmap(_evaluate_case, jobs)
    else:
        case_results = [_evaluate_case(*job) for job in jobs]
    per_case = {f[:-len(file_ending)]: r for f, r in zip(files, case_results)}
    results = summarize(per_case, classes)
    results["missing_predictions"] = [f[:-len(file_ending)] for f in missing]

    for path in (output_json, output_md):
        if path is not None and os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
    if output_json is not None:
        with open(output_json, "w") as f:
            json.dump(json_ready(results), f, indent=2, allow_nan=False)
    if output_md is not None:
        with open(output_md, "w") as f:
            f.write(format_markdown(results, classes))
    return results


def classes_from_dataset_json(path: str) -> Dict[str, int]:
    """Class name -> value for all labels of an nnU-Net v2 dataset.json except 'background' and 'ignore'."""
    if not os.path.isfile(path):
        raise NNWError(f"dataset.json {path} does not exist. Check the path given to -djfile.")
    with open(path) as f:
        dataset_json = json.load(f)
    if "labels" not in dataset_json:
        raise NNWError(f"{path} has no 'labels' entry; it is not an nnU-Net v2 dataset.json.")
    classes = {}
    for name, value in dataset_json["labels"].items():
        if name in ("background", "ignore"):
            continue
        if isinstance(value, (list, tuple)):
            raise NNWError(f"{path}: label {name!r} is a region {value}; dense evaluation needs integer labels. "
                           f"Use -l NAME:VALUE instead.")
        classes[name] = int(value)
    return classes


def parse_label_args(items: Sequence[str]) -> Dict[str, int]:
    """``["RV:1", "MYO:2"]`` -> ``{"RV": 1, "MYO": 2}``."""
    classes = {}
    for item in items:
        name, sep, value = item.rpartition(":")
        if not sep or not name or not value.strip().lstrip("-").isdigit():
            raise NNWError(f"-l entry {item!r} is not NAME:VALUE with an integer VALUE (e.g. -l RV:1 MYO:2 LV:3).")
        if name in classes:
            raise NNWError(f"-l names class {name!r} twice; give each class once.")
        classes[name] = int(value)
    return classes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-pred", required=True, help="folder with predicted label maps")
    parser.add_argument("-ref", required=True, help="folder with dense reference label maps (same file names)")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("-djfile", help="dataset.json: evaluate all labels except 'background' and 'ignore'")
    group.add_argument("-l", nargs="+", metavar="NAME:VALUE", help="classes to evaluate, e.g. -l RV:1 MYO:2 LV:3")
    parser.add_argument("-o", default=None,
                        help="output prefix; writes <prefix>.json and <prefix>.md (default: <pred>/dense_eval)")
    parser.add_argument("-fe", default=None,
                        help="file ending (default: 'file_ending' of the dataset.json, else .nii.gz)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("-np", type=int, default=1, help="number of worker processes (default 1)")
    parser.add_argument("--allow-missing", action="store_true",
                        help="score only the predicted cases when -ref holds more (they are counted and listed)")
    parser.add_argument("--ignore-label", type=int, default=None,
                        help="refuse references holding this value (default: dataset.json's 'ignore' with -djfile)")
    args = parser.parse_args(argv)

    file_ending, ignore_label = args.fe, args.ignore_label
    if args.djfile is not None:
        classes = classes_from_dataset_json(args.djfile)
        with open(args.djfile) as f:
            dataset_json = json.load(f)
        file_ending = file_ending or dataset_json.get("file_ending")
        if ignore_label is None and isinstance(dataset_json["labels"].get("ignore"), int):
            ignore_label = dataset_json["labels"]["ignore"]
    else:
        classes = parse_label_args(args.l)
    file_ending = file_ending or ".nii.gz"
    prefix = args.o if args.o is not None else os.path.join(args.pred, "dense_eval")
    if prefix.endswith(os.sep) or os.path.isdir(prefix):  # -o names a folder: files inside it, not hidden ones
        prefix = os.path.join(prefix, "dense_eval")

    results = evaluate_folder(args.pred, args.ref, classes, file_ending=file_ending,
                              output_json=prefix + ".json", output_md=prefix + ".md",
                              num_processes=max(1, args.np), overwrite=args.overwrite,
                              allow_missing=args.allow_missing, ignore_label=ignore_label)
    print(format_markdown(results, classes))
    missing = results["missing_predictions"]
    if missing:
        print(f"scored {results['n_cases']} predicted case(s); {len(missing)} reference(s) in {args.ref} have no "
              f"prediction and are not in the means (--allow-missing), e.g. {missing[0]}")
    overall = results["mean_over_classes"]
    print(f"mean Dice {_fmt(overall['dice'], 4)} | mean HD95 {_fmt(overall['hd95'], 2)} mm")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
