"""``nnunet_weak_benchmark``: which trainer should I use on my data? Trains each trainer K times through the stock
``nnUNetv2_train`` at one budget, predicts the fold's validation cases with ``nnUNetv2_predict``, scores them
against dense reference labels and writes a table with runs, mean +- sd over runs, paired comparisons against
the first trainer (bootstrap over patients and runs) and a bar chart.

    nnunet_weak_benchmark -d 801 --trainers nnUNetTrainerBudget nnUNetTrainerDynamicMix --runs 3

The dataset must be planned and preprocessed in your nnU-Net folders (``nnUNet_raw`` / ``nnUNet_preprocessed``);
references default to ``$nnUNet_raw/<dataset>/labelsTr_dense`` (what ``nnunet_weak_simulate_*`` and the
conversions keep), ``--ref`` names another folder. Everything the benchmark writes goes under ``-o``: models under
``work/run_K/nnUNet_results`` (your ``nnUNet_results`` is not touched), predictions, the per-case evaluation of
every run (``per_case/``) and ``benchmark.md`` / ``.json`` / ``.png``. Run k is seeded ``NNW_SEED=k``; a run
whose model exists is reused (scored again), ``--retrain`` trains it anew. Interrupted benchmarks continue: an
interrupted run starts again, or with ``--resume`` continues from its last checkpoint.
"""
import argparse
import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
from batchgenerators.utilities.file_and_folder_operations import load_json

from nnunet_weak.evaluation.evaluate_dense import evaluate_folder, json_ready
from nnunet_weak.evaluation.paired import compare, format_comparison, run_summary
from nnunet_weak.experiment import steps
from nnunet_weak.planning.pairing_io import DEFAULT_PLANS
from nnunet_weak.utilities import timing_file
from nnunet_weak.utilities.checkpoint_io import load_checkpoint_file
from nnunet_weak.utilities.env import require_env
from nnunet_weak.utilities.errors import NNWError

RESULTS = "benchmark"          # benchmark.md / .json / .png in the output folder
RESUMED_FILE = "nnunet_weak_resumed.json"   # in a fold folder: the epochs its run was resumed at
SETUP_KEYS = ("dataset", "configuration", "fold", "plans", "epochs", "iters", "reference")


def dataset_classes(dataset_json: dict, where: str) -> Dict[str, int]:
    """{class name: value} scored by the benchmark: every label except background and ignore."""
    classes = {}
    for name, value in dataset_json["labels"].items():
        if name in ("background", "ignore"):
            continue
        if isinstance(value, (list, tuple)):
            raise NNWError(f"{where}: label {name!r} is a region; the benchmark scores integer labels only.")
        classes[name] = int(value)
    if not classes:
        raise NNWError(f"{where} declares no class besides background / ignore; nothing to score.")
    return classes


def validation_cases(preprocessed: str, data_folder: str, fold: int) -> List[str]:
    """The fold's validation cases: ``splits_final.json``, or the split nnU-Net's first training will write."""
    splits_file = os.path.join(preprocessed, "splits_final.json")
    if os.path.isfile(splits_file):
        splits = load_json(splits_file)
    else:
        from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
        from nnunetv2.utilities.crossval_split import generate_crossval_split
        identifiers = sorted(infer_dataset_class(data_folder).get_identifiers(data_folder))
        splits = generate_crossval_split(identifiers, seed=12345, n_splits=5)
    if fold >= len(splits):
        raise NNWError(f"{splits_file} has {len(splits)} folds; fold {fold} would be a random split nnU-Net does "
                       f"not keep. Pass -f 0..{len(splits) - 1}.")
    return sorted(splits[fold]["val"])


def link_inputs(raw: str, dataset_json: dict, cases: Sequence[str], folder: str) -> str:
    """A folder of symlinks to the cases' images (every channel), as ``nnUNetv2_predict -i``."""
    os.makedirs(folder, exist_ok=True)
    ending = dataset_json["file_ending"]
    channels = dataset_json.get("channel_names", dataset_json.get("modality", {"0": ""}))
    for case in cases:
        for channel in channels:
            name = f"{case}_{int(channel):04d}{ending}"
            src = os.path.join(raw, "imagesTr", name)
            if not os.path.isfile(src):
                raise NNWError(f"{src} not found: the benchmark predicts the fold's validation cases from "
                               f"imagesTr of the raw dataset.")
            dst = os.path.join(folder, name)
            if not os.path.lexists(dst):
                os.symlink(src, dst)
    return folder


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")


