"""nnUNetTrainerDynamicMix: the shared dynamic-mix helper keeps image, scribble and pseudo label of every pixel
from the same sample; the trainer's loss is nnU-Net+pL's on the clean and the mixed batch plus CE to the mixed
pseudo labels; its network is nnU-Net's (strict load by the predictor); a tiny run through the stock CLI."""
import os

import pytest
import torch
import torch.nn.functional as F

from conftest import TINY_ID, TINY_NAME
from nnunet_weak.data import cutmix
from nnunet_weak.experiment import steps
from nnunet_weak.training import dynamic_mix as dynamic_mix_module
from nnunet_weak.training.budget import nnUNetTrainerBudget
from nnunet_weak.training.contract import check_inference_contract
from nnunet_weak.utilities.errors import NNWError

from test_trainer_plumbing import make_trainer


pytestmark = pytest.mark.usefixtures("one_thread")


def test_dynamic_mix_keeps_each_pixel_from_one_sample():
    torch.manual_seed(3)
    b, h, w = 6, 40, 28
    ids = torch.arange(b, dtype=torch.float32)[:, None, None, None].expand(b, 1, h, w)
    data = ids.clone()                                          # image of sample i is constant i
    full = ids.to(torch.int16)
    target = [full, F.interpolate(full.float(), size=(h // 2, w // 2), mode="nearest-exact").to(torch.int16)]
    labels_a = ids[:, 0].long()                                 # source a labels sample i as i
    labels_b = ids[:, 0].long() + 10                            # source b as 10 + i
    for _ in range(20):
        data_m, target_m, pseudo_m = cutmix.dynamic_mix(data, target, labels_a, labels_b, 0.2)
        sample = data_m[:, 0].long()
        assert torch.equal(target_m[0][:, 0].long(), sample)    # scribble follows the image
        assert torch.equal(target_m[1], F.interpolate(target_m[0].float(), size=(h // 2, w // 2),
                                                      mode="nearest-exact").to(torch.int16))
        assert torch.equal(pseudo_m % 10, sample)               # pseudo label follows the image
        for i in range(b):                                      # one box of one source, the rest of the other
            from_b = pseudo_m[i] >= 10
            inside = from_b if from_b.float().mean() < 0.5 else ~from_b
            assert abs(inside.float().mean().item() - 0.2) < 0.05
            assert sample[i][inside].unique().numel() == 1 and sample[i][~inside].unique().numel() == 1


def _batch(b=2, size=32):
    g = torch.Generator().manual_seed(0)
    data = torch.randn(b, 1, size, size, generator=g)
    full = torch.full((b, 1, size, size), 4, dtype=torch.int16)   # ignore everywhere but two scribbles
    full[:, :, 4:10, 4:20] = 2
    full[:, :, 20:22, 2:20] = 0
    target = [full] + [F.interpolate(full.float(), size=(size // f, size // f), mode="nearest-exact")
                       .to(torch.int16) for f in (2, 4)]
    return data, target


@pytest.mark.parametrize("name", ["nnUNetTrainerDynamicMix", "nnUNetTrainerDynamicMix_dsHead"])
def test_dynamic_mix_loss_terms(use_env, monkeypatch, name):
    trainer = make_trainer(name)
    trainer.initialize()
    assert trainer.pad_as_ignore is False and trainer.labelled_fraction is None   # nnU-Net+pL's data
    data, target = _batch()
    seen = {}

    def spy(data_, target_, labels_a, labels_b, area):
        seen["labels"] = (labels_a, labels_b)
        seen["mixed"] = cutmix.dynamic_mix(data_, target_, labels_a, labels_b, area)
        return seen["mixed"]

    monkeypatch.setattr(dynamic_mix_module, "dynamic_mix", spy)
    passes = []
    trainer.network.register_forward_hook(lambda m, args, out: passes.append(args[0]))
    output = trainer.network(data)
    loss, logs = trainer.compute_loss(output, target, data, {})
    assert len(passes) == 2 and torch.equal(passes[1], seen["mixed"][0])

    label_a, label_b = seen["labels"]
    assert torch.equal(label_a, output[0].argmax(1))
    coarse = F.interpolate(output[1].float(), size=(32, 32), mode="bilinear", align_corners=False).argmax(1)
    assert torch.equal(label_b, label_a if name == "nnUNetTrainerDynamicMix" else coarse)

    with torch.no_grad():
        out_m = trainer.network(seen["mixed"][0])
        expected = {"sup": trainer.loss(output, target), "mix": trainer.loss(out_m, seen["mixed"][1]),
                    "pl": F.cross_entropy(out_m[0].float(), seen["mixed"][2])}
    for key, value in expected.items():
        assert logs[key].item() == pytest.approx(value.item(), rel=1e-4), key
    assert loss.item() == pytest.approx(sum(v.item() for v in expected.values()), rel=1e-4)
    loss.backward()
    seg_layers = trainer.network.decoder.seg_layers
    assert seg_layers[-1].weight.grad.abs().sum() > 0           # the full-resolution head learns
    assert all(torch.isfinite(p.grad).all() for p in trainer.network.parameters() if p.grad is not None)


def test_dynamic_mix_network_is_nnunets_and_batch_of_one_refused(use_env):
    trainer = make_trainer("nnUNetTrainerDynamicMix")
    trainer.initialize()
    check_inference_contract(trainer)
    stock = make_trainer("nnUNetTrainerBudget")
    stock.initialize()
    assert isinstance(trainer, nnUNetTrainerBudget)
    assert list(trainer.network.state_dict()) == list(stock.network.state_dict())

    single = make_trainer("nnUNetTrainerDynamicMix")
    single.configuration_manager.configuration["batch_size"] = 1
    with pytest.raises(NNWError, match="batch size of at least 2"):
        single.initialize()


def test_dynamic_mix_train_predict_cli(tiny_env, tmp_path):
    env, raw = tiny_env
    env = {**env, "NNW_SKIP_FINAL_VALIDATION": "1"}
    log = str(tmp_path / "cli.log")
    trainer = "nnUNetTrainerDynamicMix"
    steps.train(TINY_ID, "2d", 0, trainer, env, log)
    fold = os.path.join(steps.model_folder(env, TINY_NAME, trainer, "2d"), "fold_0")
    text = open(next(os.path.join(fold, f) for f in os.listdir(fold) if f.startswith("training_log"))).read()
    assert "loss terms: {" in text and "'pl'" in text and "'mix'" in text
    pred = str(tmp_path / "pred")
    steps.predict(os.path.join(raw, "imagesTs"), pred, TINY_ID, "2d", 0, trainer, env, log, ["--disable_tta"])
    assert sorted(f for f in os.listdir(pred) if f.endswith(".nii.gz")) == ["tiny_008.nii.gz", "tiny_009.nii.gz"]
