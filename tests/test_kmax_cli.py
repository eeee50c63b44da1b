"""nnUNetTrainerKMaX and the 2D Dual-KMax trainer end to end through the stock CLI: train (1 epoch x 2 iterations)
on the tiny scribble dataset's 2d configuration, then ``nnUNetv2_predict``."""
import glob
import json
import importlib.util
import os
import re

import numpy as np
import pytest
import torch

from conftest import TINY_ID, TINY_NAME
from nnunet_weak.experiment import steps
from nnunet_weak.utilities.errors import NNWError

_spec = importlib.util.spec_from_file_location(
    "second_network_eval", os.path.join(os.path.dirname(__file__), "..", "benchmarks", "second_network_eval.py"))
second_network = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(second_network)


def _train_and_predict(tiny_env, tmp_path, trainer):
    """Train ``trainer`` on the tiny 2d configuration, predict the test cases; (last loss terms, training log
    text, saved checkpoint)."""
    env, raw = tiny_env
    env = {**{k: v for k, v in env.items() if k != "nnUNet_extTrainer"}, "NNW_SKIP_FINAL_VALIDATION": "1",
           "OMP_WAIT_POLICY": "PASSIVE"}
    log = str(tmp_path / "cli.log")
    fold = os.path.join(steps.model_folder(env, TINY_NAME, trainer, "2d"), "fold_0")
    steps.train(TINY_ID, "2d", 0, trainer, env, log)
    text = "".join(open(p).read() for p in glob.glob(os.path.join(fold, "training_log_*.txt")))
    terms = eval(re.findall(r"loss terms: (\{.*\})", text)[-1], {"__builtins__": {}})
    saved = torch.load(os.path.join(fold, "checkpoint_final.pth"), map_location="cpu", weights_only=False)
    pred = str(tmp_path / "pred")
    steps.predict(os.path.join(raw, "imagesTs"), pred, TINY_ID, "2d", 0, trainer, env, log, ["--disable_tta"])
    assert sorted(f for f in os.listdir(pred) if f.endswith(".nii.gz")) == ["tiny_008.nii.gz", "tiny_009.nii.gz"]
    return terms, text, saved


def test_kmax_train_predict_cli(tiny_env, tmp_path):
    terms, _, saved = _train_and_predict(tiny_env, tmp_path, "nnUNetTrainerKMaX")
    assert set(terms) == {"seg", "conv"} and all(np.isfinite(v) for v in terms.values())
    assert any(k.startswith("kmax.") for k in saved["network_weights"])


def test_dual_kmax_train_predict_cli(tiny_env, tmp_path, capsys):
    """Both networks train (the second rides in the checkpoint), B predicts; the diagnostic scores the second."""
    terms, text, saved = _train_and_predict(tiny_env, tmp_path, "nnUNetTrainerDualKMaX_lite")
    assert {"seg_a", "seg_b", "segc", "qdc"} <= set(terms) and all(np.isfinite(v) for v in terms.values())
    assert "as many labelled samples per step" in text                       # the tiny set has unlabelled cases
    assert "forced foreground on the same share of them" in text
    assert set(saved["nnunet_weak_extra_state"]) == {"network_b", "optimizer_b"}

    # the diagnostic's copy holds the second network as network_weights
    env, raw = tiny_env
    fold = os.path.join(steps.model_folder(env, TINY_NAME, "nnUNetTrainerDualKMaX_lite", "2d"), "fold_0")
    root, dataset_id, configuration, trainer, plans, fold_name = second_network.model_copy(fold, str(tmp_path / "b"))
    assert (dataset_id, configuration, trainer, plans, fold_name) == (TINY_ID, "2d", "nnUNetTrainerDualKMaX_lite",
                                                                      "nnUNetPlans", "0")
    copied = torch.load(os.path.join(root, TINY_NAME, "nnUNetTrainerDualKMaX_lite__nnUNetPlans__2d", "fold_0",
                                     "checkpoint_final.pth"), map_location="cpu", weights_only=False)
    second = saved["nnunet_weak_extra_state"]["network_b"]
    assert all(torch.equal(copied["network_weights"][k], second[k]) for k in second)
    assert not all(torch.equal(saved["network_weights"][k], second[k]) for k in second)   # the two differ

    # ... and predicts and scores it through the stock CLI and the benchmark's scoring
    per_case = str(tmp_path / "second.json")
    assert second_network.main(["--fold-folder", fold, "--inputs", os.path.join(raw, "imagesTs"), "--ref",
                                os.path.join(raw, "labelsTs"), "--per-case", per_case,
                                "--work", str(tmp_path / "b2")]) == 0
    scored = json.load(open(per_case))
    assert sorted(scored["per_case"]) == ["tiny_008", "tiny_009"] and scored["n_cases"] == 2
    assert "second network (network_b)" in capsys.readouterr().out
    assert second_network.main(["--fold-folder", fold, "--inputs", str(tmp_path / "nothing"), "--ref",
                                os.path.join(raw, "labelsTs"), "--per-case", per_case,
                                "--work", str(tmp_path / "b3")]) == 1
    assert "holds no images named CASE_0000.nii.gz" in capsys.readouterr().err


def test_second_network_refuses_single_network_checkpoints():
    single = {"network_weights": {"w": torch.zeros(1)}}
    with pytest.raises(NNWError, match="ckpt.pth holds no extra network 'network_b'"):
        second_network.swapped_checkpoint(single, "ckpt.pth")
    other = {"network_weights": {"w": torch.zeros(1)},
             "nnunet_weak_extra_state": {"network_b": {"v": torch.zeros(1)}}}
    with pytest.raises(NNWError, match="different parameters"):
        second_network.swapped_checkpoint(other, "ckpt.pth")
    pair = {"network_weights": {"w": torch.zeros(1)}, "optimizer_state": {},
            "nnunet_weak_extra_state": {"network_b": {"w": torch.ones(1)}}}
    swapped = second_network.swapped_checkpoint(pair, "ckpt.pth")
    assert torch.equal(swapped["network_weights"]["w"], torch.ones(1))
    assert "nnunet_weak_extra_state" not in swapped and "optimizer_state" not in swapped
    assert torch.equal(pair["network_weights"]["w"], torch.zeros(1))          # the original is left alone


def test_second_network_refuses_folders_nnunet_did_not_write(tmp_path):
    with pytest.raises(NNWError, match="checkpoint_final.pth not found"):
        second_network.model_copy(str(tmp_path / "fold_0"), str(tmp_path / "work"))
    odd = tmp_path / "somewhere" / "fold_0"
    odd.mkdir(parents=True)
    (odd / "checkpoint_final.pth").write_bytes(b"")
    with pytest.raises(NNWError, match="not laid out as nnUNet_results"):
        second_network.model_copy(str(odd), str(tmp_path / "work"))