@dataclass(frozen=True)
class Model:
    """A fold as ``nnUNetv2_train`` / ``nnUNetv2_predict`` name it, plus the extra arguments to train it with
    (e.g. ``-p PLANS``) and to predict it with (e.g. ``--disable_tta -p PLANS``)."""
    dataset_id: int
    configuration: str
    fold: int
    trainer: str
    fold_folder: str
    predict_args: Sequence[str] = ()
    train_args: Sequence[str] = ()


def plans_args(plans: str) -> List[str]:
    """``nnUNetv2_train`` / ``_predict``'s ``-p PLANS``, none for nnU-Net's default plans."""
    return [] if plans == DEFAULT_PLANS else ["-p", plans]


def train_fold(model: Model, env: Dict[str, str], log: str, retrain: bool = False, device: Optional[str] = "cpu",
               commands: Optional[List[str]] = None, what: Optional[str] = None, epochs: Optional[int] = None,
               resume: bool = False, on_start: Optional[Callable[[str], None]] = None) -> \
        Optional[float]:
    """Train the model's fold with ``nnUNetv2_train`` unless its ``checkpoint_final.pth`` exists (``retrain``:
    train anyway). A fold folder that is retrained or unfinished is removed first: callers pass folds under their
    own results folder only. ``resume``: an unfinished fold that holds a checkpoint is continued with ``--c`` from
    the epoch that checkpoint reached instead (nnU-Net restores network, optimiser and epoch; the random stream
    starts again there, so the run is not bitwise the uninterrupted one), and that epoch is added to the fold's
    :data:`RESUMED_FILE`. ``on_start(fold_folder)`` runs just before ``nnUNetv2_train``. With ``epochs``, one
    progress line per epoch. Wall seconds (of this call's training only), or None when reused."""
    what = what or f"{model.trainer} on {model.dataset_id}"
    if not retrain and os.path.isfile(os.path.join(model.fold_folder, "checkpoint_final.pth")):
        print(f"[benchmark] {what}: reusing {model.fold_folder}", flush=True)
        return None
    start_epoch = resumable_epoch(model.fold_folder) if resume and not retrain else None
    if start_epoch is None and os.path.isdir(model.fold_folder):
        shutil.rmtree(model.fold_folder)
    os.makedirs(model.fold_folder, exist_ok=True)
    if start_epoch is not None:
        resumed = resumed_at(model.fold_folder) + [start_epoch]
        with open(os.path.join(model.fold_folder, RESUMED_FILE), "w") as f:
            json.dump(resumed, f)
    if on_start is not None:
        on_start(model.fold_folder)
    print(f"[benchmark] {'training' if start_epoch is None else f'resuming at epoch {start_epoch}:'} {what}",
          flush=True)
    progress = steps.EpochProgress(epochs, "  ", done=start_epoch or 0) if epochs else None
    return steps.train(model.dataset_id, model.configuration, model.fold, model.trainer, env, log,
                       list(model.train_args) + ([] if start_epoch is None else ["--c"]), on_line=progress,
                       device=device, commands=commands)


def resumed_at(fold_folder: str) -> List[int]:
    """The epochs a fold's run was continued at by ``train_fold(resume=True)``; empty for an uninterrupted run."""
    path = os.path.join(fold_folder, RESUMED_FILE)
    return load_json(path) if os.path.isfile(path) else []


def resumed_note(name: str, epochs: Sequence[int]) -> str:
    """A table's line on a run continued with ``--resume``: where, and why it still counts as a run."""
    return (f"Resumed: {name} was interrupted and continued (--resume, nnUNetv2_train --c) at epoch "
            f"{', '.join(map(str, epochs))}; its random stream started again there, so it is an independent run "
            f"but not bitwise the uninterrupted one.")


def resumable_epoch(fold_folder: str) -> Optional[int]:
    """The epoch an unfinished fold continues at under ``nnUNetv2_train --c``: that of checkpoint_latest.pth, else
    checkpoint_best.pth (nnU-Net's order); None without either. A checkpoint torch cannot read is named."""
    for name in ("checkpoint_latest.pth", "checkpoint_best.pth"):
        path = os.path.join(fold_folder, name)
        if os.path.isfile(path):
            fix = ("Delete it (--resume then continues from the next of checkpoint_latest / checkpoint_best.pth "
                   "that exists) or leave out --resume to train the run from the start.")
            return int(load_checkpoint_file(path, purpose="--resume", fix=fix)["current_epoch"])
    return None


