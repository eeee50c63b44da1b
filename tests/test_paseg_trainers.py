"""PA-Seg trainers: the stage-1 loss, the augmentation it switches off, the peer architecture, knowledge
distillation, and stage 1 -> stage 2 -> resume -> predict through the stock CLI, in 2D and 3D."""
import glob
import json
import os
import re

import numpy as np
import pytest
import torch

from conftest import TINY_ID, TINY_NAME
from nnunet_weak.experiment import steps
from nnunet_weak.losses.distillation import KnowledgeDistillationLoss
from nnunet_weak.training.contract import check_inference_contract
from nnunet_weak.training.paseg import AFFINITY_DESTROYING
from nnunet_weak.utilities.errors import NNWError
from nnunet_weak.utilities.ramps import OnsetGate
from test_trainer_plumbing import make_trainer


def _kinds(pipeline):
    out = []
    for t in pipeline.transforms:
        out.append(type(getattr(t, "transform", t)))
        if hasattr(t, "transforms"):
            out += _kinds(t)
    return out


# ------------------------------------------------------------------------------------------------- losses
def test_kd_matches_hand_computation():
    student = torch.tensor([[[1.0, 0.0]], [[0.0, 2.0]]]).permute(1, 0, 2)  # (b=1, C=2, 2 voxels)
    teacher = torch.tensor([[[0.0, 0.0]], [[3.0, -1.0]]]).permute(1, 0, 2)
    t = 4.0
    expected = 0.0
    for v in range(2):
        p = np.exp(student[0, :, v].numpy() / t)
        p /= p.sum()
        q = np.exp(teacher[0, :, v].numpy() / t)
        q /= q.sum()
        expected += float((q * (np.log(q) - np.log(p))).sum())
    expected = expected / 2 * t * t
    assert KnowledgeDistillationLoss(t)(student, teacher).item() == pytest.approx(expected, rel=1e-5)
    assert KnowledgeDistillationLoss(t)(teacher, teacher).item() == pytest.approx(0.0, abs=1e-7)


def test_kd_gradient_reaches_student_only():
    student = torch.randn(2, 3, 4, 4, requires_grad=True)
    teacher = torch.randn(2, 3, 4, 4, requires_grad=True)
    KnowledgeDistillationLoss(4.0)(student, teacher).backward()
    assert student.grad is not None and torch.isfinite(student.grad).all() and teacher.grad is None


# ------------------------------------------------------------------------------------------------ trainers
def test_paseg_switches_off_affinity_destroying_augmentation(use_env):
    def pipeline(name):
        trainer = make_trainer(name)
        return _kinds(trainer.get_training_transforms(trainer.configuration_manager.patch_size, (0, 0), None, (),
                                                      False))
    stock = pipeline("nnUNetTrainerBudget")
    assert all(k in stock for k in AFFINITY_DESTROYING)
    paseg = pipeline("nnUNetTrainerPASeg")
    assert not any(k in paseg for k in AFFINITY_DESTROYING)
    assert len(stock) - len(paseg) == len(AFFINITY_DESTROYING)
    assert all(k in pipeline("nnUNetTrainerPASeg_fullAug") for k in AFFINITY_DESTROYING)


def test_paseg_loss_is_partial_loss_plus_ramped_regularisers(use_env):
    trainer = make_trainer("nnUNetTrainerPASeg_fixedRamp")     # the spec's ramp from iteration 0
    trainer.initialize()
    torch.manual_seed(0)
    data = torch.randn(2, 1, 48, 48)
    output = trainer.network(data)
    target = [torch.randint(0, 5, (2, 1, *o.shape[2:])).float() for o in output]
    seg = trainer.loss(output, target)
    crf = trainer.crf_loss(output[0], data)
    vm = trainer.vm_loss(output[0], data)
    assert crf.item() > 0 and vm.item() > 0
    trainer.num_epochs, trainer.num_iterations_per_epoch = 10, 10
    for it, weight in ((0, np.exp(-5.0)), (5, np.exp(-5 * 0.5 ** 2)), (50, 1.0)):
        trainer.current_epoch, trainer._iter_in_epoch = divmod(it, 10)
        loss, logs = trainer.compute_loss(output, target, data, {})
        assert logs["ramp"] == pytest.approx(weight)
        assert loss.item() == pytest.approx((seg + weight * (crf + 0.1 * vm)).item(), rel=1e-5)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in trainer.network.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", ["nnUNetTrainerPASeg", "nnUNetTrainerPASegAux", "nnUNetTrainerPASegSCM"])
def test_paseg_inference_contract(use_env, name):
    trainer = make_trainer(name)
    check_inference_contract(trainer)
    arch = type(trainer.network).__name__
    assert arch == ("ResidualEncoderUNet" if name == "nnUNetTrainerPASegAux" else "PlainConvUNet")
    if name == "nnUNetTrainerPASegSCM":
        assert type(trainer.aux_network).__name__ == "ResidualEncoderUNet"
        assert all(not p.requires_grad for p in trainer.snapshot_aux.parameters())


