"""``nnunet_weak_benchmark`` on a user's own dataset: runs through the stock CLI, a table over runs with paired
comparisons, nothing written outside its output folder, continuing an interrupted benchmark, and refusals."""
import json
import os

import pytest

from conftest import TINY_ID, TINY_NAME
from nnunet_weak.experiment import benchmark
from nnunet_weak.utilities.errors import NNWError


def _listing(folder):
    return sorted(os.path.relpath(os.path.join(r, n), folder) for r, _, names in os.walk(folder) for n in names)


def _args(out, *extra, trainers=("nnUNetTrainerBudget", "nnUNetTrainerPCE")):
    return ["-d", str(TINY_ID), "-c", "2d", "--trainers", *trainers, "--epochs", "1", "--iters", "2",
            "-o", str(out), "-device", "cpu", "--resamples", "200", *extra]


def test_benchmark_trains_runs_and_compares_without_touching_nnunet_results(use_env, tmp_path, capsys):
    env, raw = use_env
    results_before = _listing(env["nnUNet_results"])
    out = tmp_path / "bench"
    benchmark.main(_args(out, "--runs", "2"))
    assert _listing(env["nnUNet_results"]) == results_before   # the user's models stay as they were
    saved = json.load(open(out / "benchmark.json"))
    runs = sorted((r["trainer"], r["run"]) for r in saved["rows"])
    assert runs == [("nnUNetTrainerBudget", 1), ("nnUNetTrainerBudget", 2), ("nnUNetTrainerPCE", 1),
                    ("nnUNetTrainerPCE", 2)]
    splits = json.load(open(os.path.join(env["nnUNet_preprocessed"], TINY_NAME, "splits_final.json")))
    assert all(r["n_cases"] == len(splits[0]["val"]) for r in saved["rows"])   # the demo data has every reference
    for r in saved["rows"]:
        per_case = json.load(open(out / r["per_case"]))
        assert sorted(per_case["per_case"]) == sorted(splits[0]["val"])
        assert 0.0 <= r["mean_dice"] <= 1.0 and set(r["dice"]) == {"RV", "MYO", "LV"}
    # each run trained with its own seed in its own results folder
    for run in (1, 2):
        log = [f for f in _listing(out / "work" / f"run_{run}") if "training_log" in f and "PCE" in f]
        text = open(out / "work" / f"run_{run}" / log[0]).read()
        assert f"NNW_SEED={run}" in text
    comparison = saved["comparisons"]["nnUNetTrainerPCE"]
    assert comparison["baseline"] == "nnUNetTrainerBudget" and len(comparison["runs"]["method"]["runs"]) == 2
    md = open(out / "benchmark.md").read()
    assert "# nnUNetTrainerPCE - nnUNetTrainerBudget, paired per case" in md
    assert "Fewer than 3 runs per trainer" in md and os.path.isfile(out / "benchmark.png")
    assert "nnUNetv2_train 981 2d 0 -tr nnUNetTrainerPCE -device cpu" in md


def test_benchmark_continues_and_refuses_what_it_did_not_write(use_env, tmp_path):
    out = tmp_path / "bench"
    one = ("nnUNetTrainerBudget",)
    benchmark.main(_args(out, "--runs", "1", trainers=one))
    benchmark.main(_args(out, "--runs", "1", trainers=one))   # a second call scores the existing run again
    md = open(out / "benchmark.md").read()
    ran = md[md.index("Commands run by this call"):]
    assert "nnUNetv2_predict" in ran and "nnUNetv2_train" not in ran
    # killed before its final checkpoint: --resume continues from checkpoint_best.pth through the stock --c
    fold = next((out / "work" / "run_1").glob("nnUNet_results/*/nnUNetTrainerBudget__*/fold_0"))
    (fold / "checkpoint_final.pth").unlink()
    benchmark.main(_args(out, "--runs", "1", "--resume", trainers=one))
    md = open(out / "benchmark.md").read()
    ran = md[md.index("Commands run by this call"):]
    assert "-tr nnUNetTrainerBudget -device cpu --c" in ran and (fold / "checkpoint_final.pth").is_file()
    assert "Resumed: nnUNetTrainerBudget, run 1 was interrupted and continued (--resume, nnUNetv2_train --c) at " \
           "epoch 1;" in md
    with pytest.raises(NNWError, match=r"holds a benchmark of another setup \(epochs 1 there, 2 now\)"):
        benchmark.main(_args(out, "--runs", "1", "--epochs", "2", trainers=one))
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("my own file")
    with pytest.raises(NNWError, match="holds files this benchmark did not write"):
        benchmark.main(_args(foreign))
    assert (foreign / "notes.txt").read_text() == "my own file"


def test_benchmark_names_a_missing_reference_and_configuration(use_env, tmp_path, monkeypatch):
    with pytest.raises(NNWError, match=r"reference folder .*elsewhere not found: pass --ref"):
        benchmark.main(_args(tmp_path / "a", "--ref", str(tmp_path / "elsewhere")))
    empty = tmp_path / "refs"
    empty.mkdir()
    with pytest.raises(NNWError, match="none of the 3 validation cases of fold 0 has a reference"):
        benchmark.main(_args(tmp_path / "b", "--ref", str(empty)))
    with pytest.raises(NNWError, match=r"has no configuration '2d_big'.*nnunet_weak_add_lite -d 981"):
        benchmark.main(_args(tmp_path / "c") + ["-c", "2d_big"])
    # the tiny dataset's plans without any preprocessed data (other tests preprocess its 3d_fullres)
    plans_only = tmp_path / "plans_only" / TINY_NAME
    plans_only.mkdir(parents=True)
    for name in ("nnUNetPlans.json", "dataset.json"):
        (plans_only / name).write_text(open(os.path.join(use_env[0]["nnUNet_preprocessed"], TINY_NAME, name)).read())
    monkeypatch.setenv("nnUNet_preprocessed", str(plans_only.parent))
    with pytest.raises(NNWError, match=r"configuration '3d_fullres' is planned but not preprocessed"):
        benchmark.main(_args(tmp_path / "d") + ["-c", "3d_fullres"])
