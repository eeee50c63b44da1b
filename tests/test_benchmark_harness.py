"""The benchmark harness's bookkeeping: run parsing, the cost ratio, the table and the chart."""
import argparse
import importlib.util
import json
import os
import types

import pytest

from nnunet_weak.experiment import benchmark as scoring   # predict_and_score, shared with nnunet_weak_benchmark
from nnunet_weak.utilities.errors import NNWError

_spec = importlib.util.spec_from_file_location(
    "acdc_benchmark", os.path.join(os.path.dirname(__file__), "..", "benchmarks", "acdc_benchmark.py"))
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def _raw_images(folder, cases):
    """A raw dataset's dataset.json and (empty) image files, enough for the harness to link prediction inputs."""
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "dataset.json").write_text(json.dumps({"file_ending": ".nii.gz", "channel_names": {"0": "MRI"}}))
    for case in cases:
        (folder / "imagesTr" / f"{case}_0000.nii.gz").write_bytes(b"")


def test_parse_run():
    run = bench.parse_run("801:nnUNetTrainerPCE:pCE on scribbles")
    assert (run["dataset_id"], run["dataset"], run["trainer"], run["label"]) == \
        (801, "Dataset801_ACDCScribble", "nnUNetTrainerPCE", "pCE on scribbles")
    assert bench.parse_run("802:nnUNetTrainerBudget")["label"] == "nnUNetTrainerBudget on 802"
    with pytest.raises(NNWError, match="DATASET_ID:TRAINER"):
        bench.parse_run("nnUNetTrainerPCE")
    with pytest.raises(NNWError, match="no conversion"):
        bench.parse_run("999:nnUNetTrainerPCE")


def test_parse_pair():
    assert bench.parse_pair("801:803") == (801, 803)
    for bad in ("801", "801:801", "801:999", "a:b"):
        with pytest.raises(NNWError, match="TARGET:AUX"):
            bench.parse_pair(bad)


def _row(label, trainer, mean_dice, sec, dataset="Dataset801_ACDCScribble"):
    return {"label": label, "trainer": trainer, "dataset": dataset, "n_cases": 40,
            "dice": {"RV": mean_dice, "MYO": mean_dice, "LV": mean_dice}, "mean_dice": mean_dice,
            "mean_hd95": float("nan"), "sec_per_iter": sec, "sec_per_case": 3.0}


def _report(rows, tmp_path, cost_reference=None):
    args = types.SimpleNamespace(fold=0, configuration="2d_lite", epochs=2, iters=3, val_iters=1, tta=False, note=["n1"],
                                 commands=[], workdir="/w", out=str(tmp_path / "res"), cost_reference=cost_reference)
    env = {k: "1" for k in ("NNW_NUM_EPOCHS", "NNW_ITERS_PER_EPOCH", "NNW_VAL_ITERS_PER_EPOCH",
                            "NNW_SKIP_FINAL_VALIDATION", "nnUNet_n_proc_DA", "nnUNet_compile")}
    return bench.report(rows, args, bench.invocation(["--source", "d", "--run", "801:nnUNetTrainerPCE:pCE"]), env,
                        {"batch_size": 12, "patch_size": [128, 112]})


def test_report_table_json_and_chart(tmp_path):
    rows = [_row("nnU-Net+pL", "nnUNetTrainerBudget", 0.8, 0.5), _row("pCE", "nnUNetTrainerPCE", 0.7, 0.75),
            {**_row("stage 2", "nnUNetTrainerPASegSCM", 0.6, 1.0), "iterations": 350},
            _row("few scribbles", "nnUNetTrainerBudget", 0.5, 0.5, "Dataset814_ACDCFewScribble")]
    table = _report(rows, tmp_path)
    assert table.startswith("# ACDC benchmark")
    pce_line = next(line for line in table.splitlines() if line.startswith("| pCE |"))
    assert "| 1.50 |" in pce_line  # 0.75 s / 0.5 s against nnUNetTrainer(Budget)
    assert "| 6 |" in pce_line  # rows without their own budget ran the invocation's
    assert "| 350 |" in next(line for line in table.splitlines() if line.startswith("| stage 2 |"))
    assert "| - |" in pce_line  # NaN HD95 is shown as '-', never as a number
    assert "0.897" in table and "PCLMix (published)" in table
    assert "2 epochs x 3 iterations = 6 iterations" in table and "Note: n1" in table
    saved = json.loads((tmp_path / "res.json").read_text())
    assert saved["rows"][0]["mean_hd95"] is None  # strict JSON: NaN written as null
    assert saved["meta"]["invocation"].endswith("--run 801:nnUNetTrainerPCE:pCE")
    assert (tmp_path / "res.png").stat().st_size > 1000


def test_mscmr_table_has_its_own_title_and_no_acdc_published_rows(tmp_path):
    rows = [_row("nnU-Net+pL", "nnUNetTrainerBudget", 0.3, 0.8, "Dataset803_MSCMRScribble"),
            _row("ModelMix", "nnUNetTrainerModelMix", 0.4, 4.0, "Dataset815_MSCMRFewScribble")]
    table = _report(rows, tmp_path)
    assert table.startswith("# MSCMRseg benchmark")
    assert "(published)" not in table and "0.897" not in table
    assert json.loads((tmp_path / "res.json").read_text())["published"] == []
    assert "| 5.00 |" in next(line for line in table.splitlines() if line.startswith("| ModelMix |"))


def test_semi_supervised_table_takes_its_cost_reference_and_lists_no_scribble_publications(tmp_path):
    rows = [_row("dense", "nnUNetTrainerBudget", 0.8, 2.0, "Dataset802_ACDCDense"),  # a contended timing
            _row("labelled only", "nnUNetTrainerLabelledOnly", 0.6, 0.5, "Dataset805_ACDCSemi10"),
            _row("kMaX", "nnUNetTrainerKMaX_lite", 0.65, 0.8, "Dataset805_ACDCSemi10")]
    table = _report(rows, tmp_path, cost_reference="nnUNetTrainerLabelledOnly")
    assert "cost vs nnUNetTrainerLabelledOnly" in table
    assert "| 1.60 |" in next(line for line in table.splitlines() if line.startswith("| kMaX |"))  # 0.8 / 0.5
    assert "| 4.00 |" in next(line for line in table.splitlines() if line.startswith("| dense |"))
    assert "(published)" not in table  # the published fold-0 rows are scribble-trained
    saved = json.loads((tmp_path / "res.json").read_text())
    assert saved["meta"]["cost_reference"] == "nnUNetTrainerLabelledOnly" and saved["published"] == []

    # appending or rescoring keeps the saved reference and notes unless the call names its own
    args = types.SimpleNamespace(note=["n2"], cost_reference=None)
    bench.keep_saved_settings(args, saved["meta"])
    assert args.cost_reference == "nnUNetTrainerLabelledOnly" and args.note == ["n1", "n2"]
    args = types.SimpleNamespace(note=[], cost_reference="nnUNetTrainerBudget")
    bench.keep_saved_settings(args, saved["meta"])
    assert args.cost_reference == "nnUNetTrainerBudget" and args.note == ["n1"]


