"""ACDC / MSCMRseg benchmark: train trainers at one common iteration budget, predict the validation fold with
``nnUNetv2_predict``, evaluate against the dense reference labels, and write a results table (markdown + JSON)
and a bar chart; ACDC tables also list the published fold-0 numbers. One table holds rows validated on one data
set (ACDC fold 0, or the 5 dense MSCMRseg validation subjects).

    python benchmarks/acdc_benchmark.py --source ../shared/data \\
        --run 802:nnUNetTrainerBudget:"nnU-Net, dense labels (upper bound)" \\
        --run 801:nnUNetTrainerBudget:"nnU-Net+pL" --run 801:nnUNetTrainerPCE:pCE

Each ``--run`` is DATASET_ID:TRAINER[:LABEL]; ``--runs K`` trains each K times (independent runs seeded
NNW_SEED=1..K, rows "LABEL, run k", summarised as mean +- sd over runs; ``--last-run J`` makes only runs 1..J
now, ``--first-run I --append`` adds runs I..K to a saved report later, e.g. on a machine that no longer holds the
earlier runs' models). Datasets are converted
(nnunet_weak.dataset_conversion) and planned /
preprocessed (``-c 2d`` + ``nnunet_weak_add_lite``) when missing in the work folder; a run whose
``checkpoint_final.pth`` exists is not trained again (``--retrain`` forces it); an interrupted one is trained
again, or continued from its last checkpoint with ``--resume`` (``--save-every 1`` saves one each epoch, for runs
longer than a sitting). Only the stock nnU-Net commands
train and predict; the budget reaches every trainer through NNW_NUM_EPOCHS / NNW_ITERS_PER_EPOCH.
"""
import argparse
import json
import os
import platform
import re
import shutil
import sys
import time

import numpy as np
from batchgenerators.utilities.file_and_folder_operations import load_json

from nnunet_weak.annotation.nnunet_io import acdc_fold_patients, acdc_patient
from nnunet_weak.dataset_conversion import conversion_module
from nnunet_weak.evaluation.evaluate_dense import json_ready
from nnunet_weak.experiment import steps
from nnunet_weak.experiment.benchmark import (Model, Reference, fmt, link_inputs, mean_sd, plans_args,
                                              predict_and_score, resumed_at, resumed_note, train_fold)
from nnunet_weak.planning.pairing_io import DEFAULT_PLANS, aux_plans_name
from nnunet_weak.training.modelmix_export import AUX_TRAINER
from nnunet_weak.utilities import cpu_bf16, timing_file
from nnunet_weak.utilities.errors import NNWError

ROW_MARKER = "nnunet_weak_benchmark_row.json"  # in a fold folder: which table row started its run

HERE = os.path.dirname(os.path.abspath(__file__))
CONVERSIONS = {
    801: ("Dataset801_ACDCScribble", "ACDC"),
    802: ("Dataset802_ACDCDense", "ACDC"),
    803: ("Dataset803_MSCMRScribble", "MSCMRseg"),
    804: ("Dataset804_ACDCPoints", "ACDC"),
    805: ("Dataset805_ACDCSemi10", "ACDC"),
    806: ("Dataset806_ACDCSemi20", "ACDC"),
    814: ("Dataset814_ACDCFewScribble", "ACDC"),
    815: ("Dataset815_MSCMRFewScribble", "MSCMRseg"),
}
CLASSES = {"RV": 1, "MYO": 2, "LV": 3}
# the sec/iter ratio's reference: nnUNetTrainer under the benchmark budget (first row of that trainer)
DEFAULT_COST_REFERENCE = "nnUNetTrainerBudget"
MODELMIX_TRAINER = "nnUNetTrainerModelMix"
# Published predictions on ACDC fold 0 (test = patients 001-020, 40 frames), 3D Dice per class and HD95 in mm,
# means over frames and classes, as given in the benchmark issue (PCLMix paper and its released predictions).
# Listed only under tables whose rows are all validated on ACDC and that hold a scribble-trained row.
PUBLISHED = [
    ("UNet, full supervision (published)", 0.915, 5.64),
    ("PCLMix (published)", 0.897, 3.11),
    ("TriMix (published)", 0.894, 7.02),
    ("DMPLS (published)", 0.884, 13.03),
    ("pCE (published)", 0.619, 181.7),
]


