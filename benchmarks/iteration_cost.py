"""Whole training iterations inside the stock ``nnUNetv2_train`` (data loading included), fp32 against the CPU
fast path, and where an iteration's time goes: the step, or waiting for the data loader.

    python benchmarks/iteration_cost.py --workdir benchmarks/work -d 801 -c 2d_lite \
        --trainers nnUNetTrainerBudget nnUNetTrainerPCLMix [--workers 1 2] [--epochs 4 --iters 25] [--rounds 2]

Every (round, trainer, data-augmentation workers, mode) runs ``nnUNetv2_train D C 0 -tr T -device cpu`` in a
scratch results folder for ``--epochs`` x ``--iters`` iterations (final validation skipped, 1 pseudo-Dice
iteration per epoch), the modes alternating run by run. Each run's ``nnunet_weak_timing.json`` gives the
training phase of every epoch and the part of it spent waiting for the next batch; the first epoch (start-up,
worker warm-up) is skipped and the median epoch is divided by the iterations. The table gives the median over
rounds. Run it on an idle machine. Writes a markdown table and JSON.
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from step_cost import MODES, write_report  # noqa: E402  (a sibling script, not a package)


def per_iteration(timing: dict) -> dict:
    """Median seconds per iteration of the epochs after the first: whole iteration, and waiting for data."""
    iters = timing["iterations_per_epoch"]
    epochs, waits = timing["epochs"][1:] or timing["epochs"], timing["loader_wait"][1:] or timing["loader_wait"]
    return {"s_per_iter": statistics.median(epochs) / iters, "wait_per_iter": statistics.median(waits) / iters,
            "precision": timing.get("precision")}


def run_once(args, trainer: str, workers: int, mode: str, log: str) -> dict:
    from nnunet_weak.experiment import steps
    from nnunet_weak.training.budget import TIMING_FILE

    scratch = tempfile.mkdtemp(prefix="nnw_iteration_cost_")
    workdir = os.path.abspath(args.workdir)
    env = steps.nnunet_environment(workdir, NNW_NUM_EPOCHS=args.epochs, NNW_ITERS_PER_EPOCH=args.iters,
                                   NNW_VAL_ITERS_PER_EPOCH=1, NNW_SKIP_FINAL_VALIDATION=1,
                                   NNW_CPU_BF16=MODES[mode], nnUNet_n_proc_DA=workers)
    env["nnUNet_results"] = scratch
    try:
        steps.train(args.d, args.c, 0, trainer, env, log)
        folder = next(os.path.join(root, TIMING_FILE) for root, _, files in os.walk(scratch) if TIMING_FILE in files)
        with open(folder) as f:
            return per_iteration(json.load(f))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=os.path.join(HERE, "work"),
                        help="folder holding nnUNet_raw and nnUNet_preprocessed (the ACDC benchmark's work folder)")
    parser.add_argument("-d", required=True, help="dataset id (planned and preprocessed)")
    parser.add_argument("-c", default="2d_lite")
    parser.add_argument("--trainers", nargs="+", required=True)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES),
                        help="the speed-up column divides the first by the last")
    parser.add_argument("--workers", nargs="+", type=int, default=[1], help="nnUNet_n_proc_DA values to compare")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--iters", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=None, help="output prefix (default results/iteration_cost_<d>_<c>)")
    args = parser.parse_args(argv)
    out = args.out or os.path.join(HERE, "results", f"iteration_cost_{args.d}_{args.c}")
    log = os.path.join(os.path.abspath(args.workdir), "iteration_cost.log")

    runs = {}
    for r in range(args.rounds):
        for trainer in args.trainers:
            for workers in args.workers:
                for mode in (args.modes if r % 2 == 0 else args.modes[::-1]):
                    result = run_once(args, trainer, workers, mode, log)
                    runs.setdefault((trainer, workers, mode), []).append(result)
                    print(f"[iteration_cost] round {r + 1}: {trainer}, {workers} worker(s), {mode}: "
                          f"{result['s_per_iter']:.3f} s/iter, waiting {result['wait_per_iter']:.3f}", flush=True)

    first, last = args.modes[0], args.modes[-1]
    lines = [f"# Whole iterations in nnUNetv2_train, dataset {args.d}, {args.c} ({args.epochs} epochs x {args.iters} "
             f"iterations per run, first epoch skipped, median over {args.rounds} rounds, modes alternating)", "",
             "| trainer | nnUNet_n_proc_DA | " + " | ".join(f"{m} s/iter | {m} waiting for data (s/iter)"
                                                        for m in args.modes) + f" | {first} / {last} |",
             "|---|---|" + "---|---|" * len(args.modes) + "---|"]
    rows = []
    for (trainer, workers) in dict.fromkeys((t, w) for t, w, _ in runs):
        cells, row = [], {"trainer": trainer, "workers": workers, "modes": {}}
        for m in args.modes:
            results = runs[(trainer, workers, m)]
            med = {k: statistics.median(x[k] for x in results) for k in ("s_per_iter", "wait_per_iter")}
            row["modes"][m] = {**med, "precision": results[0]["precision"], "runs": results}
            cells.append(f"{med['s_per_iter']:.3f} | {med['wait_per_iter']:.3f}")
        row["speedup"] = row["modes"][first]["s_per_iter"] / row["modes"][last]["s_per_iter"]
        rows.append(row)
        lines.append(f"| {trainer} | {workers} | " + " | ".join(cells) + f" | {row['speedup']:.2f} |")
    precisions = ", ".join(f"{m}: {rows[0]['modes'][m]['precision']}" for m in args.modes)
    lines += ["", f"Precision per mode: {precisions}. s/iter: training phase of an epoch / iterations (data loading "
              "included); waiting: time between one train_step's end and the next one's start (the loader).", "",
              "Reproduce: `python benchmarks/iteration_cost.py " + " ".join(argv or sys.argv[1:]) + "`", ""]
    write_report(out, "\n".join(lines), rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