@dataclass(frozen=True)
class Reference:
    """Dense reference labels: their folder, the classes to score ({name: value}) and the file ending."""
    folder: str
    classes: Dict[str, int]
    file_ending: str = ".nii.gz"


def predict_and_score(model: Model, inputs: str, pred: str, n_expected: int, reference: Reference,
                      per_case_json: str, env: Dict[str, str], log: str, device: Optional[str] = "cpu",
                      commands: Optional[List[str]] = None) -> dict:
    """Predict ``inputs`` into ``pred`` (replaced) with ``nnUNetv2_predict``, score against the reference
    (per-case results in ``per_case_json`` and its .md) and return a row's scores and costs: n_cases, dice and
    hd95 per class, their means, empty predictions, s/iter and precision from the fold's timing file, s/case."""
    if os.path.isdir(pred):
        shutil.rmtree(pred)
    print(f"[benchmark] predicting {n_expected} validation cases", flush=True)
    seconds = steps.predict(inputs, pred, model.dataset_id, model.configuration, model.fold, model.trainer, env, log,
                            list(model.predict_args), device=device, commands=commands)
    result = evaluate_folder(pred, reference.folder, reference.classes, reference.file_ending,
                             output_json=per_case_json, output_md=per_case_json[:-len(".json")] + ".md",
                             overwrite=True, allow_missing=True)   # the reference also holds other folds' cases
    if result["n_cases"] != n_expected:
        raise NNWError(f"{pred}: {result['n_cases']} predictions scored, {n_expected} expected")
    classes = reference.classes
    return {"n_cases": result["n_cases"], "dice": {c: result["mean"][c]["dice"] for c in classes},
            "hd95": {c: result["mean"][c]["hd95"] for c in classes},
            "mean_dice": result["mean_over_classes"]["dice"], "mean_hd95": result["mean_over_classes"]["hd95"],
            "empty_predictions": result["empty_predictions"],
            "sec_per_iter": timing_file.train_seconds_per_iteration(model.fold_folder),
            "precision": timing_file.train_precision(model.fold_folder), "sec_per_case": seconds / n_expected}