def parse_run(text: str) -> dict:
    parts = text.split(":", 2)
    if len(parts) < 2 or not parts[0].isdigit():
        raise NNWError(f"--run {text!r}: expected DATASET_ID:TRAINER[:LABEL], e.g. 801:nnUNetTrainerPCE:pCE")
    dataset_id = int(parts[0])
    if dataset_id not in CONVERSIONS:
        raise NNWError(f"--run {text!r}: dataset {dataset_id} has no conversion here; use one of {sorted(CONVERSIONS)}")
    return {"dataset_id": dataset_id, "dataset": CONVERSIONS[dataset_id][0], "trainer": parts[1],
            "label": parts[2] if len(parts) == 3 else f"{parts[1]} on {dataset_id}"}


def prepare_dataset(dataset_id: int, source: str, env: dict, log: str, configuration: str, commands: list) -> str:
    """Convert and preprocess if needed; returns the raw dataset folder. ``commands`` records what ran."""
    name, sub = CONVERSIONS[dataset_id]
    raw = os.path.join(env["nnUNet_raw"], name)
    if not os.path.isfile(os.path.join(raw, "dataset.json")):
        print(f"[benchmark] converting {name} from {os.path.join(source, sub)}")
        conversion_module(name).convert(os.path.join(source, sub), env["nnUNet_raw"], verbose=False,
                                        preprocessed=env["nnUNet_preprocessed"])
    preprocessed = os.path.join(env["nnUNet_preprocessed"], name)
    plans_file = os.path.join(preprocessed, "nnUNetPlans.json")
    parent = "2d" if configuration.startswith("2d") else "3d_fullres"
    if not (os.path.isfile(plans_file) and configuration in load_json(plans_file)["configurations"]
            and os.path.isdir(os.path.join(preprocessed, f"nnUNetPlans_{parent}"))):
        print(f"[benchmark] planning and preprocessing {name} ({parent} + lite)")
        steps.plan_and_preprocess(dataset_id, [parent], env, log, commands)
    splits_raw, splits_pre = os.path.join(raw, "splits_final.json"), os.path.join(preprocessed, "splits_final.json")
    if not os.path.isfile(splits_pre):
        shutil.copy(splits_raw, splits_pre)
    elif load_json(splits_pre) != load_json(splits_raw):
        raise NNWError(f"{splits_pre} differs from {splits_raw}; remove one of them so the benchmark folds are the "
                       f"published ones.")
    return raw


def parse_pair(text: str) -> tuple:
    parts = text.split(":")
    if len(parts) != 2 or not all(p.isdigit() and int(p) in CONVERSIONS for p in parts) or parts[0] == parts[1]:
        raise NNWError(f"--pair {text!r}: expected TARGET:AUX, two different dataset ids of {sorted(CONVERSIONS)}")
    return int(parts[0]), int(parts[1])


def pair_datasets(target: int, aux: int, source: str, env: dict, log: str, configuration: str, commands: list) -> None:
    """Prepare both datasets and pair them for ModelMix (idempotent)."""
    prepare_dataset(target, source, env, log, configuration, commands)
    prepare_dataset(aux, source, env, log, configuration, commands)
    print(f"[benchmark] pairing {CONVERSIONS[target][0]} with {CONVERSIONS[aux][0]} for ModelMix")
    steps.run_command(["nnunet_weak_modelmix_pair", "-t", target, "-a", aux, "-c", configuration], env, log,
                      commands=commands)


def training_fold(env: dict, row: dict, configuration: str, fold: int) -> str:
    """The fold folder whose training produced a row: its own, or for an auxiliary row (``trained_in``) the
    ModelMix run on its target."""
    if "trained_in" in row:
        model = steps.model_folder(env, row["trained_in"], MODELMIX_TRAINER, configuration)
    else:
        model = steps.model_folder(env, row["dataset"], row["trainer"], configuration,
                                   row.get("plans", DEFAULT_PLANS))
    return os.path.join(model, f"fold_{fold}")


def modelmix_source(run: dict, pairs: list, env: dict, configuration: str, fold: int) -> dict:
    """Where an ``nnUNetTrainerModelMixAux`` row comes from: the ModelMix fold trained on the target that ``--pair
    TARGET:AUX`` pairs with this row's dataset. One ModelMix run trains both tasks' networks; this row scores the
    auxiliary one, exported as a fold of the auxiliary dataset (under the target's moved plans)."""
    targets = [t for t, a in pairs if a == run["dataset_id"]]
    if len(targets) != 1:
        raise NNWError(f"--run {run['dataset_id']}:{AUX_TRAINER} scores the auxiliary network of a ModelMix run; "
                       f"name that run's pairing once with --pair TARGET:{run['dataset_id']}.")
    target = CONVERSIONS[targets[0]][0]
    fold_folder = training_fold(env, {"trained_in": target}, configuration, fold)
    if not os.path.isfile(os.path.join(fold_folder, "checkpoint_final.pth")):
        raise NNWError(f"{fold_folder}/checkpoint_final.pth not found: train the ModelMix row first, e.g. "
                       f"--pair {targets[0]}:{run['dataset_id']} --run {targets[0]}:{MODELMIX_TRAINER}.")
    return {"target_id": targets[0], "trained_in": target, "plans": aux_plans_name(DEFAULT_PLANS, target)}


