"""The GPU check: every trainer we ship, under CUDA AMP at nnU-Net's default plans, in one command.

    bash benchmarks/gpu_check.sh --out DIR                 # on a GPU machine (installs carried wheels first)
    python benchmarks/gpu_check.py --device cpu --tiny --out DIR    # the same on the CPU, tiny (the test suite)

1. Writes the demo phantom (scribbles, a few unlabelled cases, held-out test cases with dense labels) and a
   second phantom as ModelMix's auxiliary dataset, plans and preprocesses them with
   ``nnUNetv2_plan_and_preprocess -c 2d 3d_fullres`` (nnU-Net's default plans, not the CPU ``_lite`` ones) and
   pairs them with ``nnunet_weak_modelmix_pair``.
2. For every trainer and configuration it supports: the trainer as ``nnUNetv2_train`` builds it on the device,
   its schedule at half of training (ramped terms on), ``--steps`` ``train_step`` calls on real augmented
   batches after ``--warmup`` untimed ones, recording every loss (all must be finite), the median step time, the
   peak device memory and the grad scaler's scale, and the median time of one inference forward pass (batch 1,
   deep supervision off, under ``nnUNetv2_predict``'s autocast). Ratios are to ``nnUNetTrainerBudget`` (nnU-Net+pL) of
   the same configuration. Step checks run without torch.compile (``nnUNet_compile=f``) unless ``--compile``
   (then the "compiled" column says which trainers did).
3. For ``nnUNetTrainerPCLMix`` and ``nnUNetTrainerModelMix`` (2d): ``nnUNetv2_train`` for one short epoch,
   ``--c`` resume for a second, ``nnUNetv2_predict`` on the test cases and dense evaluation, with nnU-Net's
   compile default (on for CUDA; the "compiled" column reads the training log, since some of our trainers keep
   it off by design).
4. Writes ``gpu_check.md`` and ``gpu_check.json`` to ``--out`` after every row, so a run stopped by a time limit
   still reports what it did. A failing trainer gets its one-line error in the table; the check goes on.

``--deadline-s`` skips what would start after that many seconds (the rows say so). The exit code is 1 when a
row failed.
"""
import argparse
import contextlib
import gc
import json
import math
import os
import platform
import shutil
import statistics
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
STANDIN = os.path.join(HERE, "sitk_standin")

TARGET_ID, AUX_ID = 995, 996
TARGET = f"Dataset{TARGET_ID}_NNWGpuCheck"
AUX = f"Dataset{AUX_ID}_NNWGpuCheckAux"
BOTH = ("2d", "3d_fullres")
# every trainer we ship and the configurations it supports (PCLMix and DynamicMix mix 2D boxes, DKUXNet is 3D)
TRAINERS = [
    ("nnUNetTrainerBudget", BOTH),
    ("nnUNetTrainerPCE", BOTH),
    ("nnUNetTrainerDynamicMix", ("2d",)),
    ("nnUNetTrainerFewLabels", BOTH),
    ("nnUNetTrainerPASeg", BOTH),
    ("nnUNetTrainerPASegAux", BOTH),
    ("nnUNetTrainerPASegSCM", BOTH),
    ("nnUNetTrainerPCLMix", ("2d",)),
    ("nnUNetTrainerModelMix", BOTH),
    ("nnUNetTrainerKMaX", BOTH),
    ("nnUNetTrainerDualKMaX", BOTH),
    ("nnUNetTrainerDKUXNet", ("3d_fullres",)),
    ("nnUNetTrainerDKUXNet_lite", ("3d_fullres",)),
]
REFERENCE = "nnUNetTrainerBudget"
ROUND_TRIPS = ["nnUNetTrainerPCLMix", "nnUNetTrainerModelMix"]
CLASSES = {"RV": 1, "MYO": 2, "LV": 3}
SIZES = {  # phantom volumes (z, y, x) and case counts
    "full": dict(shape=(20, 256, 224), n_train=10, n_unlabelled=2, n_test=2, n_aux=5),
    "tiny": dict(shape=(4, 48, 48), n_train=6, n_unlabelled=2, n_test=2, n_aux=6),
}