def test_rows_on_different_validation_sets_are_refused():
    bench.check_one_source(["Dataset801_ACDCScribble", "Dataset814_ACDCFewScribble"], "out")  # same ACDC fold
    with pytest.raises(NNWError, match="ACDC and MSCMRseg.*own --out"):
        bench.check_one_source(["Dataset801_ACDCScribble", "Dataset803_MSCMRScribble"], "out")


def test_seconds_per_iteration_is_robust_median(tmp_path):
    from nnunet_weak.utilities.timing_file import train_seconds_per_iteration
    (tmp_path / "nnunet_weak_timing.json").write_text(json.dumps(
        {"iterations_per_epoch": 10, "epochs": [30.0, 5.0, 6.0, 50.0, 7.0]}))  # warm-up, then one noisy epoch
    assert train_seconds_per_iteration(str(tmp_path)) == pytest.approx(0.65)
    assert train_seconds_per_iteration(str(tmp_path / "missing")) is None


_pspec = importlib.util.spec_from_file_location(
    "paired_difference", os.path.join(os.path.dirname(__file__), "..", "benchmarks", "paired_difference.py"))
paired = importlib.util.module_from_spec(_pspec)
_pspec.loader.exec_module(paired)


def _evaluation(values: dict) -> dict:
    """evaluate_dense-like JSON: case -> (dice, hd95) for one class 'LV'."""
    return {"per_case": {case: {"LV": {"dice": d, "hd95": h}} for case, (d, h) in values.items()}}


def test_paired_difference_resamples_patients():
    base = _evaluation({"p1_frame01": (0.5, 10.0), "p1_frame02": (0.5, 10.0), "p2_frame01": (0.2, None)})
    method = _evaluation({"p1_frame01": (0.7, 4.0), "p1_frame02": (0.5, 12.0), "p2_frame01": (0.6, 3.0)})
    rows = {(r["metric"], r["class"]): r for r in paired.compare(base, method, resamples=4000)}
    dice = rows[("dice", "LV")]
    # case differences 0.2, 0.0 (patient 1) and 0.4 (patient 2): mean 0.2; resampling two patients gives
    # 0.1 (p1 twice), 0.2 (one each) or 0.4 (p2 twice), so the 95 % interval is [0.1, 0.4]
    assert dice["difference"] == pytest.approx(0.2)
    assert (dice["ci_low"], dice["ci_high"]) == (pytest.approx(0.1), pytest.approx(0.4))
    assert dice["method_better"] == 2 and dice["n_cases"] == 3
    hd = rows[("hd95", "LV")]   # p2 has an empty baseline prediction: left out
    assert hd["n_cases"] == 2 and hd["difference"] == pytest.approx(-2.0) and hd["method_better"] == 1
    assert rows[("dice", "mean")]["difference"] == pytest.approx(0.2)


def test_paired_difference_resamples_training_runs_too():
    """One patient (its frames always drawn together), so all the interval's width comes from the runs: the
    method's two runs differ from the baseline by 0.0 and 0.4; drawing two runs with replacement gives 0.0, 0.2
    or 0.4. A patient-only bootstrap of the run means would give [0.2, 0.2]."""
    base = [_evaluation({"p1_frame01": (0.5, 10.0), "p1_frame02": (0.5, 10.0)})]
    method = [_evaluation({"p1_frame01": (0.5, 10.0), "p1_frame02": (0.5, None)}),
              _evaluation({"p1_frame01": (0.9, 6.0), "p1_frame02": (0.9, 8.0)})]
    rows = {(r["metric"], r["class"]): r for r in paired.compare(base, method, resamples=4000)}
    dice = rows[("dice", "LV")]
    assert dice["difference"] == pytest.approx(0.2) and dice["method_better"] == 2
    assert (dice["ci_low"], dice["ci_high"]) == (pytest.approx(0.0), pytest.approx(0.4))
    hd = rows[("hd95", "LV")]   # frame02: the run with a prediction only (8.0); frame01: mean of 10 and 6
    assert hd["difference"] == pytest.approx(((8.0 - 10.0) + (8.0 - 10.0)) / 2) and hd["n_cases"] == 2
    summary = paired.run_summary(method)
    assert summary["runs"] == [pytest.approx(0.5), pytest.approx(0.9)] and summary["mean"] == pytest.approx(0.7)
    with pytest.raises(NNWError, match="different cases"):
        paired.compare(base, method + [_evaluation({"p1_frame01": (0.5, 1.0)})], 10)


def test_same_runs_draws_both_sides_runs_together():
    """Two trainings whose two networks differ by exactly +0.1 on every case, while the trainings differ by 0.4
    from each other: drawn jointly, every resample gives +0.1; drawn per side, the spread between trainings
    widens the interval to [-0.3, +0.5]."""
    base = [_evaluation({"p1_frame01": (0.3, 5.0)}), _evaluation({"p1_frame01": (0.7, 5.0)})]
    method = [_evaluation({"p1_frame01": (0.4, 5.0)}), _evaluation({"p1_frame01": (0.8, 5.0)})]
    joint = {(r["metric"], r["class"]): r for r in paired.compare(base, method, 4000, same_runs=True)}
    apart = {(r["metric"], r["class"]): r for r in paired.compare(base, method, 4000)}
    assert (joint[("dice", "LV")]["ci_low"], joint[("dice", "LV")]["ci_high"]) == (pytest.approx(0.1),
                                                                                   pytest.approx(0.1))
    assert apart[("dice", "LV")]["ci_low"] == pytest.approx(-0.3) and apart[("dice", "LV")]["ci_high"] == \
        pytest.approx(0.5)
    with pytest.raises(NNWError, match="as many baseline as method evaluations, not 2 and 1"):
        paired.compare(base, method[:1], 10, same_runs=True)


def test_paired_difference_refuses_other_cases():
    with pytest.raises(NNWError, match="different cases"):
        paired.compare(_evaluation({"p1_frame01": (0.5, 1.0)}), _evaluation({"p2_frame01": (0.5, 1.0)}), 10)


