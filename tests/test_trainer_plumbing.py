"""Shared weak-label plumbing on a real (tiny) preprocessed dataset: unlabelled cases, padding as ignore,
images for losses, progress/ramps, extra checkpoint state and the inference contract."""
import math

import numpy as np
import pytest
import torch

from conftest import UNLABELLED, TINY_ID
from nnunet_weak.data.transforms import pad_as_ignore
from nnunet_weak.training.contract import check_inference_contract
from nnunet_weak.utilities.errors import NNWError


def make_trainer(name="nnUNetTrainerPCE", configuration="2d_lite", fold=0):
    from nnunetv2.run.run_training import get_trainer_from_args
    return get_trainer_from_args(str(TINY_ID), configuration, fold, name, device=torch.device("cpu"))


def test_unlabelled_found_once_and_kept_out_of_validation(use_env):
    trainer = make_trainer()
    trainer.initialize()
    tr, val = trainer.do_split()
    assert trainer.unlabelled_keys == set(UNLABELLED)
    assert UNLABELLED[0] not in val and len(val) == 2
    assert UNLABELLED[1] in tr  # still used for training


def test_labelled_fraction_per_batch(use_env, monkeypatch):
    monkeypatch.setenv("NNW_LABELLED_FRACTION", "0.5")
    trainer = make_trainer()
    trainer.initialize()
    assert trainer.labelled_fraction == 0.5
    dl_train, dl_val = trainer.get_dataloaders()
    loader = dl_train.data_loader  # SingleThreadedAugmenter (nnUNet_n_proc_DA=0)
    n_lab = int(round(0.5 * trainer.batch_size))
    for _ in range(3):
        keys = loader.get_indices()
        assert sum(k in trainer.unlabelled_keys for k in keys) == trainer.batch_size - n_lab
    batch = next(dl_train)
    mask = trainer.labelled_mask(batch["keys"])
    assert mask.sum().item() == n_lab


def test_labelled_only_baseline_never_draws_unlabelled_cases(use_env):
    trainer = make_trainer("nnUNetTrainerLabelledOnly")
    trainer.initialize()
    dl_train, _ = trainer.get_dataloaders()
    loader = dl_train.data_loader
    drawn = {k for _ in range(20) for k in loader.get_indices()}
    assert trainer.unlabelled_keys == set(UNLABELLED) and not drawn & trainer.unlabelled_keys
    assert len(drawn) > 1 and not trainer.pad_as_ignore


def test_default_sampling_is_nnunets(use_env):
    trainer = make_trainer()
    trainer.initialize()
    dl_train, _ = trainer.get_dataloaders()
    assert type(dl_train.data_loader).__name__ == "nnUNetDataLoader"


def test_pad_as_ignore_turns_border_into_ignore(use_env):
    trainer = make_trainer()
    trainer.initialize()
    pipeline = trainer.get_training_transforms(
        trainer.configuration_manager.patch_size, (0, 0), None, (), False)
    seg = torch.full((1, 48, 48), -1, dtype=torch.int16)
    seg[:, 10:20, 10:20] = 2
    out = pipeline(image=torch.zeros(1, 48, 48), segmentation=seg.clone())["segmentation"]  # transforms work in place
    assert set(torch.unique(out).tolist()) == {2, 4}

    budget = make_trainer("nnUNetTrainerBudget")  # stock behaviour: border becomes background
    stock = budget.get_training_transforms(budget.configuration_manager.patch_size, (0, 0), None, (), False)
    out = stock(image=torch.zeros(1, 48, 48), segmentation=seg.clone())["segmentation"]
    assert 0 in torch.unique(out).tolist() and 4 not in torch.unique(out).tolist()
    assert pad_as_ignore(stock, 4) == 1


def test_images_per_scale_match_outputs():
    from nnunet_weak.training.weak_base import nnUNetTrainerWeakBase
    data = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).view(2, 1, 8, 8)
    outs = [torch.zeros(2, 4, 8, 8), torch.zeros(2, 4, 4, 4), torch.zeros(2, 4, 2, 2)]
    images = nnUNetTrainerWeakBase.images_per_scale(data, outs)
    assert [tuple(i.shape) for i in images] == [(2, 1, 8, 8), (2, 1, 4, 4), (2, 1, 2, 2)]
    assert images[0] is not None and torch.equal(images[0], data)
    assert images[1][0, 0, 0, 0] == pytest.approx(data[0, 0, :2, :2].mean().item())  # area average


def test_cpu_thread_count_from_environment(use_env, monkeypatch):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        monkeypatch.setenv("NNW_NUM_THREADS", "1")
        make_trainer()
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("NNW_NUM_THREADS", "0")
        with pytest.raises(NNWError, match="NNW_NUM_THREADS='0' is invalid"):
            make_trainer()
    finally:
        torch.set_num_threads(before)


