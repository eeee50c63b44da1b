"""Tiny end-to-end runs through the stock nnU-Net commands, from a 'new shell' (no nnUNet_extTrainer set)."""
import json
import os
import shutil
import subprocess

import pytest
import torch

from conftest import TINY_ID, TINY_NAME
from nnunet_weak.experiment import steps
from nnunet_weak.utilities import timing_file
from nnunet_weak.utilities.errors import NNWError


def fresh_shell_env(env):
    """The experiment's variables, minus anything our own process may have added."""
    return {k: v for k, v in env.items() if k != "nnUNet_extTrainer"}


def test_train_resume_predict_evaluate_pce(tiny_env, tmp_path):
    env, raw = tiny_env
    env = fresh_shell_env(env)
    log = str(tmp_path / "cli.log")
    steps.train(TINY_ID, "2d_lite", 0, "nnUNetTrainerPCE", env, log)
    fold = os.path.join(steps.model_folder(env, TINY_NAME, "nnUNetTrainerPCE", "2d_lite"), "fold_0")
    first = torch.load(os.path.join(fold, "checkpoint_final.pth"), map_location="cpu", weights_only=False)
    assert first["trainer_name"] == "nnUNetTrainerPCE" and first["current_epoch"] == 1
    assert timing_file.train_seconds_per_iteration(fold) > 0

    # --c resumes from checkpoint_final and trains the missing epoch
    steps.train(TINY_ID, "2d_lite", 0, "nnUNetTrainerPCE", {**env, "NNW_NUM_EPOCHS": "2"}, log, ["--c"])
    second = torch.load(os.path.join(fold, "checkpoint_final.pth"), map_location="cpu", weights_only=False)
    assert second["current_epoch"] == 2
    with open(os.path.join(fold, "nnunet_weak_timing.json")) as f:
        assert len(json.load(f)["epochs"]) == 2

    pred = str(tmp_path / "pred")
    steps.predict(os.path.join(raw, "imagesTs"), pred, TINY_ID, "2d_lite", 0, "nnUNetTrainerPCE", env, log)
    assert sorted(f for f in os.listdir(pred) if f.endswith(".nii.gz")) == ["tiny_008.nii.gz", "tiny_009.nii.gz"]
    steps.run_command(["nnunet_weak_evaluate", "-pred", pred, "-ref", os.path.join(raw, "labelsTs"),
                       "-djfile", os.path.join(raw, "dataset.json"), "-o", str(tmp_path / "eval")], env, log)
    with open(tmp_path / "eval.json") as f:
        result = json.load(f)
    assert result["n_cases"] == 2 and set(result["mean"]) == {"RV", "MYO", "LV"}
    assert 0.0 <= result["mean_over_classes"]["dice"] <= 1.0


def _clone_dataset(env, new_id, name, labels):
    """A preprocessed dataset folder sharing the tiny plans but with other labels in dataset.json."""
    src = os.path.join(env["nnUNet_preprocessed"], TINY_NAME)
    dst = os.path.join(env["nnUNet_preprocessed"], f"Dataset{new_id}_{name}")
    os.makedirs(dst, exist_ok=True)
    with open(os.path.join(src, "nnUNetPlans.json")) as f:
        plans = json.load(f)
    plans["dataset_name"] = f"Dataset{new_id}_{name}"
    with open(os.path.join(dst, "nnUNetPlans.json"), "w") as f:
        json.dump(plans, f)
    with open(os.path.join(src, "dataset.json")) as f:
        dataset = json.load(f)
    dataset["labels"] = labels
    with open(os.path.join(dst, "dataset.json"), "w") as f:
        json.dump(dataset, f)
    return dst


@pytest.mark.parametrize("new_id,name,labels,message", [
    (982, "NNWNoIgnore", {"background": 0, "RV": 1, "MYO": 2, "LV": 3}, "declares no 'ignore' label"),
    (983, "NNWBadIgnore", {"background": 0, "RV": 1, "MYO": 2, "LV": 3, "ignore": 7}, "requires it to be the highest value"),
])
def test_bad_dataset_gives_one_line(tiny_env, tmp_path, new_id, name, labels, message):
    env, _ = tiny_env
    dst = _clone_dataset(env, new_id, name, labels)
    proc = subprocess.run([steps._console("nnUNetv2_train"), str(new_id), "2d_lite", "0", "-tr", "nnUNetTrainerPCE",
                           "-device", "cpu"], env=fresh_shell_env(env), capture_output=True, text=True)
    shutil.rmtree(dst)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("nnunet_weak error: ") and message in last and "dataset.json" in last
    assert "Traceback" not in proc.stderr


def test_missing_results_variable_is_named(tiny_env):
    env = {k: v for k, v in fresh_shell_env(tiny_env[0]).items() if k != "nnUNet_results"}
    proc = subprocess.run([steps._console("nnUNetv2_train"), str(TINY_ID), "2d_lite", "0", "-tr",
                           "nnUNetTrainerPCE", "-device", "cpu"], env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "nnUNet_results" in proc.stderr.strip().splitlines()[-1]


def test_step_failure_names_log(tiny_env, tmp_path):
    env, _ = tiny_env
    with pytest.raises(NNWError, match="failed.*full log"):
        steps.train(TINY_ID, "2d_lite", 0, "nnUNetTrainerDoesNotExist", env, str(tmp_path / "x.log"))
