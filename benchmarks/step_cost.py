"""Training-step and inference cost of nnunet_weak trainers relative to nnU-Net's, without data loading.

    python benchmarks/step_cost.py --workdir benchmarks/work -d 801 -c 2d_lite \
        --trainers nnUNetTrainerBudget nnUNetTrainerPCLMix nnUNetTrainerPCLMix_noMix [--repeats 5] \
        [--out benchmarks/results/step_cost_801_2d_lite]

Each trainer is built the way ``nnUNetv2_train`` builds it (same plans, configuration, fold 0), takes one real
training batch from its own data loader (augmented, single-threaded), and then runs ``train_step`` on that batch
``--repeats`` times after one warm-up step: forward, all losses, backward, clipping and optimiser steps, with
the schedule placed at ``--progress`` of training (so that ramped terms are on; PA-Seg's foreground gate is
opened). Inference cost: the median time of ``network(data)`` in eval mode without deep supervision, i.e. what
``nnUNetv2_predict`` runs per patch. The first trainer is the reference of both ratios. Run it on an idle
machine: it measures wall time. Writes a markdown table and JSON.
"""
import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def median_seconds(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(dataset: str, configuration: str, trainer_name: str, repeats: int, progress: float) -> dict:
    import torch
    from nnunetv2.run.run_training import get_trainer_from_args

    trainer = get_trainer_from_args(dataset, configuration, 0, trainer_name, "nnUNetPlans", device=torch.device("cpu"))
    trainer.initialize()
    loader, val_loader = trainer.get_dataloaders()
    batch = next(loader)
    aux = getattr(trainer, "aux", None)
    aux_loaders = ()
    if aux is not None:
        # ModelMix draws the auxiliary task's batch inside train_step: hand it one pre-loaded batch again and
        # again, so that (as for the target) augmentation is not timed as part of the step
        aux_loaders = aux.get_dataloaders()
        aux.dataloader_train, aux.dataloader_val = itertools.repeat(next(aux_loaders[0])), aux_loaders[1]
    trainer.current_epoch = int(progress * trainer.num_epochs)
    gate = getattr(trainer, "foreground_gate", None)
    if gate is not None:
        gate.onset = 0.0
    trainer.on_train_epoch_start()
    step = median_seconds(lambda: trainer.train_step(batch), repeats)

    network = trainer.network
    network.eval()
    trainer.set_deep_supervision_enabled(False)
    data = batch["data"].to(trainer.device)

    def infer():
        with torch.no_grad():
            network(data)
    inference = median_seconds(infer, repeats)
    for dl in (loader, val_loader) + tuple(aux_loaders):
        if hasattr(dl, "_finish"):
            dl._finish()
    return {"trainer": trainer_name, "step_s": step, "inference_s": inference, "batch_size": trainer.batch_size,
            "patch_size": list(trainer.configuration_manager.patch_size), "threads": torch.get_num_threads()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=os.path.join(HERE, "work"), help="folder holding nnUNet_raw and "
                        "nnUNet_preprocessed (the ACDC benchmark's work folder)")
    parser.add_argument("-d", required=True, help="dataset id or name (planned and preprocessed)")
    parser.add_argument("-c", default="2d_lite", help="configuration")
    parser.add_argument("--trainers", nargs="+", required=True, help="the first one is the reference")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--progress", type=float, default=0.5, help="fraction of training the schedule is at")
    parser.add_argument("--out", default=None, help="output prefix (default results/step_cost_<d>_<c>)")
    args = parser.parse_args(argv)
    for sub in ("nnUNet_raw", "nnUNet_preprocessed"):
        os.environ[sub] = os.path.join(os.path.abspath(args.workdir), sub)
    # the trainers' log files and folders go to a scratch folder, not next to the benchmark's trained models
    os.environ["nnUNet_results"] = tempfile.mkdtemp(prefix="nnw_step_cost_")
    os.environ["nnUNet_n_proc_DA"] = "0"
    os.environ.setdefault("nnUNet_compile", "f")
    out = args.out or os.path.join(HERE, "results", f"step_cost_{args.d}_{args.c}")

    rows = [measure(args.d, args.c, t, args.repeats, args.progress) for t in args.trainers]
    ref = rows[0]
    lines = [f"# Step and inference cost, dataset {args.d}, {args.c} (median of {args.repeats}, "
             f"{ref['threads']} CPU threads, batch {ref['batch_size']} x {ref['patch_size']}, schedule at "
             f"{args.progress:.0%})", "",
             f"| trainer | train step (s) | step / {ref['trainer']} | inference per batch (s) | inference ratio |",
             "|---|---|---|---|---|"]
    for r in rows:
        r["step_ratio"] = r["step_s"] / ref["step_s"]
        r["inference_ratio"] = r["inference_s"] / ref["inference_s"]
        lines.append(f"| {r['trainer']} | {r['step_s']:.3f} | {r['step_ratio']:.2f} | {r['inference_s']:.3f} | "
                     f"{r['inference_ratio']:.2f} |")
    lines += ["", "Train step: `train_step` on one real augmented batch (data loading excluded). Inference: "
              "`network(data)` in eval mode, deep supervision off.", "",
              "Reproduce: `python benchmarks/step_cost.py " + " ".join(argv or sys.argv[1:]) + "`", ""]
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out + ".md", "w") as f:
        f.write("\n".join(lines))
    with open(out + ".json", "w") as f:
        json.dump(rows, f, indent=2)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