def test_scm_loss_self_and_cross_monitoring(use_env):
    trainer = make_trainer("nnUNetTrainerPASegSCM")
    trainer.initialize()
    torch.manual_seed(0)
    data = torch.randn(2, 1, 48, 48)
    output = trainer.network(data)
    loss, logs = trainer.compute_loss(output, None, data, {})
    with torch.no_grad():
        snap_a, snap_b = trainer.snapshot_primary(data), trainer.snapshot_aux(data)
    kd = KnowledgeDistillationLoss(4.0)(output[0], snap_b)
    assert logs["kd_primary"].item() == pytest.approx(kd.item(), rel=1e-5)
    assert loss.item() == pytest.approx((logs["primary"] + logs["aux"]).item(), rel=1e-6)
    assert logs["primary"].item() == pytest.approx(0.5 * logs["self_primary"].item() + 0.5 * kd.item(), rel=1e-5)
    # when the live networks equal their snapshots, the primary's KD target is the aux snapshot, not itself
    trainer.refresh_snapshots()
    _, logs = trainer.compute_loss(trainer.network(data), None, data, {})
    assert logs["kd_primary"].item() > 0


def test_scm_measures_per_class_seed_recall_of_stage1_models(use_env, monkeypatch):
    """Stage 2 refuses a stage-1 model that lost a class: class_seed_recall counts, per foreground class of the
    seeds, the share predicted as that class; a model biased to background has recall 0 for every class."""
    trainer = make_trainer("nnUNetTrainerPASegSCM")
    trainer.initialize()
    target = torch.full((2, 1, 48, 48), 4.0)                    # ignore
    target[0, 0, 5:10, 5:10] = 1
    target[1, 0, 20:30, 20:22] = 3
    target[:, 0, 40:, :] = 0
    batch = {"data": torch.randn(2, 1, 48, 48), "target": [target]}

    class Fixed(torch.nn.Module):                                # predicts class 1 on the left half, else 0
        def forward(self, x):
            logits = torch.zeros(x.shape[0], 4, *x.shape[2:])
            logits[:, 1, :, :24] = 5.0
            return logits
    recall = trainer.class_seed_recall(Fixed(), [batch])
    assert recall == {1: 1.0, 3: 0.0}                             # class 3's seeds lie at x = 20..21: class 1
    target[1, 0, 20:30, 30:32] = 3                                 # as many class-3 seeds on the right half
    assert trainer.class_seed_recall(Fixed(), [batch]) == {1: 1.0, 3: 0.0}
    with pytest.raises(NNWError, match=r"stage1\.pth.*class\(es\) 3 \(recall 0.000\)"):
        trainer.check_stage1([(Fixed(), "stage1.pth")], [batch])
    trainer.check_stage1([(trainer.network, "live.pth")], [{"data": batch["data"], "target": [target * 0]}])
    monkeypatch.setenv("NNW_STAGE1_CHECK", "0")                  # the user's way past the check
    trainer.check_stage1([(Fixed(), "stage1.pth")], [batch])


def test_scm_stage1_checkpoint_errors(use_env, tmp_path, monkeypatch):
    trainer = make_trainer("nnUNetTrainerPASegSCM")
    trainer.initialize()
    primary, aux = trainer.stage1_checkpoints()
    assert primary.endswith(os.path.join("nnUNetTrainerPASeg__nnUNetPlans__2d_lite", "fold_0", "checkpoint_final.pth"))
    from nnunet_weak.training.two_networks import load_network_weights
    with pytest.raises(NNWError, match="NNW_SCM_PRIMARY_CHECKPOINT"):
        load_network_weights(trainer.network, str(tmp_path / "missing.pth"), "2d_lite", "the primary",
                             "NNW_SCM_PRIMARY_CHECKPOINT")
    # a checkpoint of the other architecture does not fit and is named
    other = str(tmp_path / "aux.pth")
    torch.save({"network_weights": trainer.aux_network.state_dict(), "trainer_name": "nnUNetTrainerPASegAux",
                "init_args": {"configuration": "2d_lite"}}, other)
    with pytest.raises(NNWError, match="does not fit"):
        load_network_weights(trainer.network, other, "2d_lite", "the primary", "NNW_SCM_PRIMARY_CHECKPOINT")
    with pytest.raises(NNWError, match="configuration '2d_lite', not '3d_lite'"):
        load_network_weights(trainer.network, other, "3d_lite", "the primary", "NNW_SCM_PRIMARY_CHECKPOINT")
    monkeypatch.setenv("NNW_SCM_AUX_CHECKPOINT", other)
    assert trainer.stage1_checkpoints()[1] == other


