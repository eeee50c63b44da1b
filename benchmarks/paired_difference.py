"""Is one benchmark row really better than another? Paired per-case differences with a bootstrap over patients
and training runs.

    python benchmarks/paired_difference.py BASELINE_dense_eval.json METHOD_dense_eval.json [--names pL PCLMix]
    python benchmarks/paired_difference.py --baseline B1.json B2.json B3.json --method M1.json M2.json M3.json
        [--names pL DynamicMix] [--resamples 10000] [--out benchmarks/results/dynamicmix_vs_pl]

Every file is an ``evaluate_dense`` output over the same cases (the ``*_dense_eval.json`` next to the benchmark's
predictions; acdc_benchmark.py keeps a copy of each in ``benchmarks/results/per_case/``), one per training run.
For each class and for the mean over classes it reports the mean of (method - baseline) per case, each side first
averaged over its runs, and a 95 % percentile interval from a hierarchical bootstrap: every resample draws the
patients with replacement (ACDC's two frames of a patient are not independent; the patient is the case name up
to ``_frame``; both sides get the same patients) and, independently per side, that side's runs with replacement.
With several runs per side the interval therefore includes the run-to-run variation of training, which a
patient-only bootstrap of one run each hides. It also lists on how many cases the method is better and, per side,
the mean Dice of every run (mean +- sd over runs). HD95 uses, per case, the runs with a non-empty prediction; a
case is left out where either side has none.
"""
import argparse
import json
import os
import sys
from typing import List, Optional, Sequence

import numpy as np

from nnunet_weak.utilities.errors import NNWError


def patient_of(case: str) -> str:
    return case.split("_frame")[0]


def case_values(evaluation: dict, cases: List[str], cls: Optional[str], metric: str) -> np.ndarray:
    """(n_cases,) values of one run for one class (None: mean over classes); NaN where undefined."""
    out = []
    for case in cases:
        rows = evaluation["per_case"][case]
        values = [rows[c][metric] for c in ([cls] if cls is not None else list(rows))]
        out.append(np.nan if any(v is None for v in values) else float(np.mean(values)))
    return np.array(out, dtype=float)


def _run_mean(values: np.ndarray) -> np.ndarray:
    """(runs, cases) -> (cases,) mean over the runs that define a case; NaN where none does."""
    defined = ~np.isnan(values)
    total = np.where(defined, values, 0.0).sum(0)
    count = defined.sum(0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def hierarchical_interval(base: np.ndarray, method: np.ndarray, patients: List[str], resamples: int,
                          seed: int = 0) -> tuple:
    """(mean difference, 2.5 %, 97.5 % percentiles) of the mean over cases of (method - baseline), each side
    averaged over its runs. base: (runs_b, cases), method: (runs_m, cases), NaN = undefined; patients: the
    patient of every case. Each resample draws the patients (with all their frames) and, per side, the runs with
    replacement. With one run per side this is the patient bootstrap."""
    point = _run_mean(method) - _run_mean(base)
    valid = ~np.isnan(point)
    names = sorted({p for p, v in zip(patients, valid) if v})
    if not names:
        return float("nan"), float("nan"), float("nan")
    index = {p: i for i, p in enumerate(names)}
    members = [[] for _ in names]
    for c, (p, v) in enumerate(zip(patients, valid)):
        if v:
            members[index[p]].append(c)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(names), size=(resamples, len(names)))
    run_draws_b = rng.integers(0, base.shape[0], size=(resamples, base.shape[0]))
    run_draws_m = rng.integers(0, method.shape[0], size=(resamples, method.shape[0]))
    means = np.empty(resamples)
    for i in range(resamples):
        cases = np.concatenate([members[j] for j in draws[i]])
        d = _run_mean(method[run_draws_m[i]][:, cases]) - _run_mean(base[run_draws_b[i]][:, cases])
        means[i] = np.nanmean(d) if not np.isnan(d).all() else np.nan
    means = means[~np.isnan(means)]
    return float(np.mean(point[valid])), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def _as_runs(evaluations) -> List[dict]:
    return list(evaluations) if isinstance(evaluations, (list, tuple)) else [evaluations]