def evaluation_cases(env: dict, dataset: str, fold: int) -> list:
    """The cases predicted and scored: the fold's validation cases and, on ACDC, every frame of the fold's
    20-patient block. The semi-supervised datasets validate on the block's labelled patients only; scoring the
    whole block puts them on the same 40 frames as the scribble rows."""
    val = load_json(os.path.join(env["nnUNet_preprocessed"], dataset, "splits_final.json"))[fold]["val"]
    if source_of(dataset) != "ACDC":
        return sorted(val)
    dense = os.path.join(env["nnUNet_raw"], dataset, "labelsTr_dense")
    block = set(acdc_fold_patients(fold))
    cases = {f[:-len(".nii.gz")] for f in os.listdir(dense) if f.endswith(".nii.gz")}
    return sorted({c for c in cases if acdc_patient(c) in block} | set(val))


def run_one(run: dict, args, env: dict, log: str) -> dict:
    raw = os.path.join(env["nnUNet_raw"], run["dataset"])
    plans, plans_file = args.plans, os.path.join(env["nnUNet_preprocessed"], run["dataset"], args.plans + ".json")
    if run["trainer"] == AUX_TRAINER:
        source = modelmix_source(run, args.pairs, env, args.configuration, args.fold)
        run, plans = {**run, "trained_in": source["trained_in"]}, source["plans"]
    elif not os.path.isfile(plans_file):
        raise NNWError(f"{plans_file} not found: --plans {plans} names plans {run['dataset']} does not have; a "
                       f"ModelMix pairing (--pair TARGET:{run['dataset_id']}) writes nnUNetPlans_mm<TARGET>.")
    fold_folder = training_fold(env, {**run, "plans": plans}, args.configuration, args.fold)
    model = Model(run["dataset_id"], args.configuration, args.fold, run["trainer"], fold_folder,
                  ([] if args.tta else ["--disable_tta"]) + plans_args(plans), plans_args(plans))
    if run["trainer"] == AUX_TRAINER:
        print(f"[benchmark] exporting the auxiliary network of {fold_folder}")
        steps.run_command(["nnunet_weak_modelmix_export", "-d", source["target_id"], "-c", args.configuration,
                           "-f", args.fold, "--overwrite"], env, log,  # the benchmark's own work folder
                          commands=args.commands)
        train_seconds = None
    else:
        retrain = args.retrain or another_run(fold_folder, run)   # another run's model, or an unmarked one
        if not retrain and os.path.isfile(os.path.join(fold_folder, "checkpoint_final.pth")):
            check_reuse(fold_folder, run["label"], args.out)
        seeded = env if run.get("seed") is None else {**env, "NNW_SEED": str(run["seed"])}
        resume = args.resume and not retrain and started_by(fold_folder, run["label"], args.out)
        train_seconds = train_fold(model, seeded, log, retrain, commands=args.commands, epochs=args.epochs,
                                   what=f"{run['label']} ({run['trainer']} on {run['dataset']})", resume=resume,
                                   on_start=lambda folder: mark_row(folder, run["label"], args.out))
    cases = evaluation_cases(env, run["dataset"], args.fold)
    inputs = link_inputs(raw, load_json(os.path.join(raw, "dataset.json")), cases,
                         os.path.join(args.workdir, "inputs", f"{run['dataset']}_fold{args.fold}"))
    plans_part = "" if plans == DEFAULT_PLANS else f"__{plans}"
    pred = os.path.join(args.workdir, "predictions", f"{run['dataset']}__{run['trainer']}{plans_part}__"
                                                     f"{args.configuration}__fold{args.fold}")
    reference = Reference(os.path.join(raw, "labelsTr_dense"), CLASSES)
    scores = predict_and_score(model, inputs, pred, len(cases), reference, pred + "_dense_eval.json", env, log,
                               commands=args.commands)
    kept = keep_per_case(pred + "_dense_eval.json", args.out, run["label"])
    return {
        **run,
        "plans": plans,
        "iterations": args.epochs * args.iters,
        **scores,
        "train_wall_s": train_seconds,   # a resumed run: its last part only
        "resumed_at": resumed_at(fold_folder),
        "per_case": os.path.relpath(kept, os.path.dirname(os.path.abspath(args.out))),  # relative to the table
    }


