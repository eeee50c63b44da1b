"""``nnunet_weak_demo``: the whole weak-label workflow on a generated phantom, through the stock nnU-Net CLI.

1. writes a raw dataset (synthetic cardiac MRI, simulated scribbles with ignore = 4, dense labels kept aside);
2. ``nnUNetv2_plan_and_preprocess -c 2d`` and ``nnunet_weak_add_lite`` (the CPU-sized ``2d_lite``);
3. ``nnUNetv2_train`` with ``nnUNetTrainerBudget`` (nnU-Net+pL, the bar), ``nnUNetTrainerPCE`` (the literature's
   pCE baseline) and ``nnUNetTrainerDynamicMix`` (nnU-Net+pL plus PCLMix's dynamic mix) on a short budget,
   printing one line per epoch (loss, time, time left);
4. ``nnUNetv2_predict`` on the held-out cases, for each and for an untrained network of the same plans;
5. Dice / HD95 against the dense labels, printed as a table (also results.md / results.json), and
   ``slices.png``: one training slice with its scribbles, one test slice with its reference and every model's
   prediction.

Training and prediction take the CPU fast path (bf16 autocast, ``NNW_CPU_BF16=1`` unless the caller set it) where
the CPU has native bf16; the demo says at the start which path runs, and the table gives each model's training
precision.

It fails (exit 1) when a trained model does not beat the untrained one by a clear margin.
"""
import argparse
import json
import os
import shutil
import sys
import time

from nnunet_weak.utilities.errors import NNWError

DATASET_ID = 990
DATASET_NAME = f"Dataset{DATASET_ID}_NNWDemoPhantom"
MARKER = ".nnunet_weak_demo"
TRAINERS = [("nnU-Net+pL", "nnUNetTrainerBudget"), ("pCE", "nnUNetTrainerPCE"),
            ("DynamicMix", "nnUNetTrainerDynamicMix")]
MIN_GAIN = 0.2  # a trained model must beat the untrained one by this much mean Dice


def prepare_workdir(workdir: str, overwrite: bool) -> None:
    """Create ``workdir``; reuse it only if an earlier demo made it, and only with ``overwrite``."""
    if os.path.isdir(workdir) and os.listdir(workdir):
        if not os.path.isfile(os.path.join(workdir, MARKER)):
            raise NNWError(f"{workdir} exists and was not made by nnunet_weak_demo; choose another --workdir.")
        if not overwrite:
            raise NNWError(f"{workdir} holds an earlier demo run; pass --overwrite to replace it or choose "
                           f"another --workdir.")
        shutil.rmtree(workdir)
    os.makedirs(workdir, exist_ok=True)
    open(os.path.join(workdir, MARKER), "w").close()


def write_untrained_model(trained_model: str, target: str, fold: int = 0, seed: int = 0) -> str:
    """A model folder holding a randomly initialised network of the same plans (the 'untrained' row)."""
    import torch
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    from batchgenerators.utilities.file_and_folder_operations import load_json

    from nnunet_weak.training.budget import nnUNetTrainerBudget
    from nnunet_weak.utilities.checkpoint_io import load_checkpoint_file

    checkpoint = load_checkpoint_file(os.path.join(trained_model, f"fold_{fold}", "checkpoint_final.pth"))
    os.makedirs(os.path.join(target, f"fold_{fold}"), exist_ok=True)
    for name in ("plans.json", "dataset.json"):
        shutil.copy(os.path.join(trained_model, name), os.path.join(target, name))
    plans = PlansManager(load_json(os.path.join(target, "plans.json")))
    dataset_json = load_json(os.path.join(target, "dataset.json"))
    configuration = plans.get_configuration(checkpoint["init_args"]["configuration"])
    torch.manual_seed(seed)
    network = nnUNetTrainerBudget.build_network_architecture(
        plans, configuration, determine_num_input_channels(plans, configuration, dataset_json),
        plans.get_label_manager(dataset_json).num_segmentation_heads, enable_deep_supervision=False)
    torch.save({"network_weights": network.state_dict(), "trainer_name": "nnUNetTrainerBudget",
                "init_args": checkpoint["init_args"],
                "inference_allowed_mirroring_axes": checkpoint["inference_allowed_mirroring_axes"]},
               os.path.join(target, f"fold_{fold}", "checkpoint_final.pth"))
    return target


