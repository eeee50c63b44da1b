"""nnUNetTrainerModelMix through the stock CLI: pair two tiny datasets, train, resume, predict the target with
nnUNetv2_predict, export the auxiliary network as a fold of the auxiliary dataset and predict that too."""
import json
import os
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunet_weak.experiment import steps
from nnunet_weak.training.modelmix_export import main as export_main
from nnunet_weak.utilities.errors import NNWError
from test_modelmix_pairing import AUX, AUX_ID, AUX_LABELS, AUX_PLANS, TARGET, TARGET_ID, build_paired_env

TRAINER = "nnUNetTrainerModelMix"


def _write_splits(env: dict, dataset: str, prefix: str) -> None:
    splits = [{"train": [f"{prefix}_000", f"{prefix}_001"], "val": [f"{prefix}_002"]}]
    with open(os.path.join(env["nnUNet_preprocessed"], dataset, "splits_final.json"), "w") as f:
        json.dump(splits, f)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("modelmix_cli"))
    env = build_paired_env(root)
    _write_splits(env, TARGET, "a")
    _write_splits(env, AUX, "b")
    env = {k: v for k, v in env.items() if k != "nnUNet_extTrainer"}
    env.update({"nnUNet_n_proc_DA": "0", "NNW_NUM_EPOCHS": "1", "NNW_ITERS_PER_EPOCH": "2",
                "NNW_VAL_ITERS_PER_EPOCH": "1", "NNW_SKIP_FINAL_VALIDATION": "1"})
    log = os.path.join(root, "cli.log")
    steps.train(TARGET_ID, "2d", 0, TRAINER, env, log)
    return env, root, log


def _fold(env, dataset, trainer, plans="nnUNetPlans"):
    return os.path.join(steps.model_folder(env, dataset, trainer, "2d", plans), "fold_0")


def _checkpoint(env):
    return torch.load(os.path.join(_fold(env, TARGET, TRAINER), "checkpoint_final.pth"), map_location="cpu",
                      weights_only=False)


def test_checkpoint_holds_the_plain_target_network_and_the_aux_state(trained):
    env, _, _ = trained
    checkpoint = _checkpoint(env)
    plans = PlansManager(checkpoint["init_args"]["plans"])
    network = nnUNetTrainer.build_network_architecture(
        plans, plans.get_configuration("2d"), 1, 4, enable_deep_supervision=False)
    network.load_state_dict(checkpoint["network_weights"], strict=True)
    extra = checkpoint["nnunet_weak_extra_state"]
    assert extra["modelmix_aux"]["dataset"] == AUX and extra["modelmix_aux"]["plans_name"] == AUX_PLANS
    aux_weights = extra["modelmix_aux_network"]
    assert aux_weights["encoder.stages.0.0.convs.0.conv.weight"].shape[1] == 2      # B has two channels
    assert aux_weights["decoder.seg_layers.0.weight"].shape[0] == len(AUX_LABELS) - 1   # and its own classes
    # the target's output folder keeps the target's plans and dataset.json
    with open(os.path.join(os.path.dirname(_fold(env, TARGET, TRAINER)), "dataset.json")) as f:
        assert "ignore" in json.load(f)["labels"] and checkpoint["init_args"]["dataset_json"]["labels"]["RV"] == 1
    log = [f for f in os.listdir(_fold(env, TARGET, TRAINER)) if f.startswith("training_log")]
    text = open(os.path.join(_fold(env, TARGET, TRAINER), sorted(log)[-1])).read()
    terms = json.loads(text.split("loss terms: ")[-1].splitlines()[0].replace("'", '"'))
    for side in ("A", "B"):
        for term in ("sup", "mix", "mixcons", "vsup", "vreg"):
            assert np.isfinite(terms[f"{side}_{term}"])


def test_resume_continues_the_aux_network(trained):
    env, _, log = trained
    first = _checkpoint(env)["nnunet_weak_extra_state"]["modelmix_aux_network"]
    steps.train(TARGET_ID, "2d", 0, TRAINER, {**env, "NNW_NUM_EPOCHS": "2"}, log, ["--c"])
    second = _checkpoint(env)
    assert second["current_epoch"] == 2
    moved = second["nnunet_weak_extra_state"]["modelmix_aux_network"]
    assert any(not torch.equal(first[k], moved[k]) for k in first)


def test_predict_target_export_and_predict_aux(trained):
    env, root, log = trained
    for dataset, prefix, trainer, plans, channels, labels in (
            (TARGET, "a", TRAINER, "nnUNetPlans", 1, {0, 1, 2, 3}),
            (AUX, "b", "nnUNetTrainerModelMixAux", AUX_PLANS, 2, {0, 1})):
        if dataset == AUX:
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("nnUNet_results", env["nnUNet_results"])
                export_main(["-d", str(TARGET_ID), "-c", "2d", "-f", "0"])
                with pytest.raises(NNWError, match="--overwrite"):
                    export_main(["-d", str(TARGET_ID), "-c", "2d", "-f", "0"])
        images = os.path.join(env["nnUNet_raw"], dataset, "imagesTr")
        inputs, outputs = os.path.join(root, f"in_{prefix}"), os.path.join(root, f"out_{prefix}")
        os.makedirs(inputs, exist_ok=True)
        for c in range(channels):
            shutil.copy(os.path.join(images, f"{prefix}_002_{c:04d}.nii.gz"), inputs)
        dataset_id = TARGET_ID if dataset == TARGET else AUX_ID
        steps.predict(inputs, outputs, dataset_id, "2d", 0, trainer, env, log, ["-p", plans, "--disable_tta"])
        prediction = sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(outputs, f"{prefix}_002.nii.gz")))
        assert set(np.unique(prediction).tolist()) <= labels
