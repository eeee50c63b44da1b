"""Training-step and inference cost of nnunet_weak trainers, fp32 against the CPU fast path (bf16 autocast), and
relative to nnU-Net's, without data loading.

    python benchmarks/step_cost.py --workdir benchmarks/work -d 801 -c 2d_lite \
        --trainers nnUNetTrainerBudget nnUNetTrainerPCLMix nnUNetTrainerPCLMix_noMix [--repeats 5] \
        [--modes fp32 fast] [-p nnUNetResEncUNetMPlans] [--out benchmarks/results/step_cost_801_2d_lite]

Each trainer is built the way ``nnUNetv2_train`` builds it (same plans (``-p``), configuration, fold 0) once per mode
(``fp32``: ``NNW_CPU_BF16=0``; ``fast``: the default, bf16 autocast where the CPU has native bf16), takes one
real training batch from its own data loader (augmented, single-threaded; the same batch for every mode), and
then runs ``train_step`` on that batch ``--repeats`` times per mode after one warm-up step each, the modes
interleaved step by step so that any load on the machine hits them alike: forward, all losses, backward,
clipping and optimiser steps, with the schedule placed at ``--progress`` of training (so that ramped terms are
on; PA-Seg's foreground gate is opened). Inference cost: the median time of ``network(data)`` in eval mode
without deep supervision, i.e. what ``nnUNetv2_predict`` runs per patch, interleaved the same way. The first
trainer is the reference of the cost ratios. Run it on an idle machine: it measures wall time. Writes a
markdown table and JSON.
"""
import argparse
import gc
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
MODES = {"fp32": "0", "fast": "1"}  # mode -> NNW_CPU_BF16


def interleaved_medians(fns: dict, repeats: int) -> dict:
    """Median wall time of each ``fns[k]()`` over ``repeats`` calls, after one warm-up call each; the calls
    alternate between the keys so that a change in machine load affects all of them alike."""
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


@contextmanager
def cpu_bf16_setting(value: str):
    saved = os.environ.get("NNW_CPU_BF16")
    os.environ["NNW_CPU_BF16"] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("NNW_CPU_BF16")
        else:
            os.environ["NNW_CPU_BF16"] = saved


def prepared_trainer(dataset: str, configuration: str, trainer_name: str, mode: str, progress: float,
                     plans: str = "nnUNetPlans", device: str = "cpu"):
    """A trainer as nnUNetv2_train builds it under ``mode`` on ``device``, its schedule at ``progress``, plus its
    loaders (``mode`` only matters on the CPU)."""
    import torch
    from nnunetv2.run.run_training import get_trainer_from_args

    with cpu_bf16_setting(MODES[mode]):
        trainer = get_trainer_from_args(dataset, configuration, 0, trainer_name, plans,
                                        device=torch.device(device))
        trainer.initialize()
    loaders = trainer.get_dataloaders()
    aux = getattr(trainer, "aux", None)
    if aux is not None:
        # ModelMix draws the auxiliary task's batch inside train_step: hand it one pre-loaded batch again and
        # again, so that (as for the target) augmentation is not timed as part of the step
        aux_loaders = aux.get_dataloaders()
        aux.dataloader_train, aux.dataloader_val = itertools.repeat(next(aux_loaders[0])), aux_loaders[1]
        loaders = loaders + tuple(aux_loaders)
    trainer.current_epoch = int(progress * trainer.num_epochs)
    gate = getattr(trainer, "foreground_gate", None)
    if gate is not None:
        gate.onset = 0.0
    trainer.on_train_epoch_start()
    return trainer, loaders


def measure(dataset: str, configuration: str, trainer_name: str, modes: list, repeats: int,
            progress: float, plans: str = "nnUNetPlans") -> dict:
    import torch

    built = {m: prepared_trainer(dataset, configuration, trainer_name, m, progress, plans) for m in modes}
    batch = next(built[modes[0]][1][0])
    trainers = {m: t for m, (t, _) in built.items()}
    step = interleaved_medians({m: (lambda t=t: t.train_step(batch)) for m, t in trainers.items()}, repeats)

    data = batch["data"]

    def inference(trainer):
        def run():
            with torch.no_grad():
                trainer.network(data)
        return run
    for trainer in trainers.values():
        trainer.network.eval()
        trainer.set_deep_supervision_enabled(False)
    infer = interleaved_medians({m: inference(t) for m, t in trainers.items()}, repeats)
    row = {"trainer": trainer_name, "plans": trainers[modes[0]].plans_manager.plans_name,
           "batch_size": trainers[modes[0]].batch_size,
           "patch_size": list(trainers[modes[0]].configuration_manager.patch_size),
           "threads": torch.get_num_threads(),
           "modes": {m: {"precision": trainers[m].precision, "step_s": step[m], "inference_s": infer[m]}
                     for m in modes}}
    for _, loaders in built.values():
        finish_loaders(loaders)
    del built, trainers
    gc.collect()
    return row