def test_kept_per_case_copy_feeds_the_paired_comparison(tmp_path):
    # the work folder (and its *_dense_eval.json) may be gone in a later session; the copy under
    # results/per_case must still give the paired comparison
    pred = tmp_path / "work" / "predictions"
    pred.mkdir(parents=True)
    for name, values in (("base", {"p1_frame01": (0.5, 10.0), "p2_frame01": (0.2, 8.0)}),
                         ("method", {"p1_frame01": (0.7, 4.0), "p2_frame01": (0.6, 3.0)})):
        (pred / f"{name}_dense_eval.json").write_text(json.dumps(_evaluation(values)))
    out = tmp_path / "results" / "table"
    kept = [bench.keep_per_case(str(pred / f"{n}_dense_eval.json"), str(out), f"Row {n}, second run")
            for n in ("base", "method")]
    assert kept == [str(tmp_path / "results" / "per_case" / f"table__row-{n}-second-run_dense_eval.json")
                    for n in ("base", "method")]
    for path in (pred / "base_dense_eval.json", pred / "method_dense_eval.json"):
        path.unlink()
    assert paired.main([*kept, "--resamples", "100", "--out", str(tmp_path / "diff")]) == 0
    rows = {(r["metric"], r["class"]): r for r in json.loads((tmp_path / "diff.json").read_text())["rows"]}
    assert rows[("dice", "LV")]["difference"] == pytest.approx(0.3)
    assert rows[("hd95", "LV")]["difference"] == pytest.approx(-5.5)


def test_acdc_rows_are_scored_on_the_whole_fold_block(tmp_path):
    # a semi-supervised dataset validates on the block's labelled patients only; the benchmark scores every frame
    # of the block (patients 1-20 for fold 0), so its rows compare with the scribble rows on the same frames
    env = {"nnUNet_raw": str(tmp_path / "raw"), "nnUNet_preprocessed": str(tmp_path / "pre")}
    for name, val in (("Dataset805_ACDCSemi10", ["patient003_frame01"]),
                      ("Dataset803_MSCMRScribble", ["subject1_DE"])):
        dense = tmp_path / "raw" / name / "labelsTr_dense"
        dense.mkdir(parents=True)
        for case in ("patient003_frame01", "patient003_frame12", "patient020_frame01", "patient021_frame01",
                     "subject1_DE", "subject2_DE"):
            if case.startswith("patient") == name.startswith("Dataset805"):
                (dense / f"{case}.nii.gz").write_bytes(b"")
        (tmp_path / "pre" / name).mkdir(parents=True)
        (tmp_path / "pre" / name / "splits_final.json").write_text(json.dumps([{"train": [], "val": val}]))
    assert bench.evaluation_cases(env, "Dataset805_ACDCSemi10", 0) == \
        ["patient003_frame01", "patient003_frame12", "patient020_frame01"]
    assert bench.evaluation_cases(env, "Dataset803_MSCMRScribble", 0) == ["subject1_DE"]  # MSCMRseg: its val list


def test_modelmix_auxiliary_row_is_exported_from_the_target_run_not_trained(tmp_path, monkeypatch):
    # one ModelMix run trains both tasks' networks: a row AUX:nnUNetTrainerModelMixAux exports the auxiliary one
    # from TARGET's fold (--pair TARGET:AUX), predicts it under the target's moved plans and takes its sec/iter
    # from that training run
    env = {"nnUNet_raw": str(tmp_path / "raw"), "nnUNet_preprocessed": str(tmp_path / "pre"),
           "nnUNet_results": str(tmp_path / "res")}
    run = bench.parse_run("803:nnUNetTrainerModelMixAux:ModelMix, MSCMRseg network of the ACDC run")
    with pytest.raises(NNWError, match="--pair TARGET:803"):
        bench.modelmix_source(run, [(801, 814)], env, "2d_lite", 0)
    with pytest.raises(NNWError, match="train the ModelMix row first"):
        bench.modelmix_source(run, [(801, 803)], env, "2d_lite", 0)

    target_fold = (tmp_path / "res" / "Dataset801_ACDCScribble" / "nnUNetTrainerModelMix__nnUNetPlans__2d_lite" /
                   "fold_0")
    target_fold.mkdir(parents=True)
    (target_fold / "checkpoint_final.pth").write_bytes(b"")
    from nnunet_weak.utilities.timing_file import TIMING_FILE
    (target_fold / TIMING_FILE).write_text(json.dumps({"epochs": [99.0, 8.0, 8.0], "iterations_per_epoch": 2}))
    (tmp_path / "pre" / "Dataset803_MSCMRScribble").mkdir(parents=True)
    (tmp_path / "pre" / "Dataset803_MSCMRScribble" / "splits_final.json").write_text(
        json.dumps([{"train": [], "val": ["subject1_DE"]}]))
    _raw_images(tmp_path / "raw" / "Dataset803_MSCMRScribble", ["subject1_DE"])

    calls = {}
    monkeypatch.setattr(bench.steps, "run_command", lambda args, *_, **k: calls.setdefault("export", list(args)))
    monkeypatch.setattr(bench.steps, "train", lambda *a, **k: pytest.fail("an auxiliary row must not train"))
    monkeypatch.setattr(bench.steps, "predict", lambda *a, **k: calls.setdefault("predict", a) and 12.0)

    def fake_evaluate(pred, reference, classes, file_ending, output_json, output_md, overwrite, allow_missing):
        with open(output_json, "w") as f:
            json.dump(_evaluation({"subject1_DE": (0.5, 3.0)}), f)
        per_class = {c: {"dice": 0.5, "hd95": 3.0} for c in classes}
        return {"n_cases": 1, "mean": per_class, "mean_over_classes": {"dice": 0.5, "hd95": 3.0},
                "empty_predictions": {c: 0 for c in classes}}
    monkeypatch.setattr(scoring, "evaluate_folder", fake_evaluate)
    args = types.SimpleNamespace(configuration="2d_lite", fold=0, pairs=[(801, 803)], retrain=False, resume=False,
                                 tta=False, commands=[],
                                 plans="nnUNetPlans",
                                 workdir=str(tmp_path / "work"), out=str(tmp_path / "results" / "mscmr"),
                                 epochs=2, iters=2)
    (tmp_path / "work" / "predictions").mkdir(parents=True)
    row = bench.run_one(run, args, env, str(tmp_path / "log"))
    assert calls["export"] == ["nnunet_weak_modelmix_export", "-d", 801, "-c", "2d_lite", "-f", 0, "--overwrite"]
    assert list(calls["predict"][-1][-2:]) == ["-p", "nnUNetPlans_mm801"]
    assert row["sec_per_iter"] == pytest.approx(4.0)      # median of the target run's epochs after the first / 2
    assert row["trained_in"] == "Dataset801_ACDCScribble" and row["train_wall_s"] is None
    assert row["per_case"] == "per_case/mscmr__modelmix-mscmrseg-network-of-the-acdc-run_dense_eval.json"
    assert (tmp_path / "results" / row["per_case"]).is_file()

    # the control for that row: nnU-Net+pL on the auxiliary dataset under the same moved plans (--plans)
    control = bench.parse_run("803:nnUNetTrainerBudget:nnU-Net+pL under ACDC's plans")
    args.plans = "nnUNetPlans_mm801"
    with pytest.raises(NNWError, match="--pair TARGET:803"):
        bench.run_one(control, args, env, str(tmp_path / "log"))
    (tmp_path / "pre" / "Dataset803_MSCMRScribble" / "nnUNetPlans_mm801.json").write_text("{}")
    control_fold = tmp_path / "res" / "Dataset803_MSCMRScribble" / "nnUNetTrainerBudget__nnUNetPlans_mm801__2d_lite"

    def fake_train(*a, **k):  # like nnUNetv2_train, leaves the fold folder behind
        (control_fold / "fold_0").mkdir(parents=True, exist_ok=True)
        calls["train"] = a
        return 60.0
    monkeypatch.setattr(bench.steps, "train", fake_train)
    calls.pop("predict")
    row = bench.run_one(control, args, env, str(tmp_path / "log"))
    assert list(calls["train"][-1]) == ["-p", "nnUNetPlans_mm801"]
    assert list(calls["predict"][-1][-2:]) == ["-p", "nnUNetPlans_mm801"]
    assert row["plans"] == "nnUNetPlans_mm801" and row["train_wall_s"] == 60.0
    # that checkpoint belongs to this row: re-running it re-scores, another row ("second run") must --retrain
    (control_fold / "fold_0" / "checkpoint_final.pth").write_bytes(b"")
    calls.pop("train")
    assert bench.run_one(control, args, env, str(tmp_path / "log"))["train_wall_s"] is None and "train" not in calls
    second = bench.parse_run("803:nnUNetTrainerBudget:nnU-Net+pL under ACDC's plans, second run")
    with pytest.raises(NNWError, match="--retrain"):
        bench.run_one(second, args, env, str(tmp_path / "log"))
    args.retrain = True
    assert bench.run_one(second, args, env, str(tmp_path / "log"))["train_wall_s"] == 60.0
    # each row keeps its own per-case copy, named after the table and its label
    assert sorted(p.name for p in (tmp_path / "results" / "per_case").iterdir()) == [
        "mscmr__modelmix-mscmrseg-network-of-the-acdc-run_dense_eval.json",
        "mscmr__nnu-net-pl-under-acdc-s-plans-second-run_dense_eval.json",
        "mscmr__nnu-net-pl-under-acdc-s-plans_dense_eval.json"]


