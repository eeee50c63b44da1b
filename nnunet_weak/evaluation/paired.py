"""Is one trainer really better than another? Paired per-case differences of two sets of ``nnunet_weak_evaluate``
outputs (one per training run, same cases) with a hierarchical bootstrap over patients and training runs.

Each side is first averaged over its runs per case. Every resample draws the patients with replacement (a
patient is the case name up to ``_frame``: ACDC's two frames of a patient are not independent; other datasets'
cases are their own patients; both sides get the same patients) and, independently per side, that side's runs
with replacement. With several runs per side the 95 % interval therefore includes the run-to-run variation of
training, which a patient-only bootstrap of one run each hides. HD95 uses, per case, the runs with a non-empty
prediction; a case is left out where either side has none.

When run i of both sides is the same training (the two networks of one two-network run), ``same_runs`` draws
the runs jointly: a resample keeps each training's two networks together, so the interval holds the difference
within trainings, not the spread between them.
"""
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
                          seed: int = 0, same_runs: bool = False) -> tuple:
    """(mean difference, 2.5 %, 97.5 % percentiles) of the mean over cases of (method - baseline), each side
    averaged over its runs. base: (runs_b, cases), method: (runs_m, cases), NaN = undefined; patients: the
    patient of every case. Each resample draws the patients (with all their frames) and, per side, the runs with
    replacement (``same_runs``: the same run indices on both sides, runs_b == runs_m). With one run per side this
    is the patient bootstrap."""
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
    run_draws_m = run_draws_b if same_runs else rng.integers(0, method.shape[0], size=(resamples, method.shape[0]))
    means = np.empty(resamples)
    for i in range(resamples):
        cases = np.concatenate([members[j] for j in draws[i]])
        d = _run_mean(method[run_draws_m[i]][:, cases]) - _run_mean(base[run_draws_b[i]][:, cases])
        means[i] = np.nanmean(d) if not np.isnan(d).all() else np.nan
    means = means[~np.isnan(means)]
    return float(np.mean(point[valid])), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def _as_runs(evaluations) -> List[dict]:
    return list(evaluations) if isinstance(evaluations, (list, tuple)) else [evaluations]


def compare(base, method, resamples: int, same_runs: bool = False) -> List[dict]:
    """Rows of (metric, class, cases, difference, interval, cases better) for one evaluation per side or a list
    of runs per side; ``same_runs``: run i of both sides comes from one training (runs drawn jointly)."""
    bases, methods = _as_runs(base), _as_runs(method)
    if same_runs and len(bases) != len(methods):
        raise NNWError(f"same runs on both sides needs as many baseline as method evaluations, not {len(bases)} "
                       f"and {len(methods)}; list them in the same run order, or drop the same-runs option.")
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
            mean, low, high = hierarchical_interval(b, m, patients, resamples, same_runs=same_runs)
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


def format_comparison(rows: List[dict], summaries: dict, names: Sequence[str], resamples: int,
                      n_runs: Sequence[int], same_runs: bool = False) -> List[str]:
    """Markdown lines: per-side run summary and the table of differences. ``n_runs``: (baseline, method)."""
    base_name, method_name = names
    if max(n_runs) == 1:
        interval = "percentile bootstrap over patients"
    elif same_runs:
        interval = "hierarchical bootstrap over patients and training runs, run i of both sides from one training"
    else:
        interval = "hierarchical bootstrap over patients and, per side, training runs"
    lines = [f"# {method_name} - {base_name}, paired per case", "",
             f"Mean of ({method_name} - {base_name}) over cases, each side averaged over its runs "
             f"({n_runs[1]} and {n_runs[0]}); 95 % interval: {interval} ({resamples} resamples). Dice: "
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
    return lines
