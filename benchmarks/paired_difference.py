"""Is one benchmark row really better than another? Paired per-case differences with a bootstrap over patients
and training runs.

    python benchmarks/paired_difference.py BASELINE_dense_eval.json METHOD_dense_eval.json [--names pL PCLMix]
    python benchmarks/paired_difference.py --baseline B1.json B2.json B3.json --method M1.json M2.json M3.json
        [--names pL DynamicMix] [--resamples 10000] [--out benchmarks/results/dynamicmix_vs_pl]
    python benchmarks/paired_difference.py --same-runs --baseline A1.json A2.json --method B1.json B2.json  # run i: one training

Every file is an ``evaluate_dense`` output over the same cases (the ``*_dense_eval.json`` next to the benchmark's
predictions; acdc_benchmark.py keeps a copy of each in ``benchmarks/results/per_case/``), one per training run.
The statistics (hierarchical bootstrap over patients and runs) live in ``nnunet_weak.evaluation.paired``, which
``nnunet_weak_benchmark`` uses too. Also printed: on how many cases the method is better and, per side, the mean
Dice of every run (mean +- sd over runs).
"""
import argparse
import json
import os
import sys
from typing import List, Optional, Sequence

from nnunet_weak.evaluation.paired import compare, format_comparison, run_summary
from nnunet_weak.utilities.errors import NNWError


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
    parser.add_argument("--same-runs", action="store_true",
                        help="run i of both sides is one training (e.g. its two networks): draw runs jointly")
    args = parser.parse_args(argv)
    if args.files:
        if len(args.files) != 2 or args.baseline or args.method:
            raise NNWError("pass either BASELINE METHOD (one run each) or --baseline FILES --method FILES")
        args.baseline, args.method = [args.files[0]], [args.files[1]]
    if not args.baseline or not args.method:
        raise NNWError("pass either BASELINE METHOD (one run each) or --baseline FILES --method FILES")
    bases, methods = _load(args.baseline), _load(args.method)
    rows = compare(bases, methods, args.resamples, same_runs=args.same_runs)
    summaries = {"baseline": run_summary(bases), "method": run_summary(methods)}
    lines = format_comparison(rows, summaries, args.names, args.resamples, (len(bases), len(methods)),
                              same_runs=args.same_runs)
    lines += ["", f"Baseline runs: {', '.join(f'`{p}`' for p in args.baseline)}",
              f"Method runs: {', '.join(f'`{p}`' for p in args.method)}", ""]
    text = "\n".join(lines)
    if args.out:
        with open(args.out + ".md", "w") as f:
            f.write(text)
        with open(args.out + ".json", "w") as f:
            json.dump({"names": args.names, "baseline_files": args.baseline, "method_files": args.method,
                       "same_runs": args.same_runs, "runs": summaries, "rows": rows}, f, indent=2)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