# ------------------------------------------------------------------------------------------------- CLI
def _loss_terms(fold_folder):
    logs = sorted(glob.glob(os.path.join(fold_folder, "training_log_*.txt")))
    text = "".join(open(p).read() for p in logs)
    terms = [eval(m, {"__builtins__": {}}) for m in re.findall(r"loss terms: (\{.*\})", text)]
    assert terms, f"no loss terms logged in {fold_folder}"
    return terms


@pytest.mark.parametrize("configuration", ["2d_lite", "3d_lite"])
def test_stage1_stage2_resume_predict_cli(tiny_env, tmp_path, configuration):
    env, raw = tiny_env
    # a results folder of its own: other tests save PA-Seg checkpoints into the shared one, and stage 2 must not
    # find a stage-1 model before this test trains it
    env = {k: v for k, v in env.items() if k != "nnUNet_extTrainer"}
    env["nnUNet_results"] = str(tmp_path / "results")
    # two iterations of stage 1 learn no class: SCM's check of stage 1 (tested on its own) may refuse them
    env["NNW_STAGE1_CHECK"] = "0"
    log = str(tmp_path / "cli.log")
    if configuration == "3d_lite":
        steps.run_command(["nnUNetv2_preprocess", "-d", TINY_ID, "-c", "3d_fullres", "-np", "1"],
                          {**env, "nnUNet_n_proc_DA": "1"}, log)

    def fold(trainer):
        return os.path.join(steps.model_folder(env, TINY_NAME, trainer, configuration), "fold_0")

    # stage 2 before stage 1: one clear line naming the missing checkpoint and the variable
    with pytest.raises(NNWError) as error:
        steps.train(TINY_ID, configuration, 0, "nnUNetTrainerPASegSCM", env, log)
    last = open(log).read().strip().splitlines()[-1]
    assert last.startswith("nnunet_weak error: ") and "NNW_SCM_PRIMARY_CHECKPOINT" in last
    assert "Traceback" not in str(error.value)

    for trainer in ("nnUNetTrainerPASeg", "nnUNetTrainerPASegAux"):
        steps.train(TINY_ID, configuration, 0, trainer, env, log)
        terms = _loss_terms(fold(trainer))[-1]
        assert {"seg", "crf", "vm", "ramp"} <= set(terms) and all(np.isfinite(v) for v in terms.values())

    steps.train(TINY_ID, configuration, 0, "nnUNetTrainerPASegSCM", env, log)
    scm = fold("nnUNetTrainerPASegSCM")
    scm_log = "".join(open(p).read() for p in glob.glob(os.path.join(scm, "training_log_*")))
    assert "stage 2 starts from" in scm_log and "stage-1 class check off" in scm_log
    terms = _loss_terms(scm)[-1]
    assert {"primary", "aux", "kd_primary", "kd_aux"} <= set(terms) and all(np.isfinite(v) for v in terms.values())
    first = torch.load(os.path.join(scm, "checkpoint_final.pth"), map_location="cpu", weights_only=False)
    assert set(first["nnunet_weak_extra_state"]) == {"aux_network", "aux_optimizer", "snapshot_primary",
                                                     "snapshot_aux"}

    steps.train(TINY_ID, configuration, 0, "nnUNetTrainerPASegSCM", {**env, "NNW_NUM_EPOCHS": "2"}, log, ["--c"])
    second = torch.load(os.path.join(scm, "checkpoint_final.pth"), map_location="cpu", weights_only=False)
    assert second["current_epoch"] == 2
    moved = [k for k, v in first["nnunet_weak_extra_state"]["aux_network"].items()
             if v.is_floating_point() and not torch.equal(v, second["nnunet_weak_extra_state"]["aux_network"][k])]
    assert moved, "the auxiliary network did not train after resuming"

    for trainer in ("nnUNetTrainerPASegSCM", "nnUNetTrainerPASegAux"):
        pred = str(tmp_path / f"pred_{trainer}")
        steps.predict(os.path.join(raw, "imagesTs"), pred, TINY_ID, configuration, 0, trainer, env, log,
                      ["--disable_tta"])
        assert sorted(f for f in os.listdir(pred) if f.endswith(".nii.gz")) == ["tiny_008.nii.gz", "tiny_009.nii.gz"]


def _ramp_setup(name):
    """An initialised trainer on a 10 x 10-iteration schedule, a random batch, its outputs and random targets."""
    trainer = make_trainer(name)
    trainer.initialize()
    data = torch.randn(2, 1, 48, 48)
    output = trainer.network(data)
    target = [torch.randint(0, 5, (2, 1, *o.shape[2:])).float() for o in output]
    trainer.num_epochs, trainer.num_iterations_per_epoch = 10, 10
    return trainer, data, output, target