def test_rescoring_keeps_the_timing_of_rows_whose_work_folder_is_gone(tmp_path):
    # a table that outlived its work folder: rescoring (e.g. to add a note) must not wipe measured sec/iter
    rows = [_row("pL", "nnUNetTrainerBudget", 0.5, 0.8, "Dataset801_ACDCScribble"),
            _row("new", "nnUNetTrainerPCE", 0.6, 0.4, "Dataset801_ACDCScribble")]
    for r in rows:
        r["hd95"] = {c: 5.0 for c in r["dice"]}
    _report(rows, tmp_path)
    from nnunet_weak.utilities.timing_file import TIMING_FILE
    fold = tmp_path / "results" / "Dataset801_ACDCScribble" / "nnUNetTrainerPCE__nnUNetPlans__2d_lite" / "fold_0"
    fold.mkdir(parents=True)
    (fold / TIMING_FILE).write_text(json.dumps({"epochs": [9.0, 3.0, 3.0], "iterations_per_epoch": 3}))
    args = types.SimpleNamespace(fold=0, configuration="2d_lite", epochs=2, iters=3, val_iters=1, tta=False,
                                 commands=[],
                                 note=["machine changed"], workdir="/w", out=str(tmp_path / "res"), cost_reference=None)
    env = {k: "1" for k in ("NNW_NUM_EPOCHS", "NNW_ITERS_PER_EPOCH", "NNW_VAL_ITERS_PER_EPOCH",
                            "NNW_SKIP_FINAL_VALIDATION", "nnUNet_n_proc_DA", "nnUNet_compile")}
    env["nnUNet_results"] = str(tmp_path / "results")
    table = bench.rescore_timing(args, env, {"batch_size": 12, "patch_size": [128, 112]})
    rows = {r["label"]: r for r in json.loads((tmp_path / "res.json").read_text())["rows"]}
    assert rows["pL"]["sec_per_iter"] == pytest.approx(0.8)      # no timing file: kept
    assert rows["new"]["sec_per_iter"] == pytest.approx(1.0)     # re-read: median 3.0 s / 3 iterations
    assert "Note: machine changed" in table and "| 1.25 |" in table  # 1.0 / 0.8


def test_precision_column_appears_once_a_row_trained_on_the_fast_path(tmp_path):
    from nnunet_weak.utilities.timing_file import train_precision
    fp32 = [_row("nnU-Net+pL", "nnUNetTrainerBudget", 0.5, 0.8)]
    assert "precision" not in _report(fp32, tmp_path)          # fp32-only tables read as before
    table = _report(fp32 + [{**_row("nnU-Net+pL, fast", "nnUNetTrainerBudget", 0.5, 0.4),
                             "precision": "bf16 autocast (CPU)"}], tmp_path)
    lines = table.splitlines()
    header = next(line for line in lines if line.startswith("| model |"))
    fast = next(line for line in lines if line.startswith("| nnU-Net+pL, fast |"))
    published = next(line for line in lines if line.startswith("| PCLMix (published) |"))
    assert "| precision |" in header and "| bf16 autocast (CPU) |" in fast and "| - |" in lines[lines.index(header) + 2]
    assert header.count("|") == fast.count("|") == published.count("|")
    (tmp_path / "nnunet_weak_timing.json").write_text(json.dumps({"iterations_per_epoch": 1, "epochs": [1.0]}))
    assert train_precision(str(tmp_path)) == "fp32"              # written before the fast path existed
    assert train_precision(str(tmp_path / "missing")) is None


def test_reproduce_line_carries_the_environment_the_runs_used(monkeypatch):
    monkeypatch.setenv("NNW_CPU_BF16", "1")
    monkeypatch.setenv("NNW_SEED", "1")
    assert bench.invocation(["--run", "801:T:a b"]) == \
        'NNW_CPU_BF16=1 NNW_SEED=1 python benchmarks/acdc_benchmark.py --run "801:T:a b"'
    monkeypatch.setenv("NNW_CPU_BF16", "0")
    monkeypatch.delenv("NNW_SEED")
    assert bench.invocation(["--runs", "3"]) == "python benchmarks/acdc_benchmark.py --runs 3"