def expand_runs(runs: list, k: int, first: int = 1, last: int = None) -> list:
    """Each --run as ``k`` independent training runs: rows "LABEL, run i" trained with NNW_SEED=i (i = 1..k),
    grouped under LABEL in the table's summary, in the order run 1 of every row, then run 2, ... (as
    ``nnunet_weak_benchmark``): a stopped benchmark keeps comparable runs. k = 1 keeps the rows as they are
    (unseeded, as nnU-Net). ``first`` > 1 makes only runs first..k, e.g. to add run 3 to a saved report
    (--append) on a machine that no longer holds runs 1-2's models; ``last`` < k makes only runs first..last,
    e.g. run 1 of 3 now (seeded and labelled as --runs 3 makes it), the others later."""
    last = k if last is None else last
    if k < 1:
        raise NNWError(f"--runs {k}: give at least 1 run per row")
    if not 1 <= first <= k:
        raise NNWError(f"--first-run {first} with --runs {k}: the first run to make must lie in 1..{k}")
    if not first <= last <= k:
        raise NNWError(f"--last-run {last} with --first-run {first} and --runs {k}: the last run to make must "
                       f"lie in {first}..{k}")
    if k == 1:
        return runs
    return [{**run, "label": f"{run['label']}, run {i}", "group": run["label"], "run": i, "seed": i}
            for i in range(first, last + 1) for run in runs]


def table_order(rows: list) -> list:
    """Rows as the table lists them: the runs of a row together (in run order), rows in order of appearance."""
    first = {}
    for r in rows:
        first.setdefault(r.get("group") or r["label"], len(first))
    return sorted(rows, key=lambda r: (first[r.get("group") or r["label"]], r.get("run", 0)))


def marked_row(fold_folder: str):
    """(label, table) of the row whose run the model folder holds, from its marker; None without one."""
    marker = os.path.join(fold_folder, ROW_MARKER)
    if not os.path.isfile(marker):
        return None
    saved = load_json(marker)
    return saved["label"], saved["table"]


def another_run(fold_folder: str, run: dict) -> bool:
    """For a row of several runs (--runs): the model folder holds a run other than this one (the runs of a row
    share nnU-Net's folder), which is then replaced; a row's own finished run is reused (re-predicting), its own
    unfinished one continued with --resume."""
    if run.get("seed") is None or not os.path.isdir(fold_folder):
        return False
    marked = marked_row(fold_folder)
    return marked is None or marked[0] != run["label"]


def started_by(fold_folder: str, label: str, out: str) -> bool:
    """The model folder holds a run that this row of this table started (finished or not): the only run --resume
    may continue."""
    return marked_row(fold_folder) == (label, os.path.abspath(out))


def mark_row(fold_folder: str, label: str, out: str) -> None:
    """Before nnUNetv2_train starts: record which row of which table the folder's run is for."""
    with open(os.path.join(fold_folder, ROW_MARKER), "w") as f:
        json.dump({"label": label, "table": os.path.abspath(out)}, f)


def check_reuse(fold_folder: str, label: str, out: str) -> None:
    """Rows of the same dataset, trainer and plans share one nnU-Net model folder. Reusing its checkpoint is right
    for the row that trained it (re-predicting, rescoring); for another row (a "second run") it would silently
    score the earlier run twice."""
    marked = marked_row(fold_folder)
    if marked and marked != (label, os.path.abspath(out)):
        raise NNWError(f"{fold_folder} holds the run trained for row '{marked[0]}' of {marked[1]}; row '{label}' "
                       f"would only re-score it. Add --retrain to train it anew (this replaces that model folder; "
                       f"the earlier row and its per-case copy stay).")


def keep_per_case(evaluation_json: str, out_prefix: str, label: str) -> str:
    """Copy a row's per-case evaluation next to the results table (``per_case/``), so that paired comparisons
    (paired_difference.py) can be recomputed from the repository after the work folder is gone. The copy is
    named after the table and the row label, which are unique together: a repeated run of the same dataset and
    trainer (a "second run" row) shares its prediction folder with the first but not its copy."""
    folder = os.path.join(os.path.dirname(os.path.abspath(out_prefix)), "per_case")
    os.makedirs(folder, exist_ok=True)
    row = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
    target = os.path.join(folder, f"{os.path.basename(out_prefix)}__{row}_dense_eval.json")
    shutil.copyfile(evaluation_json, target)
    return target


def source_of(dataset: str) -> str:
    """'ACDC' or 'MSCMRseg': the data a converted dataset (and so its validation fold) comes from."""
    return next(sub for name, sub in CONVERSIONS.values() if name == dataset)


