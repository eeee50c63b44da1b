"""Regenerate every committed result from scratch: one command that lists the runs it will make, with an estimate
of their time, and (with ``--execute``) makes them.

    python benchmarks/regenerate_all.py                       # the plan only: every command and its estimate
    python benchmarks/regenerate_all.py --execute [--results benchmarks/results_regen] [--workdir DIR]

The plan comes from the committed results themselves (``benchmarks/results``): each benchmark table's recorded
invocations in order (``acdc_benchmark.py``; its JSON keeps them), the other measurement scripts' "Reproduce"
commands from their reports, and the paired comparisons whose per-run inputs are recorded
(``paired_difference.py`` JSONs with ``baseline_files`` / ``method_files``). Outputs go to ``--results`` (never
over the committed ones) and every training to ``--workdir``. Estimates: each table row's recorded sec/iter x
iterations + sec/case x cases, on the machine that made it (the tables name it); scripts without a recorded cost
are listed with "?". Comparisons recorded before their inputs were (older paired JSONs), or whose inputs no table's
rows point at, are listed as not regenerable. Tables whose rows score a ModelMix auxiliary network run after the
tables that train ModelMix.
"""
import argparse
import glob
import json
import os
import re
import shlex
import subprocess
import sys
import time
from typing import List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RESULTS = "benchmarks/results"


def _rows_of(invocation: str, rows: list) -> list:
    """The rows an invocation made: its --run labels, and of a row of several runs only the runs its --runs K /
    --first-run I / --last-run J made (a later invocation may have added run 3)."""
    k = re.search(r"--runs (\d+)", invocation)
    i = re.search(r"--first-run (\d+)", invocation)
    j = re.search(r"--last-run (\d+)", invocation)
    first = int(i.group(1)) if i else 1
    last = int(j.group(1)) if j else (int(k.group(1)) if k else None)

    def made_here(run: Optional[int]) -> bool:
        return run is None or (run >= first and (last is None or run <= last))
    return [r for r in rows if f":{r['label']}" in invocation or
            (f":{r.get('group', '')}\"" in invocation and made_here(r.get("run")))]


def row_seconds(row: dict) -> Optional[float]:
    if not row.get("sec_per_iter"):
        return None
    return row["sec_per_iter"] * row.get("iterations", 0) + (row.get("sec_per_case") or 0) * row.get("n_cases", 0)


def _retarget(command: str, name: str, results: str, workdir: Optional[str]) -> str:
    """The command with its outputs under ``results`` (an explicit --out, since every script's default is the
    committed folder) and its nnU-Net folders under ``workdir``."""
    command = command.replace(f"{RESULTS}/", f"{results}/")
    if "--out" not in command:
        command += f" --out {results}/{name}"
    if workdir:
        command = re.sub(r"(--workdir )benchmarks/work(?=\s|$)", rf"\g<1>{workdir}", command)
        command = command.replace("benchmarks/work/", f"{workdir}/")
        if "acdc_benchmark.py" in command and "--workdir" not in command:
            command += f" --workdir {shlex.quote(workdir)}"
    return command


def reproduce_commands(markdown: str) -> List[str]:
    """``python benchmarks/...`` commands of a report's "Reproduce" lines (inline code or a code block)."""
    return [c.strip() for c in re.findall(r"`(python benchmarks/[^`]+)`", markdown)] or \
        [line.strip() for line in markdown.splitlines() if line.strip().startswith("python benchmarks/")]