def _benchmark_script(name):
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(os.path.dirname(__file__), "..", "benchmarks", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_step_cost_compares_fp32_and_fast_path(use_env, tmp_path):
    env, _ = use_env
    step_cost = _benchmark_script("step_cost")
    out = str(tmp_path / "step")
    step_cost.main(["--workdir", os.path.dirname(env["nnUNet_raw"]), "-d", "981", "-c", "2d", "--trainers",
                    "nnUNetTrainerBudget", "nnUNetTrainerPCE", "--repeats", "1", "--out", out])
    rows = json.loads(open(out + ".json").read())
    assert [r["trainer"] for r in rows] == ["nnUNetTrainerBudget", "nnUNetTrainerPCE"]
    for r in rows:
        assert r["modes"]["fp32"]["precision"] == "fp32" and r["speedup_step"] > 0
    assert rows[0]["step_ratio"] == 1.0
    text = open(out + ".md").read()
    assert "fp32 / fast step" in text
    # the CPU that gave the wall times is named, in the rows and in the table
    assert all("CPU cores" in r["machine"] for r in rows) and f"Machine: {rows[0]['machine']}." in text
    # -p: the trainers are built from other plans (e.g. nnU-Net's ResEnc presets), as nnUNetv2_train -p builds them
    pre = os.path.join(env["nnUNet_preprocessed"], "Dataset981_NNWTiny")
    plans = json.loads(open(os.path.join(pre, "nnUNetPlans.json")).read())
    plans["plans_name"] = "nnUNetPlansStepCostTest"
    plans["configurations"]["2d"]["batch_size"] = 3
    other = os.path.join(pre, "nnUNetPlansStepCostTest.json")
    with open(other, "w") as f:
        json.dump(plans, f)
    try:
        step_cost.main(["--workdir", os.path.dirname(env["nnUNet_raw"]), "-d", "981", "-c", "2d", "-p",
                        "nnUNetPlansStepCostTest", "--trainers", "nnUNetTrainerBudget", "--repeats", "1",
                        "--modes", "fast", "--out", out])
    finally:
        os.remove(other)
    row = json.loads(open(out + ".json").read())[0]
    assert (row["plans"], row["batch_size"]) == ("nnUNetPlansStepCostTest", 3)
    assert "(nnUNetPlansStepCostTest)" in open(out + ".md").read().splitlines()[0]


def test_step_cost_table_names_a_trainer_that_refused_the_fast_path():
    step_cost = _benchmark_script("step_cost")

    def row(name, fast_precision):
        return {"trainer": name, "threads": 2, "batch_size": 12, "patch_size": [128, 112],
                "modes": {"fp32": {"precision": "fp32", "step_s": 2.0, "inference_s": 1.0},
                          "fast": {"precision": fast_precision, "step_s": 1.0, "inference_s": 0.5}}}
    args = argparse.Namespace(p="nnUNetPlans", d="801", c="2d_lite", repeats=1, progress=0.5)
    text = step_cost.table([row("A", "bf16 autocast (CPU)"), row("B", "fp32")], ["fp32", "fast"], args, ["x"])
    assert "| A | 2.000 |" in text                      # same precision as the reference row: no remark
    assert "| B (fast: fp32) | 2.000 |" in text


def test_step_profile_splits_a_real_step_by_kind_of_operation(use_env, tmp_path):
    env, _ = use_env
    profile = _benchmark_script("step_profile")
    assert profile.group_of("aten::convolution_backward") == "convolution"
    assert profile.group_of("aten::addmm") == "matrix products"
    assert profile.group_of("aten::_scaled_dot_product_flash_attention_for_cpu") == "attention"
    assert profile.group_of("aten::native_layer_norm_backward") == "normalisation"
    assert profile.group_of("aten::_foreach_add_") == "optimiser"      # not element-wise: the optimiser's rule wins
    assert profile.group_of("aten::_to_copy") == "casts and copies"
    assert profile.group_of("aten::leaky_relu_backward") == "element-wise"
    assert profile.group_of("aten::empty_strided") == "other"
    out = str(tmp_path / "profile")
    profile.main(["--workdir", os.path.dirname(env["nnUNet_raw"]), "-d", "981", "-c", "2d", "--trainer",
                  "nnUNetTrainerBudget", "--steps", "1", "--top", "5", "--copy-shapes", "3", "--out", out])
    data = json.loads(open(out + ".json").read())
    assert set(data["operators"]) == {"fp32", "fast"}
    for ops in data["operators"].values():   # a U-Net step runs convolutions forward and backward
        assert sum(v["self_cpu_s"] for op, v in ops.items() if profile.group_of(op) == "convolution") > 0
    # bf16 autocast casts the float32 input batch for the first convolution: at least one copy of its shape
    fast_copies = data["copies_by_shape"]["fast"]
    firsts = [json.loads(k)[0] for k, v in fast_copies.items() if v["calls"] >= 1]
    assert any(len(shape) == 4 and shape[1] == 1 for shape in firsts), sorted(fast_copies)
    text = open(out + ".md").read()
    assert "| convolution |" in text and "| total |" in text and "Top 5 operators" in text
    assert "`aten::copy_` by input shapes" in text and "| all |" in text
    # without --copy-shapes the JSON keeps its shape, with nothing listed by shape
    profile.main(["--workdir", os.path.dirname(env["nnUNet_raw"]), "-d", "981", "-c", "2d", "--trainer",
                  "nnUNetTrainerBudget", "--steps", "1", "--top", "5", "--out", out + "_plain"])
    plain = json.loads(open(out + "_plain.json").read())
    assert set(plain) == {"operators", "copies_by_shape"} and set(plain["operators"]) == {"fp32", "fast"}
    assert plain["copies_by_shape"] == {}


def test_paseg_step_cost_times_the_regularisers_on_the_planned_network(use_env, tmp_path):
    env, _ = use_env
    cost = _benchmark_script("paseg_step_cost")
    plans = os.path.join(env["nnUNet_preprocessed"], "Dataset981_NNWTiny", "nnUNetPlans.json")
    out = str(tmp_path / "paseg")
    cost.main(["--plans", plans, "--configurations", "2d", "--repeats", "1", "--out", out])
    row = json.loads(open(out + ".json").read())[0]
    assert row["configuration"] == "2d"
    for key in ("step_seg", "step_seg_crf", "step_seg_crf_vm", "step_scm", "crf_alone", "vm_alone"):
        assert row[key] > 0
    assert row["paseg_ratio"] == row["step_seg_crf_vm"] / row["step_seg"]
    assert "| 2d |" in open(out + ".md").read()


def test_iteration_cost_reads_step_and_loader_wait_from_real_training(use_env, tmp_path):
    env, _ = use_env
    cost = _benchmark_script("iteration_cost")
    out = str(tmp_path / "iter")
    cost.main(["--workdir", os.path.dirname(env["nnUNet_raw"]), "-d", "981", "-c", "2d", "--trainers",
               "nnUNetTrainerBudget", "--epochs", "2", "--iters", "2", "--rounds", "1", "--workers", "0",
               "--out", out])
    row = json.loads(open(out + ".json").read())[0]
    fp32, fast = row["modes"]["fp32"], row["modes"]["fast"]
    assert fp32["precision"] == "fp32" and fast["precision"] in ("fp32", "bf16 autocast (CPU)")
    assert 0 <= fp32["wait_per_iter"] < fp32["s_per_iter"]


def test_runs_are_seeded_rows_that_replace_each_others_model_and_are_summarised(tmp_path, monkeypatch):
    runs = bench.expand_runs([bench.parse_run("801:nnUNetTrainerDynamicMix:DynamicMix")], 3)
    assert [(r["label"], r["seed"], r["group"]) for r in runs] == [
        ("DynamicMix, run 1", 1, "DynamicMix"), ("DynamicMix, run 2", 2, "DynamicMix"),
        ("DynamicMix, run 3", 3, "DynamicMix")]
    assert bench.expand_runs(runs[:1], 1) == runs[:1]
    with pytest.raises(NNWError, match="at least 1"):
        bench.expand_runs(runs, 0)
    # continuing a row on another machine: only run 3, seeded and grouped as if --runs 3 had made it
    assert bench.expand_runs([bench.parse_run("801:nnUNetTrainerDynamicMix:DynamicMix")], 3, first=3) == [runs[2]]
    with pytest.raises(NNWError, match="--first-run 4"):
        bench.expand_runs([bench.parse_run("801:nnUNetTrainerDynamicMix:DynamicMix")], 3, first=4)
    # run 1 of 3 now: seeded and labelled as --runs 3 makes it (not the unseeded row of --runs 1)
    assert bench.expand_runs([bench.parse_run("801:nnUNetTrainerDynamicMix:DynamicMix")], 3, last=1) == [runs[0]]
    assert bench.expand_runs([bench.parse_run("801:nnUNetTrainerDynamicMix:DynamicMix")], 3, 2, 2) == [runs[1]]
    for first, last in ((2, 1), (1, 4)):
        with pytest.raises(NNWError, match=f"--last-run {last}"):
            bench.expand_runs([bench.parse_run("801:nnUNetTrainerDynamicMix:DynamicMix")], 3, first, last)
    with pytest.raises(NNWError, match="add --append"):  # refused before any dataset is touched
        bench.main(["--source", str(tmp_path / "nowhere"), "--out", str(tmp_path / "t"), "--runs", "3",
                    "--first-run", "3", "--run", "801:nnUNetTrainerDynamicMix:DynamicMix"])
    with pytest.raises(NNWError, match="--save-every 0"):
        bench.main(["--source", str(tmp_path / "nowhere"), "--out", str(tmp_path / "t"), "--save-every", "0",
                    "--run", "801:nnUNetTrainerDynamicMix:DynamicMix"])

    env = {"nnUNet_raw": str(tmp_path / "raw"), "nnUNet_preprocessed": str(tmp_path / "pre"),
           "nnUNet_results": str(tmp_path / "res")}
    (tmp_path / "pre" / "Dataset801_ACDCScribble").mkdir(parents=True)
    (tmp_path / "pre" / "Dataset801_ACDCScribble" / "nnUNetPlans.json").write_text("{}")
    (tmp_path / "pre" / "Dataset801_ACDCScribble" / "splits_final.json").write_text(
        json.dumps([{"train": [], "val": ["subject1_DE"]}]))
    monkeypatch.setattr(bench, "evaluation_cases", lambda *a: ["patient001_frame01"])
    fold = tmp_path / "res" / "Dataset801_ACDCScribble" / "nnUNetTrainerDynamicMix__nnUNetPlans__2d_lite" / "fold_0"
    seeds, extras = [], []

    def fake_train(dataset_id, configuration, f, trainer, train_env, log, extra, **k):
        assert not (fold / "checkpoint_final.pth").exists()         # the previous run's model was replaced
        fold.mkdir(parents=True, exist_ok=True)
        (fold / "checkpoint_final.pth").write_bytes(b"")
        seeds.append(train_env.get("NNW_SEED"))
        extras.append(list(extra))
        return 60.0
    monkeypatch.setattr(bench.steps, "train", fake_train)
    monkeypatch.setattr(bench.steps, "predict", lambda *a, **k: 4.0)

    def fake_evaluate(pred, reference, classes, file_ending, output_json, output_md, overwrite, allow_missing):
        with open(output_json, "w") as f:
            json.dump(_evaluation({"patient001_frame01": (0.5, 3.0)}), f)
        per_class = {c: {"dice": 0.5 + 0.1 * len(seeds), "hd95": 3.0} for c in classes}
        return {"n_cases": 1, "mean": per_class, "mean_over_classes": {"dice": 0.5 + 0.1 * len(seeds), "hd95": 3.0},
                "empty_predictions": {c: 0 for c in classes}}
    monkeypatch.setattr(scoring, "evaluate_folder", fake_evaluate)
    _raw_images(tmp_path / "raw" / "Dataset801_ACDCScribble", ["patient001_frame01"])
    args = types.SimpleNamespace(configuration="2d_lite", fold=0, pairs=[], retrain=False, resume=False,
                                 tta=False, commands=[],
                                 plans="nnUNetPlans", workdir=str(tmp_path / "work"),
                                 out=str(tmp_path / "results" / "t"), epochs=2, iters=2)
    (tmp_path / "work" / "predictions").mkdir(parents=True)
    rows = [bench.run_one(r, args, env, str(tmp_path / "log")) for r in runs]
    assert seeds == ["1", "2", "3"]
    # the last run's own model is re-scored, not trained again; an earlier run's is trained anew
    assert bench.run_one(runs[2], args, env, str(tmp_path / "log"))["train_wall_s"] is None and len(seeds) == 3
    bench.run_one(runs[0], args, env, str(tmp_path / "log"))
    assert seeds == ["1", "2", "3", "1"]
    assert len(list((tmp_path / "results" / "per_case").iterdir())) == 3

    table = _report(rows + [_row("pL", "nnUNetTrainerBudget", 0.5, 0.5)], tmp_path)
    summary = table[table.index("Over independent runs"):]
    line = next(x for x in summary.splitlines() if x.startswith("| DynamicMix |"))
    assert "| 3 |" in line and "**0.700 +- 0.100**" in line            # runs scored 0.6, 0.7, 0.8
    assert "| pL |" not in summary                                       # a single run has no summary
    assert "Resumed:" not in table and all(r["resumed_at"] == [] for r in rows)

    # run 1 was interrupted after epoch 1 (its checkpoint_latest.pth saved, no final): --resume continues it
    import torch

    def interrupt():
        (fold / "checkpoint_final.pth").unlink()
        torch.save({"current_epoch": 1}, fold / "checkpoint_latest.pth")
    interrupt()
    args.resume = True
    row = bench.run_one(runs[0], args, env, str(tmp_path / "log"))
    assert extras[-1] == ["--c"] and seeds[-1] == "1" and (fold / "checkpoint_latest.pth").exists()
    assert row["resumed_at"] == [1]
    assert "Resumed: 'DynamicMix, run 1' was interrupted and continued (--resume, nnUNetv2_train --c) at epoch 1" \
        in _report([row], tmp_path)
    # ... but never a run another row or another table started: that folder is replaced and trained anew
    interrupt()
    assert bench.run_one(runs[1], args, env, str(tmp_path / "log"))["resumed_at"] == []
    assert extras[-1] == [] and seeds[-1] == "2" and not (fold / "checkpoint_latest.pth").exists()
    interrupt()
    args.out = str(tmp_path / "results" / "other_table")
    bench.run_one(runs[1], args, env, str(tmp_path / "log"))
    assert extras[-1] == [] and not (fold / "checkpoint_latest.pth").exists()
    # and without --resume an interrupted run starts again, as before
    interrupt()
    args.resume = False
    bench.run_one(runs[1], args, env, str(tmp_path / "log"))
    assert extras[-1] == [] and not (fold / "checkpoint_latest.pth").exists()


def test_regenerate_all_plans_every_recorded_run_into_a_new_folder(tmp_path, monkeypatch):
    regen = _benchmark_script("regenerate_all")
    results = tmp_path / "results"
    (results / "per_case").mkdir(parents=True)
    row = dict(_row("pL, run 1", "nnUNetTrainerBudget", 0.5, 0.5), iterations=1000, precision="bf16 autocast (CPU)",
               per_case="per_case/x.json")
    other = dict(row, label="pL, run 2", per_case="per_case/y.json")
    table = {"rows": [row, other], "meta": {"invocation": [
        'python benchmarks/acdc_benchmark.py --source d --run "801:nnUNetTrainerBudget:pL, run 1"']}}
    (results / "t.json").write_text(json.dumps(table))
    (results / "cost.json").write_text(json.dumps({"rows": []}))
    (results / "cost.md").write_text("Reproduce: `python benchmarks/step_cost.py --workdir benchmarks/work -d 801`")
    (results / "cmp.json").write_text(json.dumps({"names": ["a", "b"], "rows": [], "same_runs": True,
                                                  "baseline_files": ["benchmarks/results/per_case/x.json"],
                                                  "method_files": ["benchmarks/results/per_case/y.json"]}))
    (results / "cmq.json").write_text(json.dumps({"names": ["a", "b"], "rows": [],      # an input no table makes
                                                  "baseline_files": ["benchmarks/results/per_case/x.json"],
                                                  "method_files": ["benchmarks/results/per_case/b_net.json"]}))
    (results / "old.json").write_text(json.dumps({"names": ["a", "b"], "rows": []}))
    (results / "z_gpu.json").write_text(json.dumps({"args": {"device": "cuda"}, "steps": [], "round_trips": []}))
    (results / "z_gpu.md").write_text("Reproduce: `python benchmarks/gpu_check.py --out /root/out`")
    steps = regen.plan(str(results), "benchmarks/regen", "benchmarks/work_regen")
    commands = [s["command"] for s in steps]
    assert commands[0].startswith("NNW_CPU_BF16=1 python benchmarks/acdc_benchmark.py")   # a bf16 row
    assert "--out benchmarks/regen/t" in commands[0] and "--workdir benchmarks/work_regen" in commands[0]
    assert steps[0]["seconds"] == pytest.approx(0.5 * 1000 + 3.0 * 40)
    assert commands[1] == ("python benchmarks/step_cost.py --workdir benchmarks/work_regen -d 801 "
                           "--out benchmarks/regen/cost")
    # a GPU report is listed, never run on a CPU machine
    assert commands[2] is None and "needs a CUDA GPU" in steps[2]["note"] and steps[2]["source"] == "z_gpu"
    assert "--baseline benchmarks/regen/per_case/x.json" in commands[3] and "--out benchmarks/regen/cmp" in commands[3]
    assert commands[3].endswith(" --same-runs")
    assert commands[4] is None and "b_net.json" in steps[4]["note"] and "not regenerable" in steps[4]["note"]
    assert commands[5] is None and "not regenerable" in steps[5]["note"] and steps[5]["source"] == "old"
    assert not any("benchmarks/results/" in c for c in commands if c)      # never over the committed results
    ran = []
    monkeypatch.setattr(regen.subprocess, "call", lambda *a, **k: ran.append(a) or 0)
    assert regen.main(["--from-results", str(results)]) == 0 and ran == []  # the plan only
    assert regen.main(["--from-results", str(results), "--results", "benchmarks/results"]) == 2

    # a row of several runs continued later (--first-run): each invocation is estimated from its own runs only
    runs = [dict(_row(f"pL, run {k}", "nnUNetTrainerBudget", 0.5, 0.5), group="pL", run=k, iterations=1000)
            for k in (1, 2, 3)]
    first = 'python benchmarks/acdc_benchmark.py --source d --runs 2 --run "801:nnUNetTrainerBudget:pL"'
    later = first.replace("--runs 2", "--runs 3 --first-run 3 --append")
    assert [r["run"] for r in regen._rows_of(first, runs)] == [1, 2]
    assert [r["run"] for r in regen._rows_of(later, runs)] == [3]
    now = first.replace("--runs 2", "--runs 3 --last-run 1")
    assert [r["run"] for r in regen._rows_of(now, runs)] == [1]
    assert [r["run"] for r in regen._rows_of(now.replace("--last-run 1", "--first-run 2 --append"), runs)] == [2, 3]


def test_epoch_progress_reports_loss_time_and_time_left():
    import io
    from nnunet_weak.experiment.steps import EpochProgress
    out = io.StringIO()
    progress = EpochProgress(4, "[demo] ", out)
    for line in ["2026-01-01 00:00:00: Epoch 0", "2026-01-01 00:00:01: train_loss -0.2", "x: val_loss -0.1",
                 "2026-01-01 00:00:02: Epoch time: 10.0 s", "y: train_loss -0.4", "z: Epoch time: 12.0 s"]:
        progress(line + "\n")
    lines = out.getvalue().splitlines()
    assert lines == ["[demo] epoch 1/4: train loss -0.2, 10.0 s, about 30 s left",
                     "[demo] epoch 2/4: train loss -0.4, 12.0 s, about 22 s left"]
    out = io.StringIO()
    resumed = EpochProgress(4, "", out, done=2)           # a run continued with --c after epoch 2
    resumed("a: train_loss -0.5\n")
    resumed("b: Epoch time: 10.0 s\n")
    assert out.getvalue() == "epoch 3/4: train loss -0.5, 10.0 s, about 10 s left\n"


def test_runs_are_interleaved_and_listed_per_row():
    # run 1 of every row trains before any run 2 (a stopped benchmark keeps comparable runs); the table still
    # lists each row's runs together
    runs = bench.expand_runs([bench.parse_run("801:nnUNetTrainerBudget:pL"),
                              bench.parse_run("801:nnUNetTrainerPCE:pCE")], 2)
    assert [r["label"] for r in runs] == ["pL, run 1", "pCE, run 1", "pL, run 2", "pCE, run 2"]
    rows = [{**_row(r["label"], r["trainer"], 0.5, 1.0), "group": r["group"], "run": r["run"]} for r in runs]
    single = _row("dense", "nnUNetTrainerBudget", 0.9, 1.0)
    assert [r["label"] for r in bench.table_order([single] + rows)] == \
        ["dense", "pL, run 1", "pL, run 2", "pCE, run 1", "pCE, run 2"]


def test_train_fold_reuses_a_finished_fold_and_replaces_an_unfinished_one(tmp_path, monkeypatch):
    # one training routine for nnunet_weak_benchmark and the ACDC harness
    fold = tmp_path / "res" / "fold_0"
    model = scoring.Model(801, "2d_lite", 0, "nnUNetTrainerBudget", str(fold), ["--disable_tta"], ["-p", "P"])
    calls = []

    def fake_train(dataset_id, configuration, f, trainer, env, log, extra, on_line=None, **k):
        assert not (fold / "stale.txt").exists()          # an unfinished or retrained fold is removed first
        calls.append((dataset_id, trainer, list(extra), on_line is not None))
        fold.mkdir(parents=True, exist_ok=True)
        (fold / "checkpoint_final.pth").write_bytes(b"")
        return 7.0
    monkeypatch.setattr(scoring.steps, "train", fake_train)
    fold.mkdir(parents=True)
    (fold / "stale.txt").write_text("an interrupted run")
    assert scoring.train_fold(model, {}, str(tmp_path / "log"), epochs=3) == 7.0
    assert calls == [(801, "nnUNetTrainerBudget", ["-p", "P"], True)]
    assert scoring.train_fold(model, {}, str(tmp_path / "log")) is None and len(calls) == 1    # reused
    (fold / "stale.txt").write_text("")
    assert scoring.train_fold(model, {}, str(tmp_path / "log"), retrain=True) == 7.0
    assert calls[-1][-1] is False and len(calls) == 2                                          # no progress lines


def test_train_fold_resumes_an_interrupted_fold_from_its_checkpoint(tmp_path, monkeypatch):
    import torch
    fold = tmp_path / "res" / "fold_0"
    model = scoring.Model(801, "2d_lite", 0, "nnUNetTrainerBudget", str(fold), ["--disable_tta"], ["-p", "P"])
    calls, started = [], []

    def fake_train(dataset_id, configuration, f, trainer, env, log, extra, on_line=None, **k):
        calls.append((list(extra), (on_line.done, on_line.epochs) if on_line else None,
                      sorted(p.name for p in fold.iterdir())))
        return 7.0
    monkeypatch.setattr(scoring.steps, "train", fake_train)
    fold.mkdir(parents=True)
    torch.save({"current_epoch": 2}, fold / "checkpoint_best.pth")
    torch.save({"current_epoch": 3}, fold / "checkpoint_latest.pth")   # nnU-Net's --c takes this one first
    assert scoring.train_fold(model, {}, str(tmp_path / "log"), epochs=5, resume=True,
                              on_start=started.append) == 7.0
    assert calls[-1] == (["-p", "P", "--c"], (3, 5), ["checkpoint_best.pth", "checkpoint_latest.pth",
                                                 scoring.RESUMED_FILE])
    assert started == [str(fold)] and scoring.resumed_at(str(fold)) == [3]
    torch.save({"current_epoch": 4}, fold / "checkpoint_latest.pth")   # interrupted again, a session later
    scoring.train_fold(model, {}, str(tmp_path / "log"), resume=True)
    assert calls[-1][0] == ["-p", "P", "--c"] and scoring.resumed_at(str(fold)) == [3, 4]
    # --retrain wins over --resume; a fold without a checkpoint starts from the beginning
    scoring.train_fold(model, {}, str(tmp_path / "log"), retrain=True, resume=True)
    assert calls[-1] == (["-p", "P"], None, []) and scoring.resumed_at(str(fold)) == []
    scoring.train_fold(model, {}, str(tmp_path / "log"), resume=True)
    assert calls[-1] == (["-p", "P"], None, [])
    (fold / "checkpoint_latest.pth").write_bytes(b"half a checkpoint")      # killed while copying it
    with pytest.raises(NNWError, match="checkpoint_latest.pth is not a readable checkpoint .* Delete it"):
        scoring.train_fold(model, {}, str(tmp_path / "log"), resume=True)


def test_step_cost_is_compared_only_between_rows_of_one_machine(tmp_path, monkeypatch):
    # an appended run from another machine (e.g. a CPU without native bf16) must not get a cost ratio against
    # the reference row's timing from the first machine, and the header must say which row ran where
    monkeypatch.setattr(bench, "machine", lambda: "machine B")
    old = {**_row("nnU-Net+pL", "nnUNetTrainerBudget", 0.5, 0.5), "machine": "machine A"}
    same = {**_row("pCE, A", "nnUNetTrainerPCE", 0.6, 1.0), "machine": "machine A"}
    other = {**_row("pCE, B", "nnUNetTrainerPCE", 0.6, 2.0), "machine": "machine B"}
    table = _report([old, same, other], tmp_path)
    lines = table.splitlines()
    assert "machine A: nnU-Net+pL, pCE, A; machine B: pCE, B" in table
    assert next(line for line in lines if line.startswith("| pCE, A |")).split(" | ")[10] == "2.00"
    assert next(line for line in lines if line.startswith("| pCE, B |")).split(" | ")[10] == "-"
    # rows that predate per-row machines are attributed to the machine their report names
    one = _report([_row("nnU-Net+pL", "nnUNetTrainerBudget", 0.5, 0.5)], tmp_path)
    assert "Machine: machine B." in one


def test_machine_line_names_the_cpu_model_and_its_native_bf16(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Example CPU 9000\nflags\t\t: fpu avx2\n")
    assert bench.cpu_model(str(info)) == "Example CPU 9000"
    assert bench.cpu_model(str(tmp_path / "missing")) != ""          # falls back, never empty
    line = bench.machine()
    assert "native bf16" in line and "CPU cores" in line