def check_one_source(datasets: list, out: str) -> None:
    """One table compares rows on one validation set: ACDC fold 0 and the MSCMRseg val subjects do not mix."""
    sources = sorted({source_of(d) for d in datasets})
    if len(sources) > 1:
        raise NNWError(f"{out}: rows validated on {' and '.join(sources)} would share one table; give each "
                       f"validation set its own --out, e.g. {out}_acdc and {out}_mscmr.")


def sources_of(rows: list) -> str:
    """The validation set(s) of a table's rows, for its title and the chart's axis ("ACDC", "MSCMRseg")."""
    return " + ".join(dict.fromkeys(source_of(r["dataset"]) for r in rows))


def published_rows(rows: list) -> list:
    """The published ACDC fold-0 scribble-benchmark numbers, when every row is validated on ACDC and one of them
    is trained on scribbles; none otherwise (e.g. a semi-supervised table, where they would not compare)."""
    on_acdc = all(source_of(r["dataset"]) == "ACDC" for r in rows)
    return PUBLISHED if on_acdc and any("Scribble" in r["dataset"] for r in rows) else []


def machine_of(row: dict, meta: dict) -> str:
    """The machine a row was trained on: its own record, else (rows written before rows kept one) the report's."""
    return row.get("machine") or meta["machine"]


def machine_lines(rows: list, meta: dict) -> str:
    """The header's machine sentence; with rows from several machines, which rows ran where."""
    machines = {}
    for r in rows:
        machines.setdefault(machine_of(r, meta), []).append(r["label"])
    if len(machines) == 1:
        return f"Machine: {next(iter(machines))}."
    return ("Machines (sec/iter and cost compare only rows of one machine): " +
            "; ".join(f"{m}: {', '.join(labels)}" for m, labels in machines.items()) + ".")


