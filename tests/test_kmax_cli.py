"""nnUNetTrainerKMaX and the 2D Dual-KMax trainer end to end through the stock CLI: train (1 epoch x 2 iterations)
on the tiny scribble dataset's 2d configuration, then ``nnUNetv2_predict``."""
import glob
import os
import re

import numpy as np
import torch

from conftest import TINY_ID, TINY_NAME
from nnunet_weak.experiment import steps


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


def test_dual_kmax_train_predict_cli(tiny_env, tmp_path):
    """Both networks train (B rides in the checkpoint), A predicts."""
    terms, text, saved = _train_and_predict(tiny_env, tmp_path, "nnUNetTrainerDualKMaX_lite")
    assert {"seg_a", "seg_b", "segc", "qdc"} <= set(terms) and all(np.isfinite(v) for v in terms.values())
    assert "as many labelled samples per step" in text                       # the tiny set has unlabelled cases
    assert set(saved["nnunet_weak_extra_state"]) == {"network_b", "optimizer_b"}