class Benchmark:
    """One output folder: its setup, the runs it holds and their report."""

    def __init__(self, args):
        self.args = args
        require_env("nnUNet_raw", "to find the dataset's images and references")
        require_env("nnUNet_preprocessed", "to find the dataset's plans")
        from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
        try:
            self.dataset = maybe_convert_to_dataset_name(args.dataset)
        except RuntimeError:
            raise NNWError(f"dataset {args.dataset} not found in $nnUNet_raw / $nnUNet_preprocessed; convert and "
                           f"preprocess it first (nnUNetv2_plan_and_preprocess -d {args.dataset}).") from None
        self.dataset_id = int(self.dataset[len("Dataset"):len("Dataset") + 3])
        self.raw = os.path.join(os.environ["nnUNet_raw"], self.dataset)
        self.preprocessed = os.path.join(os.environ["nnUNet_preprocessed"], self.dataset)
        plans_file = os.path.join(self.preprocessed, f"{args.plans}.json")
        if not os.path.isfile(plans_file):
            raise NNWError(f"{plans_file} not found: plan and preprocess the dataset first "
                           f"(nnUNetv2_plan_and_preprocess -d {self.dataset_id} -c 2d).")
        plans = load_json(plans_file)
        if args.configuration not in plans["configurations"]:
            raise NNWError(f"{plans_file} has no configuration {args.configuration!r} (it has "
                           f"{', '.join(plans['configurations'])}); pass -c, or add the CPU-sized ones with "
                           f"nnunet_weak_add_lite -d {self.dataset_id}.")
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
        config = PlansManager(plans).get_configuration(args.configuration)
        data_folder = os.path.join(self.preprocessed, config.data_identifier)
        if not os.path.isdir(data_folder):
            raise NNWError(f"{data_folder} not found: configuration {args.configuration!r} is planned but not "
                           f"preprocessed; run nnUNetv2_plan_and_preprocess -d {self.dataset_id} -c "
                           f"{args.configuration} (lite configurations share 2d / 3d_fullres's data).")
        self.dataset_json = load_json(os.path.join(self.preprocessed, "dataset.json"))
        self.classes = dataset_classes(self.dataset_json, os.path.join(self.preprocessed, "dataset.json"))
        self.reference = os.path.abspath(args.ref or os.path.join(self.raw, "labelsTr_dense"))
        if not os.path.isdir(self.reference):
            raise NNWError(f"reference folder {self.reference} not found: pass --ref with the dense labels of the "
                           f"validation cases (the scribble labels in labelsTr are no reference).")
        ending = self.dataset_json["file_ending"]
        val = validation_cases(self.preprocessed, data_folder, args.fold)
        self.cases = [c for c in val if os.path.isfile(os.path.join(self.reference, c + ending))]
        self.unscored = sorted(set(val) - set(self.cases))
        if not self.cases:
            raise NNWError(f"none of the {len(val)} validation cases of fold {args.fold} has a reference in "
                           f"{self.reference}; pass --ref with their dense labels.")
        self.out = os.path.abspath(args.output or
                                   f"nnunet_weak_benchmark_{self.dataset}_{args.configuration}_fold{args.fold}")
        self.work = os.path.join(self.out, "work")
        self.setup = {"dataset": self.dataset, "configuration": args.configuration, "fold": args.fold,
                      "plans": args.plans, "epochs": args.epochs, "iters": args.iters, "reference": self.reference}
        self.batch_size, self.patch_size = config.batch_size, list(config.patch_size)
        self.rows = self._claim_output()
        self.commands: List[str] = []   # what this call ran, for the report

    def _claim_output(self) -> List[dict]:
        """Rows of an earlier call with the same setup (continued); refuse a folder holding anything else."""
        path = os.path.join(self.out, RESULTS + ".json")
        if os.path.isfile(path):
            saved = load_json(path)
            earlier = saved.get("setup", {})
            differs = [f"{k} {earlier.get(k)!r} there, {self.setup[k]!r} now" for k in SETUP_KEYS
                       if earlier.get(k) != self.setup[k]]
            if differs:
                raise NNWError(f"{self.out} holds a benchmark of another setup ({'; '.join(differs)}); pass "
                               f"another -o.")
            return saved["rows"]
        if os.path.isdir(self.out) and os.listdir(self.out):
            raise NNWError(f"{self.out} exists and holds files this benchmark did not write; pass another -o "
                           f"(it never deletes what it did not write).")
        if os.path.exists(self.out) and not os.path.isdir(self.out):
            raise NNWError(f"{self.out} is a file, not a folder; pass another -o.")
        os.makedirs(self.out, exist_ok=True)
        return []

    def environment(self, run: int) -> Dict[str, str]:
        results = os.path.join(self.work, f"run_{run}", "nnUNet_results")
        os.makedirs(results, exist_ok=True)
        env = dict(os.environ)
        if self.args.device == "cpu":   # augmentation in the training process: workers would compete for the cores
            env.setdefault("nnUNet_n_proc_DA", "0")
        env.setdefault("nnUNet_compile", "f")
        env.update({"nnUNet_results": results, "NNW_NUM_EPOCHS": str(self.args.epochs),
                    "NNW_ITERS_PER_EPOCH": str(self.args.iters), "NNW_VAL_ITERS_PER_EPOCH": str(self.args.val_iters),
                    "NNW_SKIP_FINAL_VALIDATION": "1", "NNW_SEED": str(run), "PYTHONUNBUFFERED": "1"})
        return env

    def run_one(self, trainer: str, run: int) -> dict:
        args, env = self.args, self.environment(run)
        log = os.path.join(self.work, "benchmark.log")
        fold_folder = os.path.join(steps.model_folder(env, self.dataset, trainer, args.configuration, args.plans),
                                   f"fold_{args.fold}")
        model = Model(self.dataset_id, args.configuration, args.fold, trainer, fold_folder,
                      ["--disable_tta", *plans_args(args.plans)], plans_args(args.plans))
        train_seconds = train_fold(model, env, log, args.retrain, args.device, self.commands,   # under work/
                                   f"{trainer}, run {run}", args.epochs, resume=args.resume)
        inputs = link_inputs(self.raw, self.dataset_json, self.cases, os.path.join(self.work, "inputs"))
        per_case = os.path.join(self.out, "per_case", f"{slug(trainer)}__run{run}_dense_eval.json")
        os.makedirs(os.path.dirname(per_case), exist_ok=True)
        scores = predict_and_score(
            model, inputs, os.path.join(self.work, "predictions", f"{trainer}__run{run}"), len(self.cases),
            Reference(self.reference, self.classes, self.dataset_json["file_ending"]), per_case, env, log,
            device=args.device, commands=self.commands)
        return {"trainer": trainer, "run": run, **scores, "train_wall_s": train_seconds,
                "resumed_at": resumed_at(fold_folder),
                "per_case": os.path.relpath(per_case, self.out)}

    def run(self) -> str:
        text = ""
        for run in range(1, self.args.runs + 1):   # run k of every trainer before run k + 1: a stopped
            for trainer in self.args.trainers:     # benchmark keeps comparable runs
                start = time.perf_counter()
                row = self.run_one(trainer, run)
                self.rows = [r for r in self.rows if (r["trainer"], r["run"]) != (trainer, run)] + [row]
                print(f"[benchmark] {trainer}, run {run}: mean Dice {row['mean_dice']:.3f}, mean HD95 "
                      f"{fmt(row['mean_hd95'], 2)} ({(time.perf_counter() - start) / 60:.1f} min)", flush=True)
                text = self.report()
        return text

    # ------------------------------------------------------------------ report
    def _rows_of(self, trainer: str) -> List[dict]:
        return sorted((r for r in self.rows if r["trainer"] == trainer and r["run"] <= self.args.runs),
                      key=lambda r: r["run"])

    def report(self) -> str:
        trainers = [t for t in self.args.trainers if self._rows_of(t)]
        names = list(self.classes)
        baseline = trainers[0]
        base_time = _median([r["sec_per_iter"] for r in self._rows_of(baseline)])
        lines = [f"# {self.dataset}, fold {self.args.fold}: {len(self.cases)} validation cases, "
                 f"{self.args.configuration}", "",
                 f"Budget: {self.args.epochs} epochs x {self.args.iters} iterations = "
                 f"{self.args.epochs * self.args.iters} iterations per run (batch {self.batch_size}, patch "
                 f"{self.patch_size}), -device {self.args.device}. Reference: `{self.reference}`."
                 + (f" {len(self.unscored)} validation case(s) without a reference are not scored: "
                    f"{', '.join(self.unscored)}." if self.unscored else ""),
                 "Dice and HD95 (mm) per case and class against the dense reference, averaged over cases (empty "
                 "predictions: Dice 0, HD95 excluded). sec/iter: median training epoch / iterations.", "",
                 "| trainer | run | " + " | ".join(f"Dice {n}" for n in names) +
                 " | mean Dice | mean HD95 | sec/iter | precision |",
                 "|---|---|" + "---|" * len(names) + "---|---|---|---|"]
        for t in trainers:
            for r in self._rows_of(t):
                lines.append(f"| {t} | {r['run']} | " + " | ".join(fmt(r["dice"][n]) for n in names) +
                             f" | **{fmt(r['mean_dice'])}** | {fmt(r['mean_hd95'], 2)} | "
                             f"{fmt(r['sec_per_iter'])} | {r.get('precision') or '-'} |")
        lines += ["", "Over runs (mean +- sd of each run's mean over cases):", "",
                  f"| trainer | runs | mean Dice | mean HD95 | sec/iter (median) | cost vs {baseline} |",
                  "|---|---|---|---|---|---|"]
        for t in trainers:
            rs = self._rows_of(t)
            seconds = _median([r["sec_per_iter"] for r in rs])
            ratio = fmt(seconds / base_time, 2) + "x" if seconds and base_time else "-"
            lines.append(f"| {t} | {len(rs)} | **{mean_sd([r['mean_dice'] for r in rs])}** | "
                         f"{mean_sd([r['mean_hd95'] for r in rs], 2)} | {fmt(seconds)} | {ratio} |")
        comparisons = {}
        for t in trainers[1:]:
            bases = [load_json(os.path.join(self.out, r["per_case"])) for r in self._rows_of(baseline)]
            methods = [load_json(os.path.join(self.out, r["per_case"])) for r in self._rows_of(t)]
            rows = compare(bases, methods, self.args.resamples)
            summaries = {"baseline": run_summary(bases), "method": run_summary(methods)}
            comparisons[t] = {"baseline": baseline, "rows": rows, "runs": summaries}
            block = format_comparison(rows, summaries, (baseline, t), self.args.resamples, (len(bases), len(methods)))
            lines += ["", "#" + block[0]] + block[1:]
        lines += ["\n" + resumed_note(f"{r['trainer']}, run {r['run']}", r["resumed_at"])
                  for t in trainers for r in self._rows_of(t) if r.get("resumed_at")]
        if any(len(self._rows_of(t)) < 3 for t in trainers):
            lines += ["", "Fewer than 3 runs per trainer: a smoke test, not a decision (pass --runs 3)."]
        lines += ["", "Reproduce:", "", "```", self.args.invocation, "```", "",
                  "Commands run by this call (in order; $OUT is the output folder):", "", "```"] + \
                 [c.replace(self.out, "$OUT") for c in self.commands] + ["```", ""]
        text = "\n".join(lines)
        prefix = os.path.join(self.out, RESULTS)
        with open(prefix + ".md", "w") as f:
            f.write(text)
        with open(prefix + ".json", "w") as f:
            json.dump(json_ready({"setup": self.setup, "rows": self.rows, "comparisons": comparisons,
                                  "unscored_cases": self.unscored, "invocation": self.args.invocation}), f,
                      indent=2, allow_nan=False)
        self._chart(trainers, prefix + ".png")
        return text

    def _chart(self, trainers: List[str], path: str) -> None:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(8, 0.5 * len(trainers) + 1.2))
        for i, t in enumerate(trainers):
            values = [r["mean_dice"] for r in self._rows_of(t)]
            ax.barh(i, np.mean(values), color="tab:blue", alpha=0.6)
            ax.plot(values, [i] * len(values), "k.", markersize=6)
            ax.text(np.mean(values) + 0.01, i, f"{np.mean(values):.3f}", va="center", fontsize=8)
        ax.set_yticks(range(len(trainers)), trainers, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 1.05)
        ax.set_xlabel(f"mean Dice over classes, {self.dataset} fold {self.args.fold} (bar: mean over runs, dots: runs)")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)


