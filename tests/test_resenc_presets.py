"""nnU-Net's recommended residual-encoder presets (``-pl nnUNetPlannerResEncM``, ``-p nnUNetResEncUNetMPlans``):
every 2D trainer we ship trains, resumes with ``--c`` and predicts through the stock CLI on them (the strict
load of nnUNetv2_predict checks the inference contract), and builds its network on the residual encoder."""
import os

import pytest

from conftest import TINY_ID, TINY_NAME
from nnunet_weak.experiment import steps

PLANS = "nnUNetResEncUNetMPlans"
# one per network and loss family (FewLabels / LabelledOnly differ from PCE only in sampling)
TRAINERS = ["nnUNetTrainerBudget", "nnUNetTrainerPCE", "nnUNetTrainerDynamicMix", "nnUNetTrainerPASeg",
            "nnUNetTrainerPASegAux", "nnUNetTrainerPCLMix", "nnUNetTrainerKMaX_lite", "nnUNetTrainerDualKMaX_lite"]


@pytest.fixture(scope="module")
def resenc_env(tiny_env, tmp_path_factory):
    """The tiny dataset planned with nnUNetPlannerResEncM, preprocessed for 2d, with its lite configurations."""
    env, raw = tiny_env
    log = str(tmp_path_factory.mktemp("resenc") / "plan.log")
    plan_env = {**env, "nnUNet_n_proc_DA": "1"}
    if not os.path.isfile(os.path.join(env["nnUNet_preprocessed"], TINY_NAME, PLANS + ".json")):
        steps.run_command(["nnUNetv2_plan_experiment", "-d", TINY_ID, "-pl", "nnUNetPlannerResEncM"], plan_env, log)
        steps.run_command(["nnUNetv2_preprocess", "-d", TINY_ID, "-plans_name", PLANS, "-c", "2d", "-np", "1"],
                          plan_env, log)
        steps.run_command(["nnunet_weak_add_lite", "-d", TINY_ID, "-p", PLANS], plan_env, log)
    return env, raw


@pytest.mark.parametrize("trainer", TRAINERS)
def test_trainer_round_trip_on_resenc_plans(resenc_env, trainer, tmp_path):
    env, raw = resenc_env
    env = {**env, "nnUNet_results": str(tmp_path / "results")}
    log = str(tmp_path / "cli.log")
    steps.train(TINY_ID, "2d_lite", 0, trainer, env, log, ["-p", PLANS])
    steps.train(TINY_ID, "2d_lite", 0, trainer, {**env, "NNW_NUM_EPOCHS": "2"}, log, ["-p", PLANS, "--c"])
    fold = os.path.join(steps.model_folder(env, TINY_NAME, trainer, "2d_lite", PLANS), "fold_0")
    assert "Epoch 1" in open(max((os.path.join(fold, f) for f in os.listdir(fold) if f.startswith("training_log")),
                                 key=os.path.getmtime)).read()   # the resumed run trained its second epoch
    pred = str(tmp_path / "pred")
    steps.predict(os.path.join(raw, "imagesTs"), pred, TINY_ID, "2d_lite", 0, trainer, env, log,
                  ["-p", PLANS, "--disable_tta"])
    n_images = len([f for f in os.listdir(os.path.join(raw, "imagesTs")) if f.endswith(".nii.gz")])
    assert len([f for f in os.listdir(pred) if f.endswith(".nii.gz")]) == n_images


@pytest.mark.parametrize("trainer", ["nnUNetTrainerPCLMix", "nnUNetTrainerKMaX_lite", "nnUNetTrainerPASeg"])
def test_methods_build_on_the_residual_encoder(resenc_env, use_env, trainer):
    """The method networks keep nnU-Net's residual encoder (not a plain one built beside the plans)."""
    import torch
    from nnunetv2.run.run_training import get_trainer_from_args
    from nnunet_weak.networks.wrappers import unwrap
    t = get_trainer_from_args(str(TINY_ID), "2d_lite", 0, trainer, PLANS, device=torch.device("cpu"))
    t.initialize()
    encoder = unwrap(t.network).encoder
    assert type(encoder).__name__ == "ResidualEncoder"
