"""nnUNetTrainerDKUXNet (lite, AdamW) end to end on the tiny dataset's 3d_lite configuration: a first run (1 epoch x 2 iterations)
through ``nnunetv2.run.run_training.run_training`` (what ``nnUNetv2_train`` calls), a resumed run through the stock
CLI (``nnUNetv2_train ... --c``, a fresh process that must find the trainer and restore network B and its
optimiser), and a prediction with network A through nnU-Net's predictor. The first run and the prediction stay in
this process to keep the file under 90 s on a 2-core box (each CLI start costs ~10 s of imports); both resolve
the trainer by name exactly as the commands do."""
import glob
import os
import re

import numpy as np
import torch

from conftest import TINY_ID, TINY_NAME
from nnunet_weak.experiment import steps

TRAINER, CONFIGURATION = "nnUNetTrainerDKUXNet_lite_AdamW", "3d_lite"   # AdamW counts its steps: resume check


def _last_loss_terms(fold_folder):
    text = "".join(open(p).read() for p in sorted(glob.glob(os.path.join(fold_folder, "training_log_*.txt"))))
    found = re.findall(r"loss terms: (\{.*\})", text)
    assert found, f"no loss terms logged in {fold_folder}"
    return eval(found[-1], {"__builtins__": {}})


def _adam_steps(optimizer_state):
    return {int(s["step"]) for s in optimizer_state["state"].values()}


def test_dkuxnet_train_resume_predict(use_env, tmp_path, monkeypatch):
    env, raw = use_env
    # OMP_WAIT_POLICY=PASSIVE: nnU-Net sets one thread per core on CPU; with a busy neighbour, spinning OpenMP
    # threads make each step ~10x slower
    env = {**{k: v for k, v in env.items() if k != "nnUNet_extTrainer"}, "NNW_SKIP_FINAL_VALIDATION": "1",
           "OMP_WAIT_POLICY": "PASSIVE"}
    monkeypatch.setenv("NNW_SKIP_FINAL_VALIDATION", "1")
    log = str(tmp_path / "cli.log")
    if not os.path.isdir(os.path.join(env["nnUNet_preprocessed"], TINY_NAME, "nnUNetPlans_3d_fullres")):
        steps.run_command(["nnUNetv2_preprocess", "-d", TINY_ID, "-c", "3d_fullres", "-np", "1"],
                          {**env, "nnUNet_n_proc_DA": "1"}, log)
    model = steps.model_folder(env, TINY_NAME, TRAINER, CONFIGURATION)
    fold = os.path.join(model, "fold_0")

    from nnunetv2.run.run_training import run_training
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_training(str(TINY_ID), CONFIGURATION, 0, TRAINER, device=torch.device("cpu"))
    finally:
        torch.set_num_threads(threads)
    terms = _last_loss_terms(fold)
    assert {"seg_a", "seg_b", "query_a", "query_b", "conv_a", "segc", "qdc", "w_cons"} <= set(terms)
    assert all(np.isfinite(v) for v in terms.values()) and terms["labelled"] == 0.5    # b_l = b_u = 2 (the batch doubled)
    first = torch.load(os.path.join(fold, "checkpoint_final.pth"), map_location="cpu", weights_only=False)
    extra = first["nnunet_weak_extra_state"]
    assert set(extra) == {"network_b", "optimizer_b"}
    assert not any(k.startswith("network_b") for k in first["network_weights"])
    assert _adam_steps(extra["optimizer_b"]) == {2}

    steps.train(TINY_ID, CONFIGURATION, 0, TRAINER, {**env, "NNW_NUM_EPOCHS": "2"}, log, ["--c"])
    second = torch.load(os.path.join(fold, "checkpoint_final.pth"), map_location="cpu", weights_only=False)
    assert second["current_epoch"] == 2
    # B's optimiser went on counting (a fresh one would say 2) and B's weights moved a little from the restored
    # ones (a re-initialised B would be far away)
    assert _adam_steps(second["nnunet_weak_extra_state"]["optimizer_b"]) == {4}
    b1, b2 = extra["network_b"], second["nnunet_weak_extra_state"]["network_b"]
    moved = [k for k in b1 if b1[k].is_floating_point() and not torch.equal(b1[k], b2[k])]
    assert moved
    assert max((b1[k] - b2[k]).abs().max().item() for k in moved if "running" not in k) < 1e-2

    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    predictor = nnUNetPredictor(use_mirroring=False, perform_everything_on_device=False, device=torch.device("cpu"),
                                verbose=False, verbose_preprocessing=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(model, (0,), "checkpoint_final.pth")
    assert type(predictor.network).__name__ == "DKUXNet"
    pred = str(tmp_path / "pred")
    os.makedirs(pred)
    predictor.predict_from_files_sequential(os.path.join(raw, "imagesTs"), pred, save_probabilities=False,
                                            overwrite=True)
    assert sorted(f for f in os.listdir(pred) if f.endswith(".nii.gz")) == ["tiny_008.nii.gz", "tiny_009.nii.gz"]