def test_checkpoint_interval_from_environment(use_env, monkeypatch):
    # nnU-Net saves checkpoint_latest.pth every 50 epochs: a 20-epoch run killed at epoch 19 had none to --c from
    assert make_trainer().save_every == 50
    monkeypatch.setenv("NNW_SAVE_EVERY", "1")
    trainer = make_trainer()
    assert trainer.save_every == 1 and trainer.length_from_env["save_every"] == 1
    monkeypatch.setenv("NNW_SAVE_EVERY", "0")
    with pytest.raises(NNWError, match="NNW_SAVE_EVERY='0' is invalid"):
        make_trainer()


def test_progress_counts_global_iterations(use_env):
    trainer = make_trainer()
    trainer.num_epochs, trainer.num_iterations_per_epoch = 4, 10
    trainer.current_epoch, trainer._iter_in_epoch = 2, 5
    assert trainer.global_iteration == 25 and trainer.progress == pytest.approx(25 / 40)
    assert trainer.ramp_weight(0.0, 1.0) == pytest.approx(math.exp(-5 * (1 - 25 / 40) ** 2))
    assert trainer.ramp_weight(0.0, 0.5) == 1.0 and trainer.ramp_weight(0.7, 1.0) == 0.0


def test_extra_state_survives_checkpoint(use_env, tmp_path):
    trainer = make_trainer()
    trainer.initialize()
    aux = torch.nn.Linear(3, 2)
    trainer.register_extra_state("aux", aux)
    queue = {"q": torch.arange(5)}

    class Queue:
        def state_dict(self):
            return dict(queue)

        def load_state_dict(self, d):
            queue.update(d)

    trainer.register_extra_state("queue", Queue())
    path = str(tmp_path / "ckpt.pth")
    trainer.save_checkpoint(path)
    saved_weight = aux.weight.detach().clone()

    other = make_trainer()
    other.initialize()
    aux2 = torch.nn.Linear(3, 2)
    other.register_extra_state("aux", aux2)
    queue["q"] = torch.zeros(5)
    other.register_extra_state("queue", Queue())
    other.load_checkpoint(path)
    assert torch.equal(aux2.weight, saved_weight)
    assert torch.equal(queue["q"], torch.arange(5))

    stranger = make_trainer()
    stranger.initialize()
    stranger.register_extra_state("memory", torch.nn.Linear(1, 1))
    from nnunet_weak.utilities.errors import NNWError
    with pytest.raises(NNWError, match="lacks the extra training state"):
        stranger.load_checkpoint(path)


@pytest.mark.parametrize("name", ["nnUNetTrainerPCE", "nnUNetTrainerBudget"])
def test_inference_contract(use_env, name):
    result = check_inference_contract(make_trainer(name))
    assert result["output_shape"][1] == 4


def test_pce_loss_is_partial_with_deep_supervision(use_env):
    trainer = make_trainer()
    trainer.initialize()
    scales = trainer._get_deep_supervision_scales()
    shapes = [(2, 4, int(48 * s[0]), int(48 * s[1])) for s in scales]
    outputs = [torch.zeros(s) for s in shapes]
    targets = [torch.full((2, 1, *s[2:]), 4) for s in shapes]
    targets[0][0, 0, 0, 0] = 1  # one annotated pixel at full resolution only
    loss = trainer.loss(outputs, targets)
    weights = np.array([0.5 ** i for i in range(len(scales))])
    weights[-1] = 0
    expected = (weights / weights.sum())[0] * np.log(4)  # uniform logits: CE = log(4) on that pixel
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def _first_batch_and_weights(monkeypatch, seed):
    monkeypatch.setenv("NNW_SEED", str(seed))
    trainer = make_trainer("nnUNetTrainerBudget")
    trainer.initialize()
    dl_train, _ = trainer.get_dataloaders()
    batch = next(dl_train)
    weights = torch.cat([p.detach().flatten() for p in trainer.network.parameters()])
    return batch, weights


def test_seed_repeats_weights_and_batches(use_env, monkeypatch):
    """NNW_SEED=k gives run k the same initial weights and, with augmentation in-process, the same first batch;
    another seed gives others."""
    batch_1, weights_1 = _first_batch_and_weights(monkeypatch, 1)
    batch_1b, weights_1b = _first_batch_and_weights(monkeypatch, 1)
    batch_2, weights_2 = _first_batch_and_weights(monkeypatch, 2)
    assert torch.equal(weights_1, weights_1b) and not torch.equal(weights_1, weights_2)
    assert list(batch_1["keys"]) == list(batch_1b["keys"])
    assert torch.equal(torch.as_tensor(batch_1["data"]), torch.as_tensor(batch_1b["data"]))
    assert not torch.equal(torch.as_tensor(batch_1["data"]), torch.as_tensor(batch_2["data"]))
    monkeypatch.setenv("NNW_SEED", "-3")
    with pytest.raises(NNWError, match="NNW_SEED"):
        make_trainer("nnUNetTrainerBudget")