def write_table(rows: list, meta: dict, out_prefix: str) -> str:
    rows = table_order(rows)
    reference = meta["cost_reference"]
    ref_row = next((r for r in rows if r["trainer"] == reference and r["sec_per_iter"]), None)
    base = ref_row["sec_per_iter"] if ref_row else None
    published = published_rows(rows)
    lines = [f"# {sources_of(rows)} benchmark, fold {meta['fold']} ({meta['n_val_cases']} validation cases), "
             f"{meta['configuration']}",
             "",
             f"Budget: {meta['epochs']} epochs x {meta['iters']} iterations = {meta['epochs'] * meta['iters']} "
             f"iterations per trainer unless the 'iterations' column says otherwise (batch {meta['batch_size']}, "
             f"patch {meta['patch_size']}). "
             f"{machine_lines(rows, meta)}",
             "Dice and HD95 (mm): 3D per case (ACDC: per frame) and class against the dense reference labels, "
             "averaged over cases "
             "(empty predictions: Dice 0, HD95 excluded and counted). sec/iter: training phase wall time per "
             "iteration (data loading included; median epoch, first epoch skipped). sec/case: nnUNetv2_predict wall time "
             f"(start-up included, mirroring TTA {'on' if meta['tta'] else 'off'}) / number of frames.",
             "",
             "| model | trainer | labels | iterations | Dice RV | Dice Myo | Dice LV | mean Dice | mean HD95 | "
             f"sec/iter | cost vs {reference} | sec/case |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    # a precision column once the CPU fast path trained a row (tables of fp32-only rows read as before)
    mixed = any(r.get("precision") not in (None, "fp32") for r in rows)
    if mixed:
        lines[-2] = lines[-2][:-len(" sec/case |")] + " precision | sec/case |"
        lines[-1] += "---|"
    for r in rows:
        # a step time compares only with the reference's on the same machine
        same_machine = ref_row is not None and machine_of(r, meta) == machine_of(ref_row, meta)
        ratio = fmt(r["sec_per_iter"] / base, 2) if base and r["sec_per_iter"] and same_machine else "-"
        its = r.get("iterations", meta["epochs"] * meta["iters"])
        precision = f" {r.get('precision') or '-'} |" if mixed else ""
        lines.append(f"| {r['label']} | {r['trainer']} | {r['dataset']} | {its} | {fmt(r['dice']['RV'])} | "
                     f"{fmt(r['dice']['MYO'])} | {fmt(r['dice']['LV'])} | **{fmt(r['mean_dice'])}** | "
                     f"{fmt(r['mean_hd95'], 2)} | {fmt(r['sec_per_iter'])} | {ratio} |{precision} "
                     f"{fmt(r['sec_per_case'], 1)} |")
    for name, dice, hd in published:
        lines.append(f"| {name} | - | published fold-0 predictions | | | | | {dice:.3f} | {hd:.2f} | | | |" +
                     (" |" if mixed else ""))
    lines += run_summary_lines(rows, meta)
    lines += [f"\nNote: {n}" for n in meta.get("notes", [])]
    lines += ["\n" + resumed_note(f"'{r['label']}'", r["resumed_at"]) for r in rows if r.get("resumed_at")]
    invocations = meta["invocation"] if isinstance(meta["invocation"], list) else [meta["invocation"]]
    lines += ["", "Reproduce (in order):", "", "```"] + invocations + ["```", "",
              "Commands this run executed (in order; $WORK is the work folder):", "", "```"] + meta["commands"] + ["```", ""]
    table = "\n".join(lines)
    with open(out_prefix + ".md", "w") as f:
        f.write(table)
    with open(out_prefix + ".json", "w") as f:
        json.dump(json_ready({"rows": rows, "published": published, "meta": meta}), f, indent=2, allow_nan=False)
    return table


def run_groups(rows: list) -> dict:
    """label of a row of several runs (``--runs``) -> its runs' rows, in table order; single rows left out."""
    groups = {}
    for r in rows:
        if r.get("group"):
            groups.setdefault(r["group"], []).append(r)
    return {g: rs for g, rs in groups.items() if len(rs) > 1}


def run_summary_lines(rows: list, meta: dict) -> list:
    """The table's "over runs" section: per row of several runs, the mean +- sd over runs of each mean."""
    groups = run_groups(rows)
    if not groups:
        return []
    lines = ["", "Over independent runs (mean +- sd over runs of each run's mean over cases; paired_difference.py "
                 "compares two rows with a bootstrap over patients and runs):", "",
             "| model | runs | Dice RV | Dice Myo | Dice LV | mean Dice | mean HD95 | sec/iter (median) |",
             "|---|---|---|---|---|---|---|---|"]
    for group, rs in groups.items():
        cls = [mean_sd([r["dice"][c] for r in rs]) for c in CLASSES]
        one_machine = len({machine_of(r, meta) for r in rs}) == 1   # else a median of unlike timings
        times = [r["sec_per_iter"] for r in rs if r.get("sec_per_iter")] if one_machine else []
        lines.append(f"| {group} | {len(rs)} | {' | '.join(cls)} | **{mean_sd([r['mean_dice'] for r in rs])}** | "
                     f"{mean_sd([r['mean_hd95'] for r in rs], 2)} | "
                     f"{fmt(float(np.median(times))) if times else '-'} |")
    return lines


def bar_chart(rows: list, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, published = table_order(rows), published_rows(rows)
    names = [r["label"] for r in rows] + [p[0] for p in published]
    values = [r["mean_dice"] for r in rows] + [p[1] for p in published]
    colours = ["tab:blue"] * len(rows) + ["tab:gray"] * len(published)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.2))
    ax.barh(range(len(names)), values, color=colours)
    for i, v in enumerate(values):
        ax.text(v + 0.005, i, f"{v:.3f}", va="center", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.05)
    ax.set_xlabel(f"mean Dice (RV, Myo, LV), {sources_of(rows)} validation fold, dense reference")
    ax.set_title("blue: measured here at the common budget" +
                 ("; grey: published fold-0 predictions" if published else ""), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name (Linux), else what ``platform`` knows; timings depend on it."""
    try:
        with open(cpuinfo) as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        name = ""
    return name or platform.processor() or "unknown CPU"


def machine() -> str:
    import torch
    from importlib.metadata import version
    bf16 = cpu_bf16.native_bf16_instructions()
    return (f"{platform.machine()} {cpu_model()} ({'native bf16: ' + bf16 if bf16 else 'no native bf16'}), "
            f"{os.cpu_count()} CPU cores, no GPU used (-device cpu), Python "
            f"{platform.python_version()}, torch {torch.__version__}, nnunetv2 {version('nnunetv2')}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, help="folder holding ACDC/ and MSCMRseg/ (../shared/data)")
    parser.add_argument("--run", action="append", required=True, help="DATASET_ID:TRAINER[:LABEL], repeatable")
    parser.add_argument("--workdir", default=os.path.join(HERE, "work"), help="nnU-Net folders and predictions")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "acdc_fold0"), help="output prefix")
    parser.add_argument("--configuration", default="2d_lite")
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--iters", type=int, default=50, help="training iterations per epoch")
    parser.add_argument("--val-iters", type=int, default=5, help="pseudo-Dice iterations per epoch")
    parser.add_argument("--runs", type=int, default=1,
                        help="independent training runs per --run, seeded NNW_SEED=1..K (rows 'LABEL, run k'; the "
                             "table adds mean +- sd over runs); decisive comparisons use K >= 3")
    parser.add_argument("--first-run", type=int, default=1, metavar="I",
                        help="with --runs K and --append: make only runs I..K of each row (seeded I..K), the "
                             "earlier runs staying as the saved report has them")
    parser.add_argument("--last-run", type=int, default=None, metavar="J",
                        help="with --runs K: make only runs up to J of each row now (seeded and labelled as "
                             "--runs K makes them); add the rest later with --first-run J+1 --append")
    parser.add_argument("--retrain", action="store_true", help="train again even if a final checkpoint exists")
    parser.add_argument("--resume", action="store_true",
                        help="continue a run this row started and that was interrupted (its model folder holds "
                             "checkpoint_latest.pth or checkpoint_best.pth) with nnUNetv2_train --c, instead of "
                             "training it again from the start; the table names the epoch it continued at")
    parser.add_argument("--save-every", type=int, default=None, metavar="N",
                        help="save checkpoint_latest.pth every N epochs (NNW_SAVE_EVERY; nnU-Net's 50 is more than "
                             "the benchmark's 20 epochs), so that --resume loses at most N epochs of a killed run")
    parser.add_argument("--rescore-timing", action="store_true",
                        help="only rewrite the report of a finished benchmark (--out) with the current timing statistic")
    parser.add_argument("--append", action="store_true",
                        help="add this invocation's rows to the report at --out (rows with the same label are "
                             "replaced), e.g. a stage-2 trainer with a different --epochs")
    parser.add_argument("--note", action="append", default=[], help="a measurement note printed under the table")
    parser.add_argument("--cost-reference", default=None, metavar="TRAINER",
                        help=f"the trainer whose first row is the sec/iter ratio's reference (default: the one an "
                             f"appended or rescored report used, else {DEFAULT_COST_REFERENCE}); e.g. "
                             f"nnUNetTrainerLabelledOnly, whose step is nnUNetTrainer's, when the "
                             f"{DEFAULT_COST_REFERENCE} row's timing was contended")
    parser.add_argument("--pair", action="append", default=[], metavar="TARGET:AUX",
                        help="pair two datasets for nnUNetTrainerModelMix before training (nnunet_weak_modelmix_pair); "
                             "a run AUX:nnUNetTrainerModelMixAux scores the auxiliary network of TARGET's "
                             "ModelMix run (exported, not trained again)")
    parser.add_argument("--plans", default=DEFAULT_PLANS,
                        help="plans identifier every --run of this call trains and predicts with (nnU-Net's -p), e.g. "
                             "nnUNetPlans_mm801, the ACDC plans a ModelMix pairing gave an auxiliary dataset")
    parser.add_argument("--tta", action="store_true",
                        help="predict with nnU-Net's mirroring TTA (about 4x the prediction time on a CPU)")
    args = parser.parse_args(argv)
    args.commands = []   # every command this call runs, for the report's "how to reproduce"

    if args.save_every is not None and args.save_every < 1:
        raise NNWError(f"--save-every {args.save_every}: give a number of epochs >= 1")
    runs = expand_runs([parse_run(r) for r in args.run], args.runs, args.first_run, args.last_run)
    if args.first_run > 1 and not args.append:
        raise NNWError(f"--first-run {args.first_run} makes only some runs of each row; add --append so that "
                       f"they join runs 1-{args.first_run - 1} in the saved report {args.out}.json")
    pairs = args.pairs = [parse_pair(p) for p in args.pair]
    saved = load_json(args.out + ".json") if args.append and os.path.isfile(args.out + ".json") else None
    check_one_source([r["dataset"] for r in runs + (saved["rows"] if saved else [])], args.out)
    args.workdir = os.path.abspath(args.workdir)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    env = steps.nnunet_environment(args.workdir, NNW_NUM_EPOCHS=args.epochs, NNW_ITERS_PER_EPOCH=args.iters,
                                   NNW_VAL_ITERS_PER_EPOCH=args.val_iters, NNW_SKIP_FINAL_VALIDATION=1,
                                   **({} if args.save_every is None else {"NNW_SAVE_EVERY": args.save_every}))
    log = os.path.join(args.workdir, "benchmark.log")
    if not args.rescore_timing:
        for dataset_id in dict.fromkeys(r["dataset_id"] for r in runs):
            prepare_dataset(dataset_id, os.path.abspath(args.source), env, log, args.configuration, args.commands)
        for target, aux in pairs:
            pair_datasets(target, aux, os.path.abspath(args.source), env, log, args.configuration, args.commands)

    plans = load_json(os.path.join(env["nnUNet_preprocessed"], runs[0]["dataset"], "nnUNetPlans.json"))
    config = plans["configurations"][args.configuration]
    if args.rescore_timing:
        print(rescore_timing(args, env, config))
        return 0
    rows, invoked = [], invocation(argv)
    if saved:
        new_labels = {r["label"] for r in runs}
        rows = [r for r in saved_rows(saved) if r["label"] not in new_labels]
        earlier = saved["meta"]["invocation"]
        invoked = (earlier if isinstance(earlier, list) else [earlier]) + [invoked]
        keep_saved_settings(args, saved["meta"])
        args.commands[:] = [c.replace("$WORK", args.workdir) for c in saved["meta"]["commands"]]
    for run in runs:
        start = time.perf_counter()
        rows.append({**run_one(run, args, env, log), "machine": machine()})
        print(f"[benchmark] {run['label']}: mean Dice {rows[-1]['mean_dice']:.3f}, mean HD95 "
              f"{rows[-1]['mean_hd95']:.2f} mm ({(time.perf_counter() - start) / 60:.1f} min)")
        table = report(rows, args, invoked, env, config)  # after every run: a stopped benchmark keeps its rows
    print(table)
    return 0


def invocation(argv) -> str:
    # environment settings a reproduction needs too: the CPU fast path, and a seed given to a call without --runs
    # (--runs K seeds its runs itself)
    prefix = "NNW_CPU_BF16=1 " if os.environ.get("NNW_CPU_BF16", "").strip().lower() in ("1", "true", "yes") else ""
    seed = os.environ.get("NNW_SEED", "").strip()
    prefix += f"NNW_SEED={seed} " if seed else ""
    return prefix + "python benchmarks/acdc_benchmark.py " + " ".join(
        f'"{a}"' if " " in a else a for a in (argv if argv is not None else sys.argv[1:]))


def saved_rows(saved: dict) -> list:
    """A saved report's rows, each with its machine: rows from before rows kept one were made on the machine the
    saved report names (not on the machine that appends to or rescores it)."""
    return [{"machine": saved["meta"]["machine"], **r} for r in saved["rows"]]


def keep_saved_settings(args, saved_meta: dict) -> None:
    """An appended or rescored report keeps its earlier notes and cost reference unless this call names them."""
    args.note = [n for n in saved_meta.get("notes", []) if n not in args.note] + args.note
    if args.cost_reference is None:
        args.cost_reference = saved_meta.get("cost_reference")


def rescore_timing(args, env: dict, config: dict) -> str:
    """Rewrite the report of a finished benchmark from its JSON with the current timing statistic."""
    if not os.path.isfile(args.out + ".json"):
        raise NNWError(f"{args.out}.json not found: --rescore-timing rewrites a finished benchmark's report; "
                       f"pass the --out prefix of that run.")
    saved = load_json(args.out + ".json")
    keep_saved_settings(args, saved["meta"])
    rows = saved_rows(saved)
    for r in rows:
        folder = training_fold(env, r, args.configuration, args.fold)
        measured = timing_file.train_seconds_per_iteration(folder)
        if measured is None:  # that run's work folder is gone (e.g. an earlier session): keep what it measured
            print(f"[benchmark] {r['label']}: no timing file under {folder}; keeping {r['sec_per_iter']} s/iter")
        else:
            r["sec_per_iter"], r["precision"] = measured, timing_file.train_precision(folder)
        for key in ("dice", "hd95"):
            r[key] = {c: (float("nan") if v is None else v) for c, v in r[key].items()}
        r["mean_hd95"] = float("nan") if r["mean_hd95"] is None else r["mean_hd95"]
    args.commands[:] = [c.replace("$WORK", args.workdir) for c in saved["meta"]["commands"]]
    return report(rows, args, saved["meta"]["invocation"], env, config)


def report(rows: list, args, invoked: str, env: dict, config: dict) -> str:
    meta = {"fold": args.fold, "configuration": args.configuration, "epochs": args.epochs, "iters": args.iters,
            "tta": args.tta, "notes": args.note,
            "cost_reference": args.cost_reference or DEFAULT_COST_REFERENCE,
            "val_iters": args.val_iters, "batch_size": config.get("batch_size"),
            "patch_size": config.get("patch_size"), "n_val_cases": rows[0]["n_cases"], "machine": machine(),
            "invocation": invoked,
            "commands": [c.replace(args.workdir, "$WORK") for c in args.commands],
            "env": {k: env[k] for k in ("NNW_NUM_EPOCHS", "NNW_ITERS_PER_EPOCH", "NNW_VAL_ITERS_PER_EPOCH",
                                        "NNW_SKIP_FINAL_VALIDATION", "nnUNet_n_proc_DA", "nnUNet_compile")}}
    table = write_table(rows, meta, args.out)
    bar_chart(rows, args.out + ".png")
    return table


if __name__ == "__main__":
    sys.exit(main())
