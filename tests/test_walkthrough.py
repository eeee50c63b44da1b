"""The README's walkthrough "Your own dense dataset to weak-label models", command for command, with installed
console scripts only: from a dense dataset to simulated points, a semi-supervised subset and sparse slices, each
planned with the stock command and benchmarked with one weak trainer (nnU-Net+pL beside one of them)."""
import json
import os
import subprocess
import sys

import pytest

from test_user_commands import dense  # noqa: F401  (the fixture: a dense 3D dataset of 5 cases)

STEPS = [
    ["nnunet_weak_simulate_points", "950", "Dataset958_Points"],
    ["nnunet_weak_make_semi", "950", "Dataset952_Semi", "--count", "2"],
    ["nnunet_weak_sparse_slices", "950", "Dataset951_Sparse", "--every", "2"],
    ["nnUNetv2_plan_and_preprocess", "-d", "958", "952", "951", "-c", "2d", "--verify_dataset_integrity",
     "-np", "1", "-npfp", "1"],
    ["nnunet_weak_benchmark", "-d", "958", "-c", "2d", "--trainers", "nnUNetTrainerPASeg"],
    ["nnunet_weak_benchmark", "-d", "952", "-c", "2d", "--trainers", "nnUNetTrainerDualKMaX_lite"],
    ["nnunet_weak_benchmark", "-d", "951", "-c", "2d", "--trainers", "nnUNetTrainerBudget",
     "nnUNetTrainerDynamicMix"],
]
SHORT = ["--runs", "1", "--epochs", "1", "--iters", "2", "-device", "cpu", "--resamples", "200"]


def _command(name):
    path = os.path.join(os.path.dirname(sys.executable), name)
    assert os.path.exists(path), f"{name} is not an installed console script"
    return path


def test_walkthrough_from_a_dense_dataset_to_benchmarked_weak_models(dense, tmp_path):  # noqa: F811
    env = {**os.environ, "nnUNet_raw": str(tmp_path / "raw"), "nnUNet_preprocessed": str(tmp_path / "pre"),
           "nnUNet_results": str(tmp_path / "results"), "nnUNet_n_proc_DA": "1", "nnUNet_compile": "f",
           "NNW_NUM_THREADS": "1"}
    work = tmp_path / "work"
    work.mkdir()
    for step in STEPS:
        args = [_command(step[0]), *step[1:]]
        if step[0] == "nnunet_weak_benchmark":
            args += SHORT + ["-o", str(work / f"bench_{step[2]}")]
            env["nnUNet_n_proc_DA"] = "0"   # training on the CPU (planning above needs >= 1)
        done = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{' '.join(step)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    for dataset, trainers in (("958", ["nnUNetTrainerPASeg"]), ("952", ["nnUNetTrainerDualKMaX_lite"]),
                              ("951", ["nnUNetTrainerBudget", "nnUNetTrainerDynamicMix"])):
        saved = json.load(open(work / f"bench_{dataset}" / "benchmark.json"))
        assert [r["trainer"] for r in saved["rows"]] == trainers
        assert all(r["n_cases"] >= 1 and 0.0 <= r["mean_dice"] <= 1.0 for r in saved["rows"])
    assert "nnUNetTrainerDynamicMix - nnUNetTrainerBudget" in open(work / "bench_951" / "benchmark.md").read()
    assert not os.path.exists(tmp_path / "results" / "Dataset951_Sparse")   # models stay in the benchmark folders