def use_standin_if_needed(force: bool = False) -> bool:
    """Put the nibabel stand-in for SimpleITK first on the import path (this process and its children) when
    SimpleITK is missing or ``force``; True when it is used."""
    if not force:
        try:
            import SimpleITK  # noqa: F401
            return False
        except ImportError:
            pass
    sys.path.insert(0, STANDIN)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (STANDIN, os.environ.get("PYTHONPATH")) if p)
    sys.modules.pop("SimpleITK", None)
    return True


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}"


# ------------------------------------------------------------------------------------------------ data
def prepare(workdir: str, size: dict, nproc: int, log: str, configurations=BOTH) -> dict:
    """Raw phantoms, default plans (2d, 3d_fullres), the ModelMix pairing and fold-0 splits; reused when an
    earlier call of this script finished the same preparation in ``workdir``."""
    from nnunet_weak.demo.dataset import write_demo_dataset
    from nnunet_weak.experiment import steps
    from nnunet_weak.utilities.errors import NNWError

    marker = os.path.join(workdir, "prepared.json")
    if os.path.isdir(workdir) and os.listdir(workdir) and not os.path.isfile(marker):
        raise NNWError(f"{workdir} holds files this check did not write; choose another --workdir (it deletes and "
                       f"rewrites the nnU-Net folders in it).")
    wanted = json.loads(json.dumps({**size, "configurations": list(configurations)}))
    if os.path.isfile(marker) and json.load(open(marker)).get("size") == wanted:
        return steps.nnunet_environment(workdir)
    os.makedirs(workdir, exist_ok=True)
    json.dump({"size": None}, open(marker, "w"))          # this check's folder from here on, prepared or not
    env = steps.nnunet_environment(workdir)
    for sub in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        shutil.rmtree(env[sub], ignore_errors=True)
        os.makedirs(env[sub])
    raw = env["nnUNet_raw"]
    write_demo_dataset(os.path.join(raw, TARGET), size["n_train"], size["n_test"], seed=0, shape=size["shape"],
                       n_unlabelled=size["n_unlabelled"], prefix="gpu")
    write_demo_dataset(os.path.join(raw, AUX), size["n_aux"], 0, seed=1, shape=size["shape"], prefix="aux")
    plan_env = {**env, "nnUNet_n_proc_DA": str(nproc)}
    steps.run_command(["nnUNetv2_plan_and_preprocess", "-d", TARGET_ID, "-c", *configurations,
                       "-np", *[nproc] * len(configurations), "-npfp", nproc], plan_env, log)
    steps.run_command(["nnunet_weak_modelmix_pair", "-t", TARGET_ID, "-a", AUX_ID, "-c", *configurations,
                       "-np", nproc], plan_env, log)
    n_target = size["n_train"] + size["n_unlabelled"]
    for name, prefix, n, n_val in ((TARGET, "gpu", n_target, 3), (AUX, "aux", size["n_aux"], 2)):
        cases = [f"{prefix}_{i:03d}" for i in range(n)]
        val = cases[:n_val]
        with open(os.path.join(env["nnUNet_preprocessed"], name, "splits_final.json"), "w") as f:
            json.dump([{"train": [c for c in cases if c not in val], "val": val}], f)
    json.dump({"size": wanted}, open(marker, "w"))
    return env