def fmt(value, digits: int = 3) -> str:
    """A number for a table cell; "-" for None or NaN."""
    return "-" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.{digits}f}"


def _median(values) -> Optional[float]:
    values = [v for v in values if v]
    return float(np.median(values)) if values else None


def mean_sd(values, digits: int = 3) -> str:
    """Mean +- sd of the defined values (sd with one degree of freedom, left out for one value); "-" for none."""
    values = [v for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))]
    if not values:
        return "-"
    sd = f" +- {np.std(values, ddof=1):.{digits}f}" if len(values) > 1 else ""
    return f"{np.mean(values):.{digits}f}{sd}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="nnunet_weak_benchmark", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-d", dest="dataset", required=True, help="dataset id or name")
    parser.add_argument("--trainers", nargs="+", required=True,
                        help="trainer class names; the first is the baseline of the paired comparisons "
                             "(e.g. nnUNetTrainerBudget, nnU-Net+pL)")
    parser.add_argument("-c", dest="configuration", default="2d", help="configuration (default 2d)")
    parser.add_argument("-f", dest="fold", type=int, default=0)
    parser.add_argument("-p", dest="plans", default="nnUNetPlans")
    parser.add_argument("--runs", type=int, default=3, help="independent runs per trainer, seeded 1..K (default 3)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--iters", type=int, default=50, help="training iterations per epoch")
    parser.add_argument("--val-iters", type=int, default=5, help="pseudo-Dice iterations per epoch")
    parser.add_argument("--ref", default=None, help="folder of dense reference labels "
                                                    "(default $nnUNet_raw/<dataset>/labelsTr_dense)")
    parser.add_argument("-o", dest="output", default=None,
                        help="output folder (default ./nnunet_weak_benchmark_<dataset>_<configuration>_fold<F>)")
    parser.add_argument("-device", default=None, choices=("cpu", "cuda"),
                        help="training and prediction device (default: cuda when available)")
    parser.add_argument("--retrain", action="store_true", help="train runs whose model exists again")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run from its last checkpoint (nnUNetv2_train --c) instead of "
                             "training it again; with fewer than 50 epochs set NNW_SAVE_EVERY so that one is saved")
    parser.add_argument("--resamples", type=int, default=10000, help="bootstrap resamples")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.epochs < 1 or args.iters < 1:
        raise NNWError("--runs, --epochs and --iters must be at least 1")
    if len(set(args.trainers)) != len(args.trainers):
        raise NNWError(f"--trainers names a trainer twice ({' '.join(args.trainers)}); use --runs for repeats.")
    if args.device is None:
        import torch
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.invocation = "nnunet_weak_benchmark " + " ".join(
        f'"{a}"' if " " in a else a for a in (argv if argv is not None else sys.argv[1:]))
    print(Benchmark(args).run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