def _border_label(trainer) -> set:
    pipeline = trainer.get_training_transforms(trainer.configuration_manager.patch_size, (0, 0), None, (), False)
    seg = torch.full((1, 48, 48), -1, dtype=torch.int16)
    seg[:, 10:20, 10:20] = 2
    return set(torch.unique(pipeline(image=torch.zeros(1, 48, 48), segmentation=seg)["segmentation"]).tolist())


def test_recipe_variants_are_named_trainers(use_env):
    few, few_bg = make_trainer("nnUNetTrainerFewLabels"), make_trainer("nnUNetTrainerFewLabels_padBackground")
    assert few.labelled_fraction == few_bg.labelled_fraction == 0.8
    assert _border_label(few) == {2, 4} and _border_label(few_bg) == {0, 2}
    assert few.recipe_from_env == few_bg.recipe_from_env == {}


def test_recipe_from_environment_is_recorded_in_debug_json(use_env, monkeypatch):
    import json
    import os
    monkeypatch.setenv("NNW_PAD_AS_IGNORE", "0")
    monkeypatch.setenv("NNW_LABELLED_FRACTION", "0.5")
    trainer = make_trainer("nnUNetTrainerFewLabels")
    assert trainer.recipe_from_env == {"pad_as_ignore": False, "labelled_fraction": 0.5}
    assert _border_label(trainer) == {0, 2} and trainer.labelled_fraction == 0.5
    os.makedirs(trainer.output_folder, exist_ok=True)
    trainer._save_debug_information()
    with open(os.path.join(trainer.output_folder, "debug.json")) as f:
        debug = json.load(f)
    assert "pad_as_ignore" in debug["recipe_from_env"] and "0.5" in debug["recipe_from_env"]


def test_loader_class_is_nnunets_again_after_get_dataloaders(use_env):
    from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
    from nnunetv2.training.nnUNetTrainer import nnUNetTrainer as module
    from nnunet_weak.data.unlabelled import nnunet_loader_class_replaced
    trainer = make_trainer("nnUNetTrainerFewLabels")
    trainer.initialize()
    trainer.get_dataloaders()
    assert module.nnUNetDataLoader is nnUNetDataLoader

    def failing(stock, *args, **kwargs):
        raise RuntimeError("bad loader")
    with pytest.raises(RuntimeError, match="bad loader"):
        with nnunet_loader_class_replaced(failing):
            module.nnUNetDataLoader(None)
    assert module.nnUNetDataLoader is nnUNetDataLoader


def test_labelled_samples_of_a_grown_batch_are_oversampled_as_the_controls_batch():
    """Batch 12 + 12 at nnU-Net's 33 %: the control (12 labelled) forces foreground on its last 4 samples; the grown
    batch must force it on the last 4 of its 12 labelled samples (indices 20-23), not on the last 8 of 24."""
    from nnunet_weak.data.unlabelled import MixedLabelDataLoader
    loader = MixedLabelDataLoader.__new__(MixedLabelDataLoader)
    loader.batch_size, loader.n_labelled, loader.oversample_foreground_percent = 24, 12, 0.33
    assert [i for i in range(24) if loader._oversample_last_of_labelled(i)] == [20, 21, 22, 23]
    assert [i for i in range(24) if loader._oversample_last_XX_percent(i)] == list(range(16, 24))   # nnU-Net's
    loader.batch_size, loader.n_labelled = 12, 12                     # nothing unlabelled: nnU-Net's rule
    assert [i for i in range(12) if loader._oversample_last_of_labelled(i)] == \
        [i for i in range(12) if loader._oversample_last_XX_percent(i)] == [8, 9, 10, 11]


def test_dual_kmax_oversamples_its_labelled_samples_as_kmax_does(use_env):
    dual, control, before = (make_trainer(n) for n in ("nnUNetTrainerDualKMaX_lite", "nnUNetTrainerKMaX_lite",
                                                       "nnUNetTrainerDualKMaX_lite_batchForeground"))
    loaders = []
    for trainer in (dual, control, before):
        trainer.initialize()
        loaders.append(trainer.get_dataloaders()[0].data_loader)
    grown, alone, old = loaders
    assert grown.n_labelled == alone.batch_size and grown.batch_size > alone.batch_size
    forced = [grown.get_do_oversample(i) for i in range(grown.batch_size)]
    assert forced == [False] * (grown.batch_size - grown.n_labelled) + \
        [alone.get_do_oversample(i) for i in range(alone.batch_size)]
    assert [old.get_do_oversample(i) for i in range(old.batch_size)] == \
        [not i < round(old.batch_size * (1 - old.oversample_foreground_percent)) for i in range(old.batch_size)]