def test_late_ramp_variant_starts_regularisers_later(use_env):
    trainer, data, output, target = _ramp_setup("nnUNetTrainerPASeg_lateRamp")
    trainer.current_epoch, trainer._iter_in_epoch = 2, 9  # 29 % of training: regularisers still off
    loss, logs = trainer.compute_loss(output, target, data, {})
    assert logs["ramp"] == 0.0 and loss.item() == pytest.approx(trainer.loss(output, target).item(), rel=1e-6)
    trainer.current_epoch, trainer._iter_in_epoch = 4, 0   # 40 %: half-way up the ramp
    assert trainer.compute_loss(output, target, data, {})[1]["ramp"] == pytest.approx(np.exp(-5 * 0.5 ** 2))


def test_onset_gate_opens_on_the_running_mean_and_survives_a_checkpoint():
    gate = OnsetGate(0.5, window=3)
    for step, value in enumerate([0.0, 1.0, 0.4, 0.2]):      # means over 3: -, -, 0.47, 0.53
        gate.update(value, progress=step / 10)
    assert gate.onset == pytest.approx(0.3)
    gate.update(0.0, progress=0.9)                           # once open it stays at its onset
    restored = OnsetGate(0.5, window=3)
    restored.load_state_dict(gate.state_dict())
    assert restored.onset == pytest.approx(0.3)


def test_regularisers_wait_for_foreground_seeds(use_env):
    trainer, data, output, target = _ramp_setup("nnUNetTrainerPASeg")
    background = [torch.zeros_like(o) for o in output]
    for o in background:
        o[:, 0] = 10.0                                       # predicts background everywhere
    trainer.current_epoch, trainer._iter_in_epoch = 5, 0
    loss, logs = trainer.compute_loss(background, target, data, {})
    assert logs["seed_recall"] == 0.0 and logs["ramp"] == 0.0 and trainer.foreground_gate.onset is None
    assert loss.item() == pytest.approx(trainer.loss(background, target).item(), rel=1e-6)
    perfect = [10.0 * torch.nn.functional.one_hot(t[:, 0].long().clamp(max=3), 4).movedim(-1, 1).float()
               for t in target]
    for _ in range(trainer.foreground_gate.window):
        logs = trainer.compute_loss(perfect, target, data, {})[1]
    assert logs["seed_recall"] == 1.0 and trainer.foreground_gate.onset == pytest.approx(0.5)
    trainer.current_epoch = 5 + 1                            # onset + 0.1: the end of the 10 % ramp
    assert trainer.compute_loss(perfect, target, data, {})[1]["ramp"] == pytest.approx(1.0)
    trainer.current_epoch, trainer._iter_in_epoch = 5, 5     # half-way up
    assert trainer.compute_loss(perfect, target, data, {})[1]["ramp"] == pytest.approx(np.exp(-5 * 0.5 ** 2))
    fixed = make_trainer("nnUNetTrainerPASeg_fixedRamp")
    assert fixed.foreground_gate is None


def test_all_heads_variant_regularises_every_head_with_nnunets_weights(use_env):
    trainer, data, output, target = _ramp_setup("nnUNetTrainerPASeg_allHeads")
    trainer.foreground_gate = None
    trainer.current_epoch = 5
    weights = trainer.loss.weight_factors
    images = trainer.images_per_scale(data, output)
    crf = sum(w * trainer.crf_loss(o, i) for w, o, i in zip(weights, output, images) if w) / sum(weights)
    vm = sum(w * trainer.vm_loss(o, i) for w, o, i in zip(weights, output, images) if w) / sum(weights)
    loss, logs = trainer.compute_loss(output, target, data, {})
    assert logs["crf"].item() == pytest.approx(crf.item(), rel=1e-5)
    assert logs["vm"].item() == pytest.approx(vm.item(), rel=1e-5)
    one_head = make_trainer("nnUNetTrainerPASeg")
    one_head.initialize()
    assert one_head.head_regularisers(output, data)[0].item() == pytest.approx(
        one_head.crf_loss(output[0], data).item(), rel=1e-6)


def test_paseg_control_is_stage_one_without_the_regularisers(use_env):
    trainer, data, output, target = _ramp_setup("nnUNetTrainerPASeg_control")
    trainer.current_epoch = 5
    loss, logs = trainer.compute_loss(output, target, data, {})
    assert loss.item() == pytest.approx(trainer.loss(output, target).item(), rel=1e-6)
    assert "crf" not in logs and trainer.pad_as_ignore
    method = make_trainer("nnUNetTrainerPASeg")
    for t in (trainer, method):                              # the same reduced augmentation
        t.pipeline = _kinds(t.get_training_transforms(t.configuration_manager.patch_size, (0, 0), None, (), False))
    assert trainer.pipeline == method.pipeline
