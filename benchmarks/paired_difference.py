"""Is one benchmark row really better than another? Paired per-case differences with a patient-level bootstrap.

    python benchmarks/paired_difference.py BASELINE_dense_eval.json METHOD_dense_eval.json [--names pL PCLMix]
        [--resamples 10000] [--out benchmarks/results/pclmix_vs_pl]

Both files are ``evaluate_dense`` outputs over the same cases (the ``*_dense_eval.json`` next to the benchmark's
predictions; acdc_benchmark.py keeps a copy of each in ``benchmarks/results/per_case/``). For each class and for
the mean over classes it reports the mean of (method - baseline) per case for Dice and HD95, a 95 % percentile
bootstrap interval that resamples *patients* (ACDC's two frames of a patient are not independent; the patient is
the case name up to ``_frame``), and on how many cases the method is better. HD95 differences use only cases
where both predictions are non-empty.
"""
import argparse
import json
import os
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np

from nnunet_weak.utilities.errors import NNWError


def patient_of(case: str) -> str:
    return case.split("_frame")[0]


def paired_values(base: dict, method: dict, cls: Optional[str], metric: str) -> Dict[str, float]:
    """case -> method - baseline for one class (None: mean over classes, Dice only); cases where either is
    undefined are left out. Both evaluations cover the same cases (checked by ``compare``)."""
    out = {}
    for case, rows in base["per_case"].items():
        classes = [cls] if cls is not None else list(rows)
        a = [rows[c][metric] for c in classes]
        b = [method["per_case"][case][c][metric] for c in classes]
        if any(v is None for v in a + b):
            continue
        out[case] = float(np.mean(b) - np.mean(a))
    return out


def bootstrap_interval(differences: Dict[str, float], resamples: int, seed: int = 0) -> tuple:
    """(mean difference, 2.5 %, 97.5 % percentiles) of the mean over cases when patients are resampled with
    replacement (all frames of a drawn patient come along)."""
    by_patient: Dict[str, List[float]] = {}
    for case, d in differences.items():
        by_patient.setdefault(patient_of(case), []).append(d)
    patients = sorted(by_patient)
    sums = np.array([sum(by_patient[p]) for p in patients])
    counts = np.array([len(by_patient[p]) for p in patients])
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(patients), size=(resamples, len(patients)))
    means = sums[draws].sum(1) / counts[draws].sum(1)
    return float(sums.sum() / counts.sum()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def compare(base: dict, method: dict, resamples: int) -> List[dict]:
    if set(base["per_case"]) != set(method["per_case"]):
        missing = set(base["per_case"]) ^ set(method["per_case"])
        raise NNWError(f"the two evaluations cover different cases (e.g. {sorted(missing)[:3]}); evaluate the "
                       f"same validation fold with both trainers.")
    classes = list(next(iter(base["per_case"].values())))
    rows = []
    for metric in ("dice", "hd95"):
        for cls in classes + [None]:
            if metric == "hd95" and cls is None:
                continue  # class-wise exclusions differ; a mean over classes would mix case sets
            diffs = paired_values(base, method, cls, metric)
            if not diffs:
                continue
            mean, low, high = bootstrap_interval(diffs, resamples)
            better = sum((d > 0) if metric == "dice" else (d < 0) for d in diffs.values())
            rows.append({"metric": metric, "class": cls or "mean", "n_cases": len(diffs), "difference": mean,
                         "ci_low": low, "ci_high": high, "method_better": int(better)})
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("baseline")
    parser.add_argument("method")
    parser.add_argument("--names", nargs=2, default=["baseline", "method"])
    parser.add_argument("--resamples", type=int, default=10000)
    parser.add_argument("--out", default=None, help="output prefix for .md and .json (default: print only)")
    args = parser.parse_args(argv)
    evaluations = []
    for path in (args.baseline, args.method):
        if not os.path.isfile(path):
            raise NNWError(f"{path} not found: pass two *_dense_eval.json files written by the benchmark")
        with open(path) as f:
            evaluations.append(json.load(f))
    rows = compare(*evaluations, args.resamples)
    base_name, method_name = args.names
    lines = [f"# {method_name} - {base_name}, paired per case", "",
             f"Mean of ({method_name} - {base_name}) over cases; 95 % interval: percentile bootstrap over patients "
             f"({args.resamples} resamples). Dice: higher is better; HD95 (mm): lower is better, cases with an "
             f"empty prediction left out.", "",
             f"| metric | class | cases | difference | 95 % interval | cases where {method_name} is better |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        digits = 3 if r["metric"] == "dice" else 1
        lines.append(f"| {r['metric']} | {r['class']} | {r['n_cases']} | {r['difference']:+.{digits}f} | "
                     f"[{r['ci_low']:+.{digits}f}, {r['ci_high']:+.{digits}f}] | {r['method_better']} |")
    lines += ["", f"Inputs: `{args.baseline}`, `{args.method}`", ""]
    text = "\n".join(lines)
    if args.out:
        with open(args.out + ".md", "w") as f:
            f.write(text)
        with open(args.out + ".json", "w") as f:
            json.dump({"names": args.names, "rows": rows}, f, indent=2)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
