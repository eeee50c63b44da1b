"""nnU-Net's recommended residual-encoder presets (``-pl nnUNetPlannerResEncM``, ``-p nnUNetResEncUNetMPlans``):
every 2D trainer we ship trains, resumes with ``--c`` and predicts through the stock CLI on them (the strict
load of nnUNetv2_predict checks the inference contract), and builds its network on the residual encoder."""
import os

import pytest

from conftest import TINY_ID, TINY_NAME
from nnunet_weak.experiment import steps

PLANS = "nnUNetResEncUNetMPlans"
# one per network and loss family (FewLabels / LabelledOnly differ from PCE only in sampling)
# (the PA-Seg family and ModelMix have their own round trips below)
TRAINERS = ["nnUNetTrainerBudget", "nnUNetTrainerPCE", "nnUNetTrainerDynamicMix", "nnUNetTrainerPCLMix",
            "nnUNetTrainerKMaX_lite", "nnUNetTrainerDualKMaX_lite"]


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


def test_paseg_stages_round_trip_on_resenc_plans(resenc_env, tmp_path):
    """Stage 1 on both networks (PASeg resumed with --c, PASegAux predicted), then SCM from those two models of
    the same ResEnc plans: trained, resumed and predicted."""
    env, raw = resenc_env
    env = {**env, "nnUNet_results": str(tmp_path / "results")}
    log = str(tmp_path / "cli.log")

    def log_text(trainer):
        fold = os.path.join(steps.model_folder(env, TINY_NAME, trainer, "2d_lite", PLANS), "fold_0")
        return "".join(open(os.path.join(fold, f)).read() for f in os.listdir(fold) if f.startswith("training_log"))

    def predict(trainer):
        pred = str(tmp_path / f"pred_{trainer}")
        steps.predict(os.path.join(raw, "imagesTs"), pred, TINY_ID, "2d_lite", 0, trainer, env, log,
                      ["-p", PLANS, "--disable_tta"])
        assert len([f for f in os.listdir(pred) if f.endswith(".nii.gz")]) == 2

    # two iterations of stage 1 learn no class: SCM's check of stage 1 (tested on its own) would refuse them
    env["NNW_STAGE1_CHECK"] = "0"
    for trainer in ("nnUNetTrainerPASeg", "nnUNetTrainerPASegAux", "nnUNetTrainerPASegSCM"):
        steps.train(TINY_ID, "2d_lite", 0, trainer, env, log, ["-p", PLANS])
    for trainer in ("nnUNetTrainerPASeg", "nnUNetTrainerPASegSCM"):
        steps.train(TINY_ID, "2d_lite", 0, trainer, {**env, "NNW_NUM_EPOCHS": "2"}, log, ["-p", PLANS, "--c"])
        assert "Epoch 1" in log_text(trainer)
    assert "stage 2 starts from" in log_text("nnUNetTrainerPASegSCM")
    assert "stage-1 class check off" in log_text("nnUNetTrainerPASegSCM")
    predict("nnUNetTrainerPASegAux")
    predict("nnUNetTrainerPASegSCM")


def test_modelmix_round_trip_on_resenc_plans(tmp_path):
    """Both tasks under the target's ResEnc plans: pair, train, resume, predict; the auxiliary network is a
    residual encoder U-Net too, so the mixed convolutions come from residual blocks."""
    import numpy as np
    import SimpleITK as sitk
    import torch
    from nnunet_weak.demo.dataset import write_demo_dataset
    from nnunet_weak.planning.pair_datasets import main as pair_main
    from nnunet_weak.planning.pairing_io import aux_plans_name
    from test_modelmix_cli import _write_splits
    from conftest import TINY_SHAPE
    from test_modelmix_pairing import AUX, AUX_ID, TARGET, TARGET_ID, make_two_channel_heart_dataset, set_paths
    env = steps.nnunet_environment(str(tmp_path), nnUNet_n_proc_DA="1")
    log = str(tmp_path / "cli.log")
    write_demo_dataset(os.path.join(env["nnUNet_raw"], TARGET), 3, 0, seed=0, shape=TINY_SHAPE, prefix="a")
    write_demo_dataset(os.path.join(env["nnUNet_raw"], AUX), 3, 0, seed=1, shape=TINY_SHAPE, prefix="b")
    make_two_channel_heart_dataset(os.path.join(env["nnUNet_raw"], AUX))
    steps.run_command(["nnUNetv2_plan_and_preprocess", "-d", TARGET_ID, "-pl", "nnUNetPlannerResEncM", "-c", "2d",
                       "-np", "1"], env, log)
    with pytest.MonkeyPatch.context() as mp:
        set_paths(mp, env)
        assert pair_main(["-t", str(TARGET_ID), "-a", str(AUX_ID), "-c", "2d", "-p", PLANS]) == 0
    _write_splits(env, TARGET, "a")
    _write_splits(env, AUX, "b")
    env = {k: v for k, v in env.items() if k != "nnUNet_extTrainer"}
    env.update({"nnUNet_n_proc_DA": "0", "NNW_NUM_EPOCHS": "1", "NNW_ITERS_PER_EPOCH": "2",
                "NNW_VAL_ITERS_PER_EPOCH": "1", "NNW_SKIP_FINAL_VALIDATION": "1"})
    trainer = "nnUNetTrainerModelMix"
    steps.train(TARGET_ID, "2d", 0, trainer, env, log, ["-p", PLANS])
    steps.train(TARGET_ID, "2d", 0, trainer, {**env, "NNW_NUM_EPOCHS": "2"}, log, ["-p", PLANS, "--c"])
    fold = os.path.join(steps.model_folder(env, TARGET, trainer, "2d", PLANS), "fold_0")
    checkpoint = torch.load(os.path.join(fold, "checkpoint_final.pth"), map_location="cpu", weights_only=False)
    extra = checkpoint["nnunet_weak_extra_state"]
    assert checkpoint["current_epoch"] == 2
    assert extra["modelmix_aux"]["plans_name"] == aux_plans_name(PLANS, TARGET)
    assert any(".blocks." in k for k in checkpoint["network_weights"])            # residual encoder, both sides
    assert any(".blocks." in k for k in extra["modelmix_aux_network"])
    inputs, outputs = str(tmp_path / "in"), str(tmp_path / "out")
    os.makedirs(inputs)
    name = "a_002_0000.nii.gz"
    os.symlink(os.path.join(env["nnUNet_raw"], TARGET, "imagesTr", name), os.path.join(inputs, name))
    steps.predict(inputs, outputs, TARGET_ID, "2d", 0, trainer, env, log, ["-p", PLANS, "--disable_tta"])
    prediction = sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(outputs, "a_002.nii.gz")))
    assert set(np.unique(prediction).tolist()) <= {0, 1, 2, 3}