def compare(base, method, resamples: int) -> List[dict]:
    """Rows of (metric, class, cases, difference, interval, cases better) for one evaluation per side or a list
    of runs per side."""
    bases, methods = _as_runs(base), _as_runs(method)
    cases = sorted(bases[0]["per_case"])
    for evaluation in bases + methods:
        if set(evaluation["per_case"]) != set(cases):
            missing = set(cases) ^ set(evaluation["per_case"])
            raise NNWError(f"the evaluations cover different cases (e.g. {sorted(missing)[:3]}); evaluate the "
                           f"same validation fold with every run of both trainers.")
    patients = [patient_of(c) for c in cases]
    classes = list(next(iter(bases[0]["per_case"].values())))
    rows = []
    for metric in ("dice", "hd95"):
        for cls in classes + [None]:
            if metric == "hd95" and cls is None:
                continue  # class-wise exclusions differ; a mean over classes would mix case sets
            b = np.stack([case_values(e, cases, cls, metric) for e in bases])
            m = np.stack([case_values(e, cases, cls, metric) for e in methods])
            per_case = _run_mean(m) - _run_mean(b)
            n = int((~np.isnan(per_case)).sum())
            if not n:
                continue
            mean, low, high = hierarchical_interval(b, m, patients, resamples)
            better = int(np.sum(per_case > 0) if metric == "dice" else np.sum(per_case < 0))
            rows.append({"metric": metric, "class": cls or "mean", "n_cases": n, "difference": mean,
                         "ci_low": low, "ci_high": high, "method_better": better})
    return rows


def run_summary(evaluations: List[dict]) -> dict:
    """Mean Dice over cases and classes of every run, and their mean and sd over runs."""
    cases = sorted(evaluations[0]["per_case"])
    per_run = [float(np.nanmean(case_values(e, cases, None, "dice"))) for e in evaluations]
    return {"runs": per_run, "mean": float(np.mean(per_run)),
            "sd": float(np.std(per_run, ddof=1)) if len(per_run) > 1 else None}


def _load(paths: Sequence[str]) -> List[dict]:
    out = []
    for path in paths:
        if not os.path.isfile(path):
            raise NNWError(f"{path} not found: pass *_dense_eval.json files written by the benchmark "
                           f"(benchmarks/results/per_case/ keeps a copy of each)")
        with open(path) as f:
            out.append(json.load(f))
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", help="BASELINE METHOD: one run each")
    parser.add_argument("--baseline", nargs="+", default=None, help="one evaluation per baseline run")
    parser.add_argument("--method", nargs="+", default=None, help="one evaluation per method run")
    parser.add_argument("--names", nargs=2, default=["baseline", "method"])
    parser.add_argument("--resamples", type=int, default=10000)
    parser.add_argument("--out", default=None, help="output prefix for .md and .json (default: print only)")
    args = parser.parse_args(argv)
    if args.files:
        if len(args.files) != 2 or args.baseline or args.method:
            raise NNWError("pass either BASELINE METHOD (one run each) or --baseline FILES --method FILES")
        args.baseline, args.method = [args.files[0]], [args.files[1]]
    if not args.baseline or not args.method:
        raise NNWError("pass either BASELINE METHOD (one run each) or --baseline FILES --method FILES")
    bases, methods = _load(args.baseline), _load(args.method)
    rows = compare(bases, methods, args.resamples)
    summaries = {"baseline": run_summary(bases), "method": run_summary(methods)}
    base_name, method_name = args.names
    several = len(bases) > 1 or len(methods) > 1
    interval = ("hierarchical bootstrap over patients and, per side, training runs" if several
                else "percentile bootstrap over patients")
    lines = [f"# {method_name} - {base_name}, paired per case", "",
             f"Mean of ({method_name} - {base_name}) over cases, each side averaged over its runs "
             f"({len(methods)} and {len(bases)}); 95 % interval: {interval} ({args.resamples} resamples). Dice: "
             f"higher is better; HD95 (mm): lower is better, cases with an empty prediction left out.", "",
             "| side | runs | mean Dice per run | mean +- sd over runs |", "|---|---|---|---|"]
    for name, key in ((base_name, "baseline"), (method_name, "method")):
        s = summaries[key]
        sd = "-" if s["sd"] is None else f"{s['sd']:.3f}"
        lines.append(f"| {name} | {len(s['runs'])} | {' / '.join(f'{v:.3f}' for v in s['runs'])} | "
                     f"{s['mean']:.3f} +- {sd} |")
    lines += ["", f"| metric | class | cases | difference | 95 % interval | cases where {method_name} is better |",
              "|---|---|---|---|---|---|"]
    for r in rows:
        digits = 3 if r["metric"] == "dice" else 1
        lines.append(f"| {r['metric']} | {r['class']} | {r['n_cases']} | {r['difference']:+.{digits}f} | "
                     f"[{r['ci_low']:+.{digits}f}, {r['ci_high']:+.{digits}f}] | {r['method_better']} |")
    lines += ["", f"Baseline runs: {', '.join(f'`{p}`' for p in args.baseline)}",
              f"Method runs: {', '.join(f'`{p}`' for p in args.method)}", ""]
    text = "\n".join(lines)
    if args.out:
        with open(args.out + ".md", "w") as f:
            f.write(text)
        with open(args.out + ".json", "w") as f:
            json.dump({"names": args.names, "baseline_files": args.baseline, "method_files": args.method,
                       "runs": summaries, "rows": rows}, f, indent=2)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