# ------------------------------------------------------------------------------------------------ step check
def _sync(device) -> None:
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_check(trainer_name: str, configuration: str, device_name: str, n_steps: int, n_warmup: int,
               n_batches: int) -> dict:
    """One trainer on one configuration: losses, median step time, peak memory, inference time."""
    import numpy as np
    import torch

    from step_cost import finish_loaders, prepared_trainer

    device = torch.device(device_name)
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
    trainer, loaders = prepared_trainer(str(TARGET_ID), configuration, trainer_name, "fp32", 0.5,
                                        device=device_name)
    row = {"batch_size": trainer.batch_size, "patch_size": list(trainer.configuration_manager.patch_size),
           "compiled": hasattr(trainer.network, "_orig_mod")}      # torch.compile's wrapper
    try:
        batches = [next(loaders[0]) for _ in range(n_batches)]
        scaler = getattr(trainer, "grad_scaler", None)
        row["grad_scale_start"] = float(scaler.get_scale()) if scaler is not None else None
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        losses, times = [], []
        for i in range(n_warmup + n_steps):
            batch = batches[i % len(batches)]
            _sync(device)
            start = time.perf_counter()
            out = trainer.train_step(batch)
            _sync(device)
            if i >= n_warmup:
                times.append(time.perf_counter() - start)
            losses.append(float(np.asarray(out["loss"])))
        row.update(losses=losses, finite=bool(all(math.isfinite(v) for v in losses)),
                   step_s=statistics.median(times),
                   grad_scale_end=float(scaler.get_scale()) if scaler is not None else None,
                   precision=getattr(trainer, "precision", None))
        if device.type == "cuda":
            row["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2 ** 30
            row["peak_reserved_gib"] = torch.cuda.max_memory_reserved(device) / 2 ** 30

        network = trainer.network
        trainer.set_deep_supervision_enabled(False)
        network.eval()
        x = batches[0]["data"][:1].to(device)
        infer = []
        # nnUNetv2_predict's rule: fp16 autocast on CUDA, none elsewhere (on the CPU fast path the network's own
        # hooks switch to bf16)
        autocast = torch.autocast("cuda", enabled=True) if device.type == "cuda" else contextlib.nullcontext()
        with torch.no_grad(), autocast:
            for i in range(4):
                _sync(device)
                start = time.perf_counter()
                network(x)
                _sync(device)
                if i:
                    infer.append(time.perf_counter() - start)
        row["inference_s"] = statistics.median(infer)
        row["status"] = "ok" if row["finite"] else "failed"
        if not row["finite"]:
            row["error"] = f"non-finite loss: {[round(v, 4) for v in losses]}"
    finally:
        finish_loaders(loaders)
        del trainer, loaders
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return row


def add_ratios(rows: list) -> None:
    refs = {r["configuration"]: r for r in rows if r["trainer"] == REFERENCE and r.get("status") == "ok"}
    for r in rows:
        ref = refs.get(r["configuration"])
        if r.get("status") != "ok" or ref is None:
            continue
        r["step_ratio"] = r["step_s"] / ref["step_s"]
        r["inference_ratio"] = r["inference_s"] / ref["inference_s"]
        if r.get("peak_memory_gib") and ref.get("peak_memory_gib"):
            r["memory_ratio"] = r["peak_memory_gib"] / ref["peak_memory_gib"]


# ------------------------------------------------------------------------------------------------ round trip
def round_trip(trainer: str, env: dict, device_name: str, iters: int, workdir: str, log: str) -> dict:
    """nnUNetv2_train (1 epoch), --c (to 2 epochs), nnUNetv2_predict, dense evaluation; seconds of each."""
    import torch

    from nnunet_weak.experiment import steps
    from nnunet_weak.experiment.benchmark import Model, Reference, predict_and_score, train_fold

    run_env = {**env, "NNW_NUM_EPOCHS": "1", "NNW_ITERS_PER_EPOCH": str(iters), "NNW_VAL_ITERS_PER_EPOCH": "2",
               "NNW_SKIP_FINAL_VALIDATION": "1"}
    if device_name == "cuda":
        run_env.pop("nnUNet_compile", None)          # nnU-Net's default: torch.compile on CUDA
        run_env["nnUNet_n_proc_DA"] = str(max(1, min(8, (os.cpu_count() or 2) - 2)))
    fold = os.path.join(steps.model_folder(env, TARGET, trainer, "2d"), "fold_0")
    model = Model(TARGET_ID, "2d", 0, trainer, fold)
    row = {"trainer": trainer, "configuration": "2d"}
    row["train_s"] = train_fold(model, run_env, log, retrain=True, device=device_name)
    row["resume_s"] = steps.train(TARGET_ID, "2d", 0, trainer, {**run_env, "NNW_NUM_EPOCHS": "2"}, log, ["--c"],
                                  device=device_name)
    checkpoint = torch.load(os.path.join(fold, "checkpoint_final.pth"), map_location="cpu", weights_only=False)
    row["epochs_after_resume"] = int(checkpoint["current_epoch"])
    # whether the trainer compiled (nnU-Net logs it; several of ours keep compile off by design)
    logs = [os.path.join(fold, f) for f in os.listdir(fold) if f.startswith("training_log")]
    row["compile"] = any("Using torch.compile" in open(f).read() for f in logs)
    raw = os.path.join(env["nnUNet_raw"], TARGET)
    n_test = len([f for f in os.listdir(os.path.join(raw, "labelsTs")) if f.endswith(".nii.gz")])
    scores = predict_and_score(model, os.path.join(raw, "imagesTs"), os.path.join(workdir, "predictions", trainer),
                               n_test, Reference(os.path.join(raw, "labelsTs"), CLASSES),
                               os.path.join(workdir, "evaluation", f"{trainer}.json"), run_env, log,
                               device=device_name)
    row.update(n_cases=scores["n_cases"], dice=scores["dice"], mean_dice=scores["mean_dice"],
               predict_s=scores["sec_per_case"] * scores["n_cases"])
    row["status"] = "ok" if row["epochs_after_resume"] == 2 else "failed"
    if row["status"] != "ok":
        row["error"] = f"resume ended at epoch {row['epochs_after_resume']}, not 2"
    return row


# ------------------------------------------------------------------------------------------------ report
def _f(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def markdown(report: dict) -> str:
    e = report["environment"]
    compile_text = ("nnU-Net's torch.compile default (the first warm-up step compiles)"
                    if report["args"].get("compile") else "no torch.compile")
    lines = [f"# GPU check: {e['device_name']}", "",
             f"torch {e['torch']}, CUDA {e['cuda']}, cuDNN {e['cudnn']}, nnU-Net {e['nnunetv2']}, SimpleITK: "
             f"{'nibabel stand-in (benchmarks/sitk_standin)' if e['sitk_standin'] else 'real'}. "
             f"Phantom {e['size']['shape']} (z, y, x), nnU-Net's default plans. {report['args']['steps']} timed "
             f"`train_step` calls after {report['args']['warmup']} warm-up ones on {report['args']['batches']} real "
             f"augmented batches (data loading excluded), AMP as the trainer runs it, schedule at 50 %, "
             f"{compile_text}. Inference: one forward pass, batch 1, deep supervision off, median of 3. Ratios: to "
             f"{REFERENCE} (nnU-Net+pL) of the same configuration. Total {report.get('minutes', 0):.1f} min.", "",
             "| trainer | configuration | status | batch x patch | compiled | losses finite | step (s) | "
             "step / Budget | peak memory (GiB) | memory / Budget | grad scale start -> end | inference (s) | "
             "inference / Budget |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["steps"]:
        shape = f"{r['batch_size']} x {r['patch_size']}" if r.get("batch_size") else "-"
        status = r["status"] if r["status"] == "ok" else f"{r['status']}: {r.get('error', '')}"
        scale = (f"{r['grad_scale_start']:g} -> {r['grad_scale_end']:g}"
                 if r.get("grad_scale_start") is not None and r.get("grad_scale_end") is not None else "-")
        finite = "-" if "finite" not in r else ("yes" if r["finite"] else "NO")
        compiled = {True: "yes", False: "no"}.get(r.get("compiled"), "-")
        lines.append(f"| {r['trainer']} | {r['configuration']} | {status} | {shape} | {compiled} | {finite} | "
                     f"{_f(r.get('step_s'), '.3f')} | {_f(r.get('step_ratio'), '.2f')} | "
                     f"{_f(r.get('peak_memory_gib'), '.2f')} | {_f(r.get('memory_ratio'), '.2f')} | {scale} | "
                     f"{_f(r.get('inference_s'), '.4f')} | {_f(r.get('inference_ratio'), '.2f')} |")
    lines += ["", "Round trips through the stock CLI (`nnUNetv2_train` 1 epoch, `--c` to 2 epochs, "
              "`nnUNetv2_predict`, `nnunet_weak_evaluate`-style dense evaluation on the held-out phantom cases; "
              f"{report['args']['round_trip_iters']} iterations per epoch):", "",
              "| trainer | status | compiled | train (s) | resume (s) | epochs after resume | predict (s) | "
              "mean Dice |", "|---|---|---|---|---|---|---|---|"]
    for r in report["round_trips"]:
        status = r["status"] if r["status"] == "ok" else f"{r['status']}: {r.get('error', '')}"
        compiled = {True: "yes", False: "no"}.get(r.get("compile"), "-")
        lines.append(f"| {r['trainer']} | {status} | {compiled} | "
                     f"{_f(r.get('train_s'), '.1f')} | {_f(r.get('resume_s'), '.1f')} | "
                     f"{r.get('epochs_after_resume', '-')} | {_f(r.get('predict_s'), '.1f')} | "
                     f"{_f(r.get('mean_dice'), '.3f')} |")
    lines += ["", "Reproduce: `" + report["command"] + "`", ""]
    return "\n".join(lines)


def environment(device_name: str, standin: bool, size: dict) -> dict:
    import nnunetv2  # noqa: F401
    import torch
    from importlib.metadata import version

    cuda = device_name == "cuda"
    return {"device_name": torch.cuda.get_device_name(0) if cuda else f"CPU ({platform.processor() or 'cpu'})",
            "torch": torch.__version__, "cuda": torch.version.cuda if cuda else None,
            "cudnn": torch.backends.cudnn.version() if cuda else None, "nnunetv2": version("nnunetv2"),
            "sitk_standin": standin, "size": size, "cpu_count": os.cpu_count()}


def write(report: dict, out: str) -> None:
    os.makedirs(out, exist_ok=True)
    add_ratios(report["steps"])
    with open(os.path.join(out, "gpu_check.json"), "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(out, "gpu_check.md"), "w") as f:
        f.write(markdown(report))


def parse_trainers(items) -> list:
    """``NAME`` (the configurations it supports) or ``NAME:CONFIGURATION`` -> [(name, configuration)]."""
    known = dict(TRAINERS)
    pairs = []
    for item in items:
        name, _, configuration = item.partition(":")
        pairs += [(name, c) for c in ((configuration,) if configuration else known.get(name, BOTH))]
    return pairs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for gpu_check.md / gpu_check.json")
    parser.add_argument("--workdir", default=None, help="nnU-Net folders (default: <out>/work); a finished "
                        "preparation there of the same size is reused")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--tiny", action="store_true", help="tiny phantom, few steps (the CPU test)")
    parser.add_argument("--trainers", nargs="+", default=None, metavar="TRAINER[:CONFIGURATION]",
                        help="default: every trainer we ship, on each configuration it supports")
    parser.add_argument("--round-trips", nargs="*", default=None, metavar="TRAINER",
                        help=f"default: {' '.join(ROUND_TRIPS)}; none with an empty list")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 6, tiny 1)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed first steps (default 2, tiny 1)")
    parser.add_argument("--batches", type=int, default=2, help="distinct real batches the steps cycle through")
    parser.add_argument("--round-trip-iters", type=int, default=None, help="iterations per epoch (default 10, "
                        "tiny 2)")
    parser.add_argument("--nproc", type=int, default=None, help="processes for preprocessing (default: cores)")
    parser.add_argument("--deadline-s", type=float, default=None, help="start nothing after this many seconds")
    parser.add_argument("--configurations", nargs="+", default=list(BOTH), choices=list(BOTH),
                        help="configurations to plan and check (default both)")
    parser.add_argument("--compile", action="store_true", help="step checks with nnU-Net's torch.compile default "
                        "(on for CUDA where the trainer allows it; the first warm-up step compiles) instead of off")
    parser.add_argument("--sitk-standin", action="store_true", help="use the nibabel stand-in for SimpleITK "
                        "even where SimpleITK is installed (what a GPU machine without it runs)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    standin = use_standin_if_needed(args.sitk_standin)
    sys.path.insert(0, HERE)
    tiny = args.tiny
    args.steps = args.steps or (1 if tiny else 6)
    args.warmup = args.warmup if args.warmup is not None else (1 if tiny else 2)
    args.round_trip_iters = args.round_trip_iters or (2 if tiny else 10)
    nproc = args.nproc or (1 if tiny else max(1, os.cpu_count() or 1))
    size = SIZES["tiny" if tiny else "full"]
    out = os.path.abspath(args.out)
    workdir = os.path.abspath(args.workdir or os.path.join(out, "work"))
    os.makedirs(out, exist_ok=True)
    log = os.path.join(out, "gpu_check.log")

    import torch
    if args.device == "cuda":
        if not torch.cuda.is_available():
            print("[gpu_check] no CUDA device: run with --device cpu (and --tiny) here", file=sys.stderr)
            return 2
        torch.backends.cudnn.benchmark = True          # as nnUNetv2_train sets it
    report = {"environment": environment(args.device, standin, size), "args": vars(args), "steps": [],
              "round_trips": [], "command": "python benchmarks/gpu_check.py " + " ".join(argv or sys.argv[1:])}
    print(f"[gpu_check] {report['environment']}", flush=True)

    def late() -> bool:
        return args.deadline_s is not None and time.perf_counter() - started > args.deadline_s

    env = prepare(workdir, size, nproc, log, tuple(args.configurations))
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        os.environ[name] = env[name]
    os.environ["nnUNet_n_proc_DA"] = "0"       # step checks draw their few batches in this process
    if args.compile:
        os.environ.pop("nnUNet_compile", None)  # nnU-Net's default: compile on CUDA, where the trainer allows it
    else:
        os.environ["nnUNet_compile"] = "f"
    print(f"[gpu_check] data ready after {time.perf_counter() - started:.0f} s", flush=True)

    pairs = [(t, c) for t, c in parse_trainers(args.trainers or [t for t, _ in TRAINERS])
             if c in args.configurations]
    for name, configuration in pairs:
        row = {"trainer": name, "configuration": configuration}
        if late():
            row.update(status="not run", error="deadline")
        else:
            try:
                row.update(step_check(name, configuration, args.device, args.steps, args.warmup, args.batches))
            except Exception as error:  # the check reports every trainer, whatever one of them does
                row.update(status="failed", error=one_line(error))
                traceback.print_exc()
        report["steps"].append(row)
        print(f"[gpu_check] {name} {configuration}: {row['status']} "
              f"{row.get('step_s', 0):.3f} s/step {row.get('peak_memory_gib', 0):.2f} GiB {row.get('error', '')}",
              flush=True)
        report["minutes"] = (time.perf_counter() - started) / 60
        write(report, out)

    for trainer in (ROUND_TRIPS if args.round_trips is None else args.round_trips):
        row = {"trainer": trainer, "configuration": "2d"}
        if late():
            row.update(status="not run", error="deadline")
        else:
            try:
                row = round_trip(trainer, env, args.device, args.round_trip_iters, workdir, log)
            except Exception as error:
                row.update(status="failed", error=one_line(error))
                traceback.print_exc()
        report["round_trips"].append(row)
        print(f"[gpu_check] round trip {trainer}: {row['status']} {row.get('mean_dice', '')} "
              f"{row.get('error', '')}", flush=True)
        report["minutes"] = (time.perf_counter() - started) / 60
        write(report, out)
    print(markdown(report))
    failed = [r for r in report["steps"] + report["round_trips"] if r["status"] == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