def table(rows: list, modes: list, args, argv) -> str:
    ref = rows[0]
    first, last = modes[0], modes[-1]
    plans = "" if args.p == "nnUNetPlans" else f" ({args.p})"
    head = (f"# Step and inference cost, dataset {args.d}, {args.c}{plans} (median of {args.repeats}, modes "
            f"interleaved, {ref['threads']} CPU threads, batch {ref['batch_size']} x {ref['patch_size']}, schedule at "
            f"{args.progress:.0%})")
    cols = " | ".join(f"{m} step (s)" for m in modes)
    icols = " | ".join(f"{m} inference (s)" for m in modes)
    lines = [head, "",
             f"| trainer | {cols} | {first} / {last} step | step / {ref['trainer']} ({last}) | {icols} | "
             f"{first} / {last} inference | inference / {ref['trainer']} ({last}) |",
             "|---|" + "---|" * (2 * len(modes) + 4)]
    for r in rows:
        m = r["modes"]
        r["speedup_step"] = m[first]["step_s"] / m[last]["step_s"]
        r["speedup_inference"] = m[first]["inference_s"] / m[last]["inference_s"]
        r["step_ratio"] = m[last]["step_s"] / ref["modes"][last]["step_s"]
        r["inference_ratio"] = m[last]["inference_s"] / ref["modes"][last]["inference_s"]
        steps_ = " | ".join(f"{m[k]['step_s']:.3f}" for k in modes)
        infers = " | ".join(f"{m[k]['inference_s']:.3f}" for k in modes)
        # a trainer may refuse a mode's precision (cpu_bf16_refused): say so in its row, not only in the footer
        differs = [f"{k}: {m[k]['precision']}" for k in modes if m[k]["precision"] != ref["modes"][k]["precision"]]
        name = r["trainer"] + (f" ({', '.join(differs)})" if differs else "")
        lines.append(f"| {name} | {steps_} | {r['speedup_step']:.2f} | {r['step_ratio']:.2f} | {infers} | "
                     f"{r['speedup_inference']:.2f} | {r['inference_ratio']:.2f} |")
    precisions = ", ".join(f"{k}: {ref['modes'][k]['precision']}" for k in modes)
    lines += ["", f"Precision per mode: {precisions}. Train step: `train_step` on one real augmented batch (data "
              "loading excluded). Inference: `network(data)` in eval mode, deep supervision off.", ""]
    # wall times only compare on one CPU model: name it, so that tables of different machines are not mixed
    if ref.get("machine"):
        lines += [f"Machine: {ref['machine']}.", ""]
    lines += ["Reproduce: `python benchmarks/step_cost.py " + " ".join(argv or sys.argv[1:]) + "`", ""]
    return "\n".join(lines)


def add_trainer_arguments(parser) -> None:
    """The arguments that say which trainers to build and how (shared with step_profile.py)."""
    parser.add_argument("--workdir", default=os.path.join(HERE, "work"), help="folder holding nnUNet_raw and "
                        "nnUNet_preprocessed (the ACDC benchmark's work folder)")
    parser.add_argument("-d", required=True, help="dataset id or name (planned and preprocessed)")
    parser.add_argument("-c", default="2d_lite", help="configuration")
    parser.add_argument("-p", default="nnUNetPlans", help="plans identifier (nnU-Net's -p), e.g. "
                                                          "nnUNetResEncUNetMPlans")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES),
                        help="precision modes to compare; the ratio columns divide the first by the last")
    parser.add_argument("--progress", type=float, default=0.5, help="fraction of training the schedule is at")


def use_workdir(workdir: str, scratch_prefix: str) -> None:
    """nnU-Net's folders for building trainers from ``workdir``; the trainers' log files and folders go to a
    scratch folder, not next to the benchmark's trained models; augmentation in this process."""
    for sub in ("nnUNet_raw", "nnUNet_preprocessed"):
        os.environ[sub] = os.path.join(os.path.abspath(workdir), sub)
    os.environ["nnUNet_results"] = tempfile.mkdtemp(prefix=scratch_prefix)
    os.environ["nnUNet_n_proc_DA"] = "0"
    os.environ.setdefault("nnUNet_compile", "f")


def finish_loaders(loaders) -> None:
    for dl in loaders:
        if hasattr(dl, "_finish"):
            dl._finish()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_trainer_arguments(parser)
    parser.add_argument("--trainers", nargs="+", required=True, help="the first one is the reference")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None, help="output prefix (default results/step_cost_<d>_<c>)")
    args = parser.parse_args(argv)
    use_workdir(args.workdir, "nnw_step_cost_")
    out = args.out or os.path.join(HERE, "results", f"step_cost_{args.d}_{args.c}")

    from acdc_benchmark import machine
    host = machine()  # one invocation runs on one machine

    rows = []
    for name in args.trainers:
        rows.append({**measure(args.d, args.c, name, args.modes, args.repeats, args.progress, args.p),
                     "machine": host})
        print(f"[step_cost] {name}: " + ", ".join(f"{m} {v['step_s']:.3f} s" for m, v in rows[-1]["modes"].items()),
              flush=True)
    write_report(out, table(rows, args.modes, args, argv), rows)
    return 0


def write_report(out: str, text: str, data) -> None:
    """``<out>.md`` (the table, also printed) and ``<out>.json`` (the rows) of a cost benchmark."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".md", "w") as f:
        f.write(text)
    with open(out + ".json", "w") as f:
        json.dump(data, f, indent=2)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