def plan(results_dir: str, out: str, workdir: Optional[str]) -> List[dict]:
    """Steps in order: {"source", "command" (or None), "seconds" (or None), "note"}."""
    tables, others, paired = [], [], []
    made = set()          # per-case files the tables' rows point at: what the table steps make again
    for path in sorted(glob.glob(os.path.join(results_dir, "*.json"))):
        name = os.path.basename(path)[:-len(".json")]
        with open(path) as f:
            record = json.load(f)
        meta = record.get("meta", {}) if isinstance(record, dict) else {}
        if "invocation" in meta:
            invocations = meta["invocation"] if isinstance(meta["invocation"], list) else [meta["invocation"]]
            steps = []
            for inv in invocations:
                rows = _rows_of(inv, record["rows"])
                fast = any(str(r.get("precision") or "").startswith("bf16") for r in rows)
                if fast and not inv.startswith("NNW_CPU_BF16"):   # the CPU fast path was an environment setting
                    inv = "NNW_CPU_BF16=1 " + inv
                steps.append({"source": name, "command": _retarget(inv, name, out, workdir),
                              "seconds": sum(filter(None, map(row_seconds, rows))) or None})
            aux = any("ModelMixAux" in inv for inv in invocations)
            tables.append((aux, steps))
            made.update(os.path.basename(r["per_case"]) for r in record["rows"] if r.get("per_case"))
        elif "baseline_files" in record:
            command = ("python benchmarks/paired_difference.py --baseline " +
                       " ".join(shlex.quote(p) for p in record["baseline_files"]) + " --method " +
                       " ".join(shlex.quote(p) for p in record["method_files"]) + " --names " +
                       " ".join(shlex.quote(n) for n in record["names"]) + f" --out {RESULTS}/{name}" +
                       (" --same-runs" if record.get("same_runs") else ""))
            paired.append({"source": name, "command": _retarget(command, name, out, workdir), "seconds": 10.0,
                           "inputs": record["baseline_files"] + record["method_files"]})
        elif isinstance(record, dict) and record.get("args", {}).get("device") == "cuda":
            others.append({"source": name, "command": None, "seconds": None,
                           "note": "needs a CUDA GPU: there, bash benchmarks/gpu_check.sh --out DIR (gpu_check.py)"})
        elif isinstance(record, dict) and "names" in record and "rows" in record:
            paired.append({"source": name, "command": None, "seconds": None,
                           "note": "inputs not recorded (made before paired_difference kept them): not regenerable"})
        else:
            report = os.path.join(results_dir, name + ".md")
            commands = reproduce_commands(open(report).read()) if os.path.isfile(report) else []
            others += [{"source": name, "command": _retarget(c, name, out, workdir), "seconds": None}
                       for c in commands]
            if not commands:
                others.append({"source": name, "command": None, "seconds": None, "note": "no reproduce command"})
    for step in paired:   # tables are all read now: a comparison needs every input from one of their rows
        missing = [os.path.basename(p) for p in step.pop("inputs", ()) if os.path.basename(p) not in made]
        if missing:
            step.update(command=None, seconds=None,
                        note=f"inputs no table makes ({', '.join(missing)}; e.g. a network scored from a model "
                             f"copied between runs): not regenerable")
    ordered = [s for aux, steps in sorted(tables, key=lambda t: t[0]) for s in steps]
    return ordered + others + paired


def describe(steps: List[dict]) -> str:
    known = [s["seconds"] for s in steps if s["command"] and s["seconds"]]
    lines = [f"{len([s for s in steps if s['command']])} commands; estimated "
             f"{sum(known) / 3600:.1f} h for the {len(known)} with a recorded cost (on the machines that made them)",
             ""]
    for i, s in enumerate(steps, 1):
        cost = f"{s['seconds'] / 60:6.1f} min" if s["seconds"] else "     ? min"
        lines.append(f"{i:3d}. [{cost}] {s['source']}: {s['command'] or s.get('note', '')}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--execute", action="store_true", help="run the plan (default: print it only)")
    parser.add_argument("--results", default="benchmarks/results_regen",
                        help="where the regenerated results go (relative to the repository)")
    parser.add_argument("--workdir", default="benchmarks/work_regen", help="nnU-Net folders of the regeneration")
    parser.add_argument("--from-results", default=os.path.join(REPO, RESULTS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if os.path.normpath(args.results) == os.path.normpath(RESULTS):
        print(f"--results {args.results} would overwrite the committed results; choose another folder",
              file=sys.stderr)
        return 2
    steps = plan(args.from_results, args.results, args.workdir)
    print(describe(steps))
    if not args.execute:
        print("\nNothing was run; add --execute to run these commands in order.")
        return 0
    os.makedirs(os.path.join(REPO, args.results, "per_case"), exist_ok=True)
    for i, s in enumerate(steps, 1):
        if not s["command"]:
            continue
        print(f"\n[regenerate {i}/{len(steps)}] {s['command']}", flush=True)
        start = time.perf_counter()
        code = subprocess.call(s["command"], shell=True, cwd=REPO)
        print(f"[regenerate {i}/{len(steps)}] exit {code} after {(time.perf_counter() - start) / 60:.1f} min",
              flush=True)
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