def markdown_table(rows: list) -> str:
    lines = ["| model | trainer | Dice RV | Dice MYO | Dice LV | mean Dice | mean HD95 (mm) | train s/iter | "
             "precision |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        d = r["dice"]
        sec = f"{r['sec_per_iter']:.3f}" if r.get("sec_per_iter") else "-"
        lines.append(f"| {r['model']} | {r['trainer']} | {d['RV']:.3f} | {d['MYO']:.3f} | {d['LV']:.3f} | "
                     f"{r['mean_dice']:.3f} | {r['mean_hd95']:.1f} | {sec} | {r.get('precision') or '-'} |")
    return "\n".join(lines)


def slice_figure(raw: str, rows: list, path: str) -> str:
    """PNG: a training slice with its scribbles; a test slice, its reference and each row's prediction."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import SimpleITK as sitk

    def read(*parts):
        return sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(*parts)))

    train_case = sorted(f for f in os.listdir(os.path.join(raw, "labelsTr")) if f.endswith(".nii.gz"))[0]
    test_case = sorted(f for f in os.listdir(os.path.join(raw, "labelsTs")) if f.endswith(".nii.gz"))[0]
    reference = read(raw, "labelsTs", test_case)
    z = int(np.argmax((reference > 0).sum(axis=(1, 2))))          # the slice with the most foreground
    scribble = read(raw, "labelsTr", train_case)
    zs = int(np.argmax(((scribble > 0) & (scribble < 4)).sum(axis=(1, 2))))
    panels = [("training slice + scribbles", read(raw, "imagesTr", train_case.replace(".nii.gz", "_0000.nii.gz"))[zs],
               np.ma.masked_where(scribble[zs] == 4, scribble[zs])),
              ("test slice", read(raw, "imagesTs", test_case.replace(".nii.gz", "_0000.nii.gz"))[z], None),
              ("reference", None, reference[z])]
    panels += [(r["model"], None, read(r["prediction"], test_case)[z]) for r in rows]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.2 * len(panels), 2.6))
    for ax, (title, image, labels) in zip(axes, panels):
        if image is not None:
            ax.imshow(image, cmap="gray")
        if labels is not None:
            ax.imshow(labels, cmap="viridis", vmin=0, vmax=4, interpolation="nearest",
                      alpha=0.8 if image is not None else 1.0)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="nnunet_weak_demo", help="experiment folder (default ./nnunet_weak_demo)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier demo run in --workdir")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--iters", type=int, default=25, help="training iterations per epoch")
    parser.add_argument("--train-cases", type=int, default=20)
    parser.add_argument("--test-cases", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from nnunet_weak.demo.dataset import write_demo_dataset
    from nnunet_weak.evaluation.evaluate_dense import evaluate_folder
    from nnunet_weak.experiment import steps

    from nnunet_weak.utilities import cpu_bf16, timing_file

    start = time.perf_counter()
    os.environ.setdefault(cpu_bf16.VARIABLE, "1")  # the demo shows the fast path (NNW_CPU_BF16=0 runs it in fp32)
    print(f"[demo] {cpu_bf16.describe()}")
    workdir = os.path.abspath(args.workdir)
    prepare_workdir(workdir, args.overwrite)
    log = os.path.join(workdir, "demo.log")
    env = steps.nnunet_environment(workdir, NNW_NUM_EPOCHS=args.epochs, NNW_ITERS_PER_EPOCH=args.iters,
                                   NNW_VAL_ITERS_PER_EPOCH=2, NNW_SKIP_FINAL_VALIDATION=1)
    raw = os.path.join(env["nnUNet_raw"], DATASET_NAME)
    summary = write_demo_dataset(raw, args.train_cases, args.test_cases, args.seed)
    print(f"[demo] dataset {raw}: {args.train_cases} scribbled training volumes "
          f"({100 * summary['annotated_fraction']:.1f}% pixels annotated), {args.test_cases} test volumes")
    print(f"[demo] planning and preprocessing (log: {log})")
    steps.plan_and_preprocess(DATASET_ID, ["2d"], env, log)

    classes = {"RV": 1, "MYO": 2, "LV": 3}
    rows = []
    for label, trainer in TRAINERS:
        print(f"[demo] training {trainer} ({label}) on 2d_lite: {args.epochs} x {args.iters} iterations")
        steps.train(DATASET_ID, "2d_lite", 0, trainer, env, log, on_line=steps.EpochProgress(args.epochs, "[demo]   "))
        out = os.path.join(workdir, "predictions", trainer)
        steps.predict(os.path.join(raw, "imagesTs"), out, DATASET_ID, "2d_lite", 0, trainer, env, log)
        folder = steps.model_folder(env, DATASET_NAME, trainer, "2d_lite")
        rows.append({"model": label, "trainer": trainer, "prediction": out,
                     "sec_per_iter": timing_file.train_seconds_per_iteration(os.path.join(folder, "fold_0")),
                     "precision": timing_file.train_precision(os.path.join(folder, "fold_0"))})

    untrained = write_untrained_model(steps.model_folder(env, DATASET_NAME, TRAINERS[0][1], "2d_lite"),
                                      os.path.join(workdir, "untrained_model"))
    out = os.path.join(workdir, "predictions", "untrained")
    steps.run_command(["nnUNetv2_predict_from_modelfolder", "-i", os.path.join(raw, "imagesTs"), "-o", out,
                       "-m", untrained, "-f", 0, "-device", "cpu", "-npp", 1, "-nps", 1], env, log)
    rows.append({"model": "untrained", "trainer": "(random init)", "prediction": out, "sec_per_iter": None,
                 "precision": None})

    for r in rows:
        result = evaluate_folder(r["prediction"], os.path.join(raw, "labelsTs"), classes)
        r["dice"] = {c: result["mean"][c]["dice"] for c in classes}
        r["mean_dice"] = result["mean_over_classes"]["dice"]
        r["mean_hd95"] = result["mean_over_classes"]["hd95"]

    table = markdown_table(rows)
    picture = slice_figure(raw, rows, os.path.join(workdir, "slices.png"))
    minutes = (time.perf_counter() - start) / 60
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write(f"# nnunet_weak demo ({minutes:.1f} min)\n\n{table}\n")
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump({"rows": rows, "minutes": minutes, "args": vars(args)}, f, indent=2)
    print(f"\nDense-label evaluation on {args.test_cases} held-out phantom volumes "
          f"(trained on scribbles, {args.epochs * args.iters} iterations, {minutes:.1f} min in total):\n")
    print(table)
    baseline = rows[-1]["mean_dice"]
    failed = [r["model"] for r in rows[:-1] if not r["mean_dice"] > baseline + MIN_GAIN]
    if failed:
        print(f"\n[demo] FAILED: {failed} did not beat the untrained network by {MIN_GAIN} mean Dice")
        return 1
    print(f"\n[demo] ok: every trained model beats the untrained one by more than {MIN_GAIN} mean Dice. "
          f"Results: {workdir}/results.md, slices: {picture}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
