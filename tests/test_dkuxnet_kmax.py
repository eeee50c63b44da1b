"""Dual-KMax UX-Net and the kMaX head on nnU-Net's U-Net: the losses against hand computation, the kMaX pieces, the
networks' nnU-Net contract (one tensor without deep supervision, state dict independent of the build mode, strict
load through nnU-Net's predictor), the strong view and both trainers' loss terms, with tiny widths and patches."""
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import TINY_ID, TINY_NAME, UNLABELLED
from nnunet_weak.data.strong_view import ignore_erased, StrongViewSettings, gaussian_blur_inplane, strong_view
from nnunet_weak.experiment import steps
from nnunet_weak.losses.distribution_consistency import DistributionConsistency, softmax_probabilities
from nnunet_weak.losses.query_loss import QueryLoss
from nnunet_weak.networks.dkuxnet import DKUXNet, dkuxnet_strides
from nnunet_weak.networks.kmax import (KMaXHead, KMaXLayer, KMaXNorms, group_of_class, group_sums,
                                      query_group_sizes)
from nnunet_weak.networks.kmax_plainunet import KMaXPlainConvUNet, kmax_decoder_stages
from nnunet_weak.training.contract import check_inference_contract
from nnunet_weak.training.dkuxnet import LITE_WIDTHS
from nnunet_weak.training.lr_schedule import warmup_poly_lr
from nnunet_weak.utilities.errors import NNWError
from test_trainer_plumbing import make_trainer

TINY_LITE = dict(LITE_WIDTHS, widths=(8, 16, 16, 32), hidden=32, num_queries=8, query_dim=16, pixel_dim=16,
                 mask_dim=8, num_heads=2, key_dim=8, ffn_dim=32, classifier_hidden=8)
TINY_STRIDES = [(1, 2, 2), (1, 2, 2), (1, 2, 2), (1, 1, 1)]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (conftest)


@pytest.fixture(scope="module")
def tiny_3d(tiny_env):
    """The tiny dataset with its 3d_fullres data preprocessed (3d_lite reads it)."""
    env, raw = tiny_env
    folder = os.path.join(env["nnUNet_preprocessed"], TINY_NAME, "nnUNetPlans_3d_fullres")
    if not os.path.isdir(folder):
        steps.run_command(["nnUNetv2_preprocess", "-d", TINY_ID, "-c", "3d_fullres", "-np", "1"],
                          {**env, "nnUNet_n_proc_DA": "1"}, os.path.join(os.path.dirname(raw), "..", "pre3d.log"))
    return tiny_env


# ------------------------------------------------------------------------------------------------- losses
def test_query_loss_matches_hand_computation():
    # b=1, 3 groups, 4 voxels; voxel 3 is ignore (label 4)
    g = torch.tensor([[0.7, 0.2, 0.0, 0.5],
                      [0.2, 0.5, 0.1, 0.25],
                      [0.1, 0.3, 0.9, 0.25]]).unsqueeze(0)
    target = torch.tensor([[0, 2, 1, 4]]).view(1, 1, 4)
    loss = QueryLoss([0, 1, 2], ignore_label=4)(g, target)
    expected = -(math.log(0.7) + math.log(0.3) + math.log(0.1)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # a zero probability is clamped at 1e-6, not -inf
    zero = QueryLoss([0, 1, 2], ignore_label=4)(g, torch.tensor([[0, 0, 0, 4]]).view(1, 1, 4))
    assert zero.item() == pytest.approx(-(math.log(0.7) + math.log(0.2) + math.log(1e-6)) / 3, rel=1e-6)
    # 'paper' groups: labels above 2 count for group 2
    paper = QueryLoss(group_of_class("paper", 4), ignore_label=None)(g, torch.tensor([[3, 3, 3, 3]]).view(1, 1, 4))
    assert paper.item() == pytest.approx(-(math.log(0.1) + math.log(0.3) + math.log(0.9) + math.log(0.25)) / 4,
                                         rel=1e-6)


def test_query_loss_all_ignore_is_zero_with_graph():
    g = torch.full((2, 3, 5), 1 / 3, requires_grad=True)
    loss = QueryLoss([0, 1, 2], ignore_label=4)(g, torch.full((2, 1, 5), 4))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(g.grad, torch.zeros_like(g))


def test_consistency_matches_hand_computation():
    p = torch.tensor([[0.8, 0.5], [0.2, 0.5]]).unsqueeze(0)             # (b=1, C=2, 2 voxels)
    q = torch.tensor([[0.6, 0.1], [0.4, 0.9]]).unsqueeze(0)
    mse = DistributionConsistency("mse")(p, q)
    assert mse.item() == pytest.approx(((0.2 ** 2 + 0.2 ** 2) + (0.4 ** 2 + 0.4 ** 2)) / 2, rel=1e-6)
    kl = DistributionConsistency("kl")(p, q)

    def kl_(a, b):
        return sum(x * math.log(x / y) for x, y in zip(a, b))
    expected = (0.5 * (kl_((0.8, 0.2), (0.6, 0.4)) + kl_((0.6, 0.4), (0.8, 0.2)))
                + 0.5 * (kl_((0.5, 0.5), (0.1, 0.9)) + kl_((0.1, 0.9), (0.5, 0.5)))) / 2
    assert kl.item() == pytest.approx(expected, rel=1e-5)
    assert DistributionConsistency("mse")(p, p).item() == 0.0


@pytest.mark.parametrize("detach", [False, True])
def test_consistency_gradients_reach_both_sides_unless_detached(detach):
    ya = torch.randn(2, 3, 4, 4, requires_grad=True)
    yb = torch.randn(2, 3, 4, 4, requires_grad=True)
    consistency = DistributionConsistency("mse", detach_second=detach)
    consistency(softmax_probabilities(ya), softmax_probabilities(yb)).backward()
    assert ya.grad.abs().sum() > 0
    assert (yb.grad is None) == detach


# --------------------------------------------------------------------------------------------- kMaX pieces
def test_query_groups():
    assert query_group_sizes("per_class", 10, 4) == (3, 3, 2, 2)
    assert query_group_sizes("paper", 32, 2) == (16, 4, 12)
    assert group_of_class("paper", 4) == (0, 1, 2, 2) and group_of_class("per_class", 3) == (0, 1, 2)
    with pytest.raises(NNWError, match="exceed 20"):
        query_group_sizes("paper", 20, 3)
    with pytest.raises(NNWError, match="at least one query per class"):
        query_group_sizes("per_class", 3, 4)
    s = torch.arange(2 * 5 * 3, dtype=torch.float32).view(2, 5, 3)
    assert torch.equal(group_sums(s, (2, 3)), torch.stack([s[:, :2].sum(1), s[:, 2:].sum(1)], 1))


def _capture(module, store, key, what="output"):
    def hook(mod, args, output):
        store[key] = (args[0] if what == "input" else output).detach().clone()
    return module.register_forward_hook(hook)


@pytest.mark.parametrize("dims", [2, 3])
def test_kmeans_update_is_the_hard_sum_of_member_values(dims):
    torch.manual_seed(0)
    layer = KMaXLayer(6, query_dim=8, pixel_dim=8, mask_dim=4, num_heads=2, key_dim=4, ffn_dim=16,
                      norms=KMaXNorms(dims))
    layer.train()
    seen = {}
    _capture(layer.logit_norm, seen, "logits")
    _capture(layer.pixel_value_norm, seen, "values")
    _capture(layer.update_in_norm, seen, "update", what="input")
    pixels = torch.randn(2, 6, *((3, 5, 4) if dims == 3 else (5, 4)))
    queries = torch.randn(2, 8, 5)
    out = layer(pixels, queries)
    assert out.shape == queries.shape
    logits = seen["logits"].flatten(2)                                       # (b, n, x)
    hard = F.one_hot(logits.argmax(1), 5).permute(0, 2, 1).float()         # each voxel joins one centre
    expected = torch.einsum("bnx,bqx->bqn", hard, seen["values"].flatten(2))
    assert torch.allclose(seen["update"], expected, atol=1e-5)             # a sum over members, not a mean


def test_head_segmentation_is_classification_times_query_softmax():
    torch.manual_seed(0)
    head = KMaXHead([12, 6], 4, num_classes=3, dims=2, num_queries=7, query_dim=8, pixel_dim=8, mask_dim=4,
                    layers_per_level=1, num_heads=2, key_dim=4, ffn_dim=16, classifier_hidden=5).eval()
    seen = {}
    _capture(head.logit_norm, seen, "logits")
    _capture(head.classifier, seen, "weights")
    levels = [torch.randn(2, 12, 3, 3), torch.randn(2, 6, 6, 6)]
    seg, clusters = head(levels, torch.randn(2, 4, 12, 12), clusters=True)
    assignment = torch.softmax(seen["logits"], 1)                          # softmax over queries
    weights = seen["weights"].view(2, 7, 3)
    assert torch.allclose(seg, torch.einsum("bnk,bnhw->bkhw", weights, assignment), atol=1e-5)
    assert clusters.shape == (2, 3, 12, 12) and head.group_sizes == (3, 2, 2)
    assert torch.allclose(clusters.sum(1), torch.ones(2, 12, 12), atol=1e-5)
    assert torch.allclose(clusters[:, 0], assignment[:, :3].sum(1), atol=1e-6)


# ------------------------------------------------------------------------------------------------ networks
def test_dkuxnet_forward_contract_and_eval_path():
    torch.manual_seed(0)
    net = DKUXNet(1, 3, TINY_STRIDES, **TINY_LITE)
    calls = []
    for name in ("out_block", "conv_head"):
        getattr(net.decoder, name).register_forward_hook(lambda *a, n=name: calls.append(n))
    for head in net.decoder.aux_heads:
        head.register_forward_hook(lambda *a: calls.append("aux"))
    x = torch.randn(2, 1, 4, 16, 16)
    net.eval()
    with torch.no_grad():
        y = net(x)
        assert isinstance(y, torch.Tensor) and y.shape == (2, 3, 4, 16, 16)
        assert calls == []                                               # conv and aux heads skipped
        net.decoder.deep_supervision = True
        deep = net(x)
        assert [tuple(o.shape[2:]) for o in deep] == [(4, 16, 16), (4, 8, 8), (4, 4, 4), (4, 2, 2)]
        assert torch.allclose(deep[0], y) and calls.count("aux") == 3
        net.decoder.deep_supervision = False
        out = net(x, return_aux=True)
    assert set(out) == {"seg", "cluster", "conv"} and torch.allclose(out["seg"], y)
    assert out["cluster"].shape == (2, 3, 4, 16, 16) and out["conv"].shape == (2, 3, 4, 16, 16)
    assert torch.allclose(out["cluster"].sum(1), torch.ones(2, 4, 16, 16), atol=1e-5)


def test_dkuxnet_strides_from_plans():
    acdc = [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]]               # ACDC 3d_lite
    assert dkuxnet_strides([8, 128, 112], acdc, "3d_lite") == [(1, 2, 2), (2, 2, 2), (2, 2, 2), (1, 2, 2)]
    six = acdc + [[1, 2, 2]]                                                     # deeper plans: first four
    assert dkuxnet_strides([20, 256, 224], six, "3d_fullres")[3] == (1, 2, 2)
    tiny = [[1, 1, 1], [1, 2, 2], [1, 2, 2], [1, 2, 2]]                          # 4 stages: deepest kept
    assert dkuxnet_strides([4, 48, 48], tiny, "3d_lite") == TINY_STRIDES
    with pytest.raises(NNWError, match="3D network; configuration '2d_lite'"):
        dkuxnet_strides([128, 112], [[1, 1], [2, 2]], "2d_lite")
    with pytest.raises(NNWError, match="'3d_custom'.*not divisible"):
        dkuxnet_strides([8, 120, 112], acdc, "3d_custom")


def test_dkuxnet_state_dict_does_not_depend_on_the_build_mode():
    torch.manual_seed(0)
    train = DKUXNet(1, 4, TINY_STRIDES, deep_supervision=True, **TINY_LITE).state_dict()
    predict = DKUXNet(1, 4, TINY_STRIDES, deep_supervision=False, **TINY_LITE).state_dict()
    assert {k: v.shape for k, v in train.items()} == {k: v.shape for k, v in predict.items()}
    for variant in ("paper",):
        a = DKUXNet(1, 4, TINY_STRIDES, **dict(TINY_LITE, num_queries=24, query_groups=variant)).state_dict()
        assert set(a) == set(predict)                                            # groups add no parameter


def test_kmax_decoder_stage_choice():
    acdc_3d = [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]]
    assert kmax_decoder_stages(acdc_3d, 3) == [0, 1]                 # strides 8 and 4 are decoder stages 0, 1
    acdc_2d = [[1, 1]] + [[2, 2]] * 5                      # 256x224: decoder stages at 16 8 4 2 1 -> stages 1, 2
    assert kmax_decoder_stages(acdc_2d, 2) == [1, 2]
    assert kmax_decoder_stages([[1, 1], [2, 2], [2, 2], [2, 2]], 2) == [0, 1]    # no stride-8 decoder stage
    assert kmax_decoder_stages([[1, 1], [2, 2]], 2) == [0]


def _plain_kwargs(dims, strides, features=(8, 16, 16, 32)):
    conv = torch.nn.Conv3d if dims == 3 else torch.nn.Conv2d
    norm = torch.nn.InstanceNorm3d if dims == 3 else torch.nn.InstanceNorm2d
    n = len(strides)
    return dict(input_channels=1, n_stages=n, features_per_stage=list(features[:n]), conv_op=conv, kernel_sizes=3,
                strides=strides, n_conv_per_stage=2, num_classes=3, n_conv_per_stage_decoder=2, conv_bias=True,
                norm_op=norm, norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=torch.nn.LeakyReLU,
                nonlin_kwargs={"inplace": True})


KMAX_TINY = dict(num_queries=6, query_dim=8, pixel_dim=8, mask_dim=8, num_heads=2, key_dim=4, ffn_dim=16,
                 classifier_hidden=4)


def test_kmax_plain_unet_3d_output_shapes():
    torch.manual_seed(0)
    strides = [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]]   # ACDC 3d_lite topology
    net = KMaXPlainConvUNet(**_plain_kwargs(3, strides, (4, 8, 8, 16, 16)), deep_supervision=True, **KMAX_TINY)
    assert net.kmax_stage_ids == (0, 1)
    x = torch.randn(1, 1, 8, 32, 32)
    out = net(x, return_aux=True)
    assert [tuple(o.shape) for o in out["seg"]] == [(1, 3, 8, 32, 32), (1, 3, 8, 16, 16), (1, 3, 4, 8, 8),
                                                    (1, 3, 2, 4, 4)]
    assert out["conv"].shape == (1, 3, 8, 32, 32) and out["cluster"].shape == (1, 3, 8, 32, 32)
    net.eval()
    net.decoder.deep_supervision = False
    with torch.no_grad():
        y = net(x)
    assert isinstance(y, torch.Tensor) and y.shape == (1, 3, 8, 32, 32)
    # the U-Net part is nnU-Net's: a plain PlainConvUNet loads it (its keys are a subset)
    from dynamic_network_architectures.architectures.unet import PlainConvUNet
    plain = PlainConvUNet(**_plain_kwargs(3, strides, (4, 8, 8, 16, 16)))
    result = plain.load_state_dict(net.state_dict(), strict=False)
    assert not result.missing_keys and {k.split(".")[0] for k in result.unexpected_keys} == {"kmax"}


# ------------------------------------------------------------------------------------------------ strong view
@pytest.mark.parametrize("shape", [(2, 1, 4, 12, 12), (3, 2, 10, 9)])
def test_strong_view_is_intensity_only_and_reproducible(shape):
    x = torch.randn(*shape)
    original = x.clone()
    a = strong_view(x, generator=torch.Generator().manual_seed(3))
    b = strong_view(x, generator=torch.Generator().manual_seed(3))
    assert torch.equal(x, original) and torch.equal(a, b) and a.shape == x.shape and not torch.equal(a, x)
    only_brightness = StrongViewSettings(p_brightness=1.0, p_contrast=0, p_gamma=0, p_blur=0, p_noise=0, p_cutout=0)
    out = strong_view(x, only_brightness, generator=torch.Generator().manual_seed(0))
    ratio = out / x
    for i in range(shape[0]):                                 # one factor per sample, in range: no geometry change
        assert torch.allclose(ratio[i], ratio[i].flatten()[0].expand_as(ratio[i]), atol=1e-5)
        assert 0.75 <= ratio[i].flatten()[0].item() <= 1.25
    only_cutout = StrongViewSettings(p_brightness=0, p_contrast=0, p_gamma=0, p_blur=0, p_noise=0, p_cutout=1.0)
    out = strong_view(x, only_cutout, generator=torch.Generator().manual_seed(0))
    changed = out != x
    assert (out[changed] == 0).all() and changed.any()


def test_cutout_mask_names_exactly_the_erased_voxels_and_their_labels_become_ignore():
    torch.manual_seed(0)
    x = torch.randn(3, 1, 6, 16, 16) + 5.0                   # no voxel is 0 before the cutout
    only_cutout = StrongViewSettings(p_brightness=0, p_contrast=0, p_gamma=0, p_blur=0, p_noise=0, p_cutout=1.0)
    out, erased = strong_view(x, only_cutout, generator=torch.Generator().manual_seed(1), return_erased=True)
    assert erased.shape == (3, 1, 6, 16, 16) and erased.dtype == torch.bool
    assert torch.equal(erased, out == 0) and erased.any()
    same = strong_view(x, only_cutout, generator=torch.Generator().manual_seed(1))
    assert torch.equal(same, out)                            # the flag does not change the view
    full = torch.randint(0, 3, (3, 1, 6, 16, 16))
    coarse = F.interpolate(full.float(), size=(6, 8, 8), mode="nearest-exact").long()
    masked = ignore_erased([full, coarse], erased, 4)
    assert torch.equal(masked[0] == 4, erased) and torch.equal(masked[0][~erased], full[~erased])
    expected = F.interpolate(erased.float(), size=(6, 8, 8), mode="nearest-exact") > 0.5
    assert torch.equal(masked[1] == 4, expected)


def test_inplane_blur_keeps_constant_and_slices_apart():
    x = torch.zeros(1, 3, 9, 9)
    x[0, 1, 4, 4] = 1.0
    out = gaussian_blur_inplane(x, 1.0)
    assert out[0, 0].abs().sum() == 0 and out[0, 2].abs().sum() == 0          # no mixing along z
    assert out[0, 1].sum().item() == pytest.approx(1.0, rel=1e-5) and out[0, 1, 4, 4] < 1
    assert torch.allclose(gaussian_blur_inplane(torch.full((2, 5, 5), 3.0), 0.7), torch.full((2, 5, 5), 3.0))


def test_warmup_poly_schedule():
    assert warmup_poly_lr(0, 1e-4, 200, 5) == pytest.approx(0.2e-4)
    assert warmup_poly_lr(4, 1e-4, 200, 5) == pytest.approx(1e-4)
    assert warmup_poly_lr(5, 1e-4, 200, 5) == pytest.approx(1e-4)
    assert warmup_poly_lr(100, 1e-4, 200, 5) == pytest.approx(1e-4 * (1 - 95 / 195) ** 0.9)
    assert warmup_poly_lr(0, 1e-4, 2, 5) == pytest.approx(1e-4)          # short runs: no warm-up


# -------------------------------------------------------------------------------------------------- trainers
@pytest.mark.parametrize("name,configuration", [("nnUNetTrainerDKUXNet", "3d_lite"),
                                                ("nnUNetTrainerKMaX", "2d_lite"), ("nnUNetTrainerKMaX", "3d_lite")])
def test_trainer_builds_identical_state_dicts_for_training_and_prediction(use_env, name, configuration):
    """Paper widths: the training build (deep supervision on) and the predictor's build (off) have the same tensors."""
    import nnunet_weak.nnunet_ext.nnunet_weak_trainers as shim
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    env, _ = use_env
    pm = PlansManager(os.path.join(env["nnUNet_preprocessed"], TINY_NAME, "nnUNetPlans.json"))
    cm = pm.get_configuration(configuration)
    build = getattr(shim, name).build_network_architecture
    shapes = [{k: tuple(v.shape) for k, v in build(pm, cm, 1, 4, ds).state_dict().items()} for ds in (True, False)]
    assert shapes[0] == shapes[1]


def test_dkuxnet_inference_contract_and_network_b(use_env, tiny_3d, tmp_path):
    trainer = make_trainer("nnUNetTrainerDKUXNet_lite", "3d_lite")
    result = check_inference_contract(trainer)                               # strict load by nnU-Net's predictor
    assert type(trainer.network).__name__ == "DKUXNet" and trainer._do_i_compile() is False
    a, b = trainer.network, trainer.network_b
    assert a is not b and isinstance(trainer.optimizer, torch.optim.SGD)      # nnU-Net's, by default
    assert isinstance(trainer.optimizer_b, torch.optim.SGD) and trainer.optimizer_b is not trainer.optimizer
    assert trainer.initial_lr == 1e-2 and trainer.num_epochs == 1                 # NNW_NUM_EPOCHS=1 in the env
    paper = make_trainer("nnUNetTrainerDKUXNet_AdamW", "3d_lite")
    paper.initialize()
    assert isinstance(paper.optimizer, torch.optim.AdamW) and paper.initial_lr == 1e-4
    assert not torch.equal(a.kmax.queries, b.kmax.queries)                    # different initialisations
    saved = torch.load(result["checkpoint"], map_location="cpu", weights_only=False)
    assert set(saved["network_weights"]) == set(a.state_dict())               # network_weights = A only
    assert set(saved["nnunet_weak_extra_state"]) == {"network_b", "optimizer_b"}
    # B and its optimiser come back from a checkpoint
    with torch.no_grad():
        for p in b.parameters():
            p.add_(0.5)
    path = str(tmp_path / "ckpt.pth")
    trainer.save_checkpoint(path)
    other = make_trainer("nnUNetTrainerDKUXNet_lite", "3d_lite")
    other.load_checkpoint(path)
    assert all(torch.equal(x, y) for x, y in zip(other.network_b.state_dict().values(), b.state_dict().values()))
    trainer.set_deep_supervision_enabled(True)
    assert a.decoder.deep_supervision and b.decoder.deep_supervision


def test_kmax_inference_contract(use_env):
    trainer = make_trainer("nnUNetTrainerKMaX", "2d_lite")
    check_inference_contract(trainer)
    assert type(trainer.network).__name__ == "KMaXUNet" and trainer.enable_deep_supervision
    assert trainer.labelled_fraction == 1.0


def _tiny_batch(trainer, keys, seed=0):
    g = torch.Generator().manual_seed(seed)
    patch = trainer.configuration_manager.patch_size
    data = torch.randn(len(keys), 1, *patch, generator=g)
    target = torch.randint(0, 4, (len(keys), 1, *patch), generator=g).float()
    target[:, :, ..., :8] = 4                                                # some ignore voxels
    for i, k in enumerate(keys):
        if k in UNLABELLED:
            target[i] = 4
    return data, target


def test_dkuxnet_loss_terms(use_env, tiny_3d):
    trainer = make_trainer("nnUNetTrainerDKUXNet_lite", "3d_lite")
    trainer.initialize()
    trainer.strong_view_settings = StrongViewSettings(p_cutout=1.0)          # every sample gets a cutout
    trainer.do_split()                                                       # finds the unlabelled cases
    trainer.num_epochs, trainer.num_iterations_per_epoch = 10, 10
    trainer.current_epoch, trainer._iter_in_epoch = 2, 0                     # t = 0.2: half-way up the ramp
    keys = [UNLABELLED[1], "tiny_002"]
    data, target = _tiny_batch(trainer, keys)
    torch.manual_seed(0)
    output = trainer.network_forward(data)
    loss, logs = trainer.compute_loss(output, target, data, {"keys": keys})
    weight = 0.1 * math.exp(-5 * (1 - 0.2 / 0.4) ** 2)
    assert logs["w_cons"] == pytest.approx(weight) and logs["labelled"] == 0.5
    out_a, out_b = output
    target_a = ignore_erased(target, trainer._erased, 4)                     # A's cutout voxels are ignore
    assert trainer._erased[1].any() and not torch.equal(target_a[1], target[1])
    sup = []
    for out, t in ((out_a, target_a), (out_b, target)):                      # supervised terms: labelled entry only
        seg = trainer.loss(out["seg"][1:], t[1:])
        query = trainer.query_loss(out["cluster"][1:], t[1:])
        conv = trainer.conv_loss(out["conv"][1:], t[1:])
        sup.append(seg + 0.1 * query + 0.5 * conv)
    assert logs["seg_a"].item() == pytest.approx(trainer.loss(out_a["seg"][1:], target_a[1:]).item(), rel=1e-5)
    segc = ((softmax_probabilities(out_a["seg"]) - softmax_probabilities(out_b["seg"])) ** 2).sum(1).mean()
    qdc = ((out_a["cluster"] - out_b["cluster"]) ** 2).sum(1).mean()
    assert logs["segc"].item() == pytest.approx(segc.item(), rel=1e-5)
    assert loss.item() == pytest.approx((sup[0] + sup[1] + weight * (segc + qdc)).item(), rel=1e-5)
    loss.backward()
    for net in (trainer.network, trainer.network_b):
        grads = [p.grad for p in net.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        assert net.kmax.classifier[0].weight.grad.abs().sum() > 0

    # an all-unlabelled batch: no supervised term, consistency only, still finite and trainable
    keys = list(UNLABELLED)
    data, target = _tiny_batch(trainer, keys, seed=1)
    trainer.network.zero_grad()
    loss, logs = trainer.compute_loss(trainer.network_forward(data), target, data, {"keys": keys})
    assert logs["seg_a"] == 0.0 and logs["query_b"] == 0.0 and torch.isfinite(loss)
    loss.backward()
    assert trainer.network.kmax.classifier[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["nnUNetTrainerKMaX_lite", "nnUNetTrainerKMaX_queryLoss"])
def test_kmax_loss_terms(use_env, name):
    trainer = make_trainer(name, "2d_lite")
    trainer.initialize()
    data = torch.randn(2, 1, 48, 48)
    full = torch.randint(0, 5, (2, 1, 48, 48)).float()
    target = [full] + [F.interpolate(full, size=(48 // f, 48 // f), mode="nearest-exact") for f in (2, 4)]
    output = trainer.network_forward(data)
    assert len(output["seg"]) == 3
    loss, logs = trainer.compute_loss(output, target, data, {"keys": ["tiny_000", "tiny_001"]})
    expected = trainer.loss(output["seg"], target) + 0.5 * trainer.conv_loss(output["conv"], full)
    if name.endswith("queryLoss"):
        expected = expected + 0.1 * trainer.query_loss(output["cluster"], full)
        assert "query" in logs
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert trainer.network.decoder.seg_layers[-1].weight.grad.abs().sum() > 0      # the auxiliary conv head trains
    assert trainer.network.kmax.classifier[0].weight.grad.abs().sum() > 0


def test_dkuxnet_rejects_2d_configurations(use_env):
    with pytest.raises(NNWError, match="'2d_lite'"):
        make_trainer("nnUNetTrainerDKUXNet_lite", "2d_lite")


@pytest.mark.parametrize("name", ["nnUNetTrainerDKUXNet_DS", "nnUNetTrainerDKUXNet_shared",
                                  "nnUNetTrainerDKUXNet_paperGroups"])
def test_dkuxnet_variants_train_step(use_env, tiny_3d, monkeypatch, name):
    """One real training step (nnU-Net's loader, both views, the optimiser(s)) of the structural variants, with
    tiny widths."""
    import nnunet_weak.nnunet_ext.nnunet_weak_trainers as shim
    groups = "paper" if name.endswith("paperGroups") else "per_class"
    monkeypatch.setattr(getattr(shim, name), "DK_KW", dict(TINY_LITE, num_queries=24, query_groups=groups))
    trainer = make_trainer(name, "3d_lite")
    trainer.initialize()
    loader, _ = trainer.get_dataloaders()
    batch = next(loader)
    if name.endswith("_DS"):
        assert isinstance(batch["target"], list) and len(batch["target"]) == 4
        assert [tuple(t.shape[2:]) for t in batch["target"]] == [(4, 48, 48), (4, 24, 24), (4, 12, 12), (4, 6, 6)]
    # as many labelled samples per step as the labelled-only control: the batch doubles, half of it unlabelled
    assert trainer.batch_size == 2 * trainer.configuration_manager.batch_size == len(batch["keys"])
    before = [p.detach().clone() for p in trainer.network_b.parameters()]
    out = trainer.train_step(batch)
    assert np.isfinite(out["loss"]) and out["labelled"] == 0.5
    moved = any(not torch.equal(a, p) for a, p in zip(before, trainer.network_b.parameters()))
    assert moved
    if name.endswith("_shared"):
        assert trainer.network_b is trainer.network and trainer.optimizers() == [trainer.optimizer]
        assert not trainer._extra_state
    if name.endswith("paperGroups"):
        assert trainer.network.kmax.group_sizes == (16, 4, 4)
        assert trainer.query_loss.class_to_group.tolist() == [0, 1, 2, 2]


@pytest.mark.parametrize("name", ["nnUNetTrainerDKUXNet_lite_labelledOnly",
                                  "nnUNetTrainerDKUXNet_lite_labelledOnly_weakView"])
def test_dkuxnet_labelled_only_control_is_the_predicting_network_alone(use_env, tiny_3d, monkeypatch, name):
    """The matched control of DKUXNet: one network, batches of labelled cases only at the planned size, and on the
    same weights and random draws exactly the method's supervised terms of the network that predicts (A on the
    strong view with cutout labels ignored; B on the weak view for ``_weakView``)."""
    import nnunet_weak.nnunet_ext.nnunet_weak_trainers as shim
    weak = name.endswith("weakView")
    method_name = "nnUNetTrainerDKUXNet_lite_predictWeakView" if weak else "nnUNetTrainerDKUXNet_lite"
    for n in (name, method_name):
        monkeypatch.setattr(getattr(shim, n), "DK_KW", dict(TINY_LITE))
    control, method = make_trainer(name, "3d_lite"), make_trainer(method_name, "3d_lite")
    for t in (control, method):
        t.initialize()
        t.strong_view_settings = StrongViewSettings(p_cutout=1.0)
    assert control.network_b is None and control.optimizers() == [control.optimizer]
    assert isinstance(control.optimizer, torch.optim.SGD) and not control._extra_state

    loader, _ = control.get_dataloaders()
    batch = next(loader)
    assert control.batch_size == control.configuration_manager.batch_size == len(batch["keys"])
    assert not set(batch["keys"]) & set(UNLABELLED) and control.unlabelled_keys == set(UNLABELLED)

    control.network.load_state_dict(method.network.state_dict())
    keys = ["tiny_000", "tiny_002"]
    data, target = _tiny_batch(control, keys)
    torch.manual_seed(3)
    loss, logs = control.compute_loss(control.network_forward(data), target, data, {"keys": keys})
    torch.manual_seed(3)
    _, method_logs = method.compute_loss(method.network_forward(data), target, data, {"keys": keys})
    own = "b" if weak else "a"
    expected = method_logs[f"seg_{own}"] + 0.1 * method_logs[f"query_{own}"] + 0.5 * method_logs[f"conv_{own}"]
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert (control._erased is None) == weak
    if not weak:                                                             # the cutout's labels were ignored
        torch.manual_seed(3)
        unmasked, _ = control.supervised_terms(control.network_forward(data), target, torch.ones(2, dtype=bool))
        assert control._erased.any() and abs(unmasked.item() - loss.item()) > 1e-4

    before = [p.detach().clone() for p in control.network.parameters()]
    out = control.train_step(batch)
    assert np.isfinite(out["loss"]) and "segc" not in out
    assert any(not torch.equal(a, p) for a, p in zip(before, control.network.parameters()))
    check_inference_contract(control)                                        # strict load by nnU-Net's predictor


def _dual_kmax_step(trainer, keys):
    """(output, deep-supervision target, loss, logs) of one Dual kMaX step on the tiny batch of ``keys``, with the
    consistency ramp at its maximum."""
    trainer.do_split()
    trainer.num_epochs, trainer.num_iterations_per_epoch = 10, 10
    trainer.current_epoch, trainer._iter_in_epoch = 5, 0
    data, full = _tiny_batch(trainer, keys)
    target = [full] + [F.interpolate(full, size=tuple(s // f for s in full.shape[2:]), mode="nearest-exact")
                       for f in (2, 4)][:len(trainer.loss.weight_factors) - 1]
    output = trainer.network_forward(data)
    loss, logs = trainer.compute_loss(output, target, data, {"keys": keys})
    return output, target, loss, logs


def test_dual_kmax_is_kmax_plus_mutual_learning_on_unlabelled_cases(use_env):
    """nnUNetTrainerDualKMaX: nnUNetTrainerKMaX's network and supervised terms (its matched control) for two
    networks, plus the consistency on every entry; 2D, deep supervision, SGD without warm-up."""
    trainer = make_trainer("nnUNetTrainerDualKMaX_lite", "2d_lite")
    check_inference_contract(trainer)
    assert type(trainer.network).__name__ == type(trainer.network_b).__name__ == "KMaXUNet"
    assert trainer.enable_deep_supervision and isinstance(trainer.optimizer, torch.optim.SGD)
    assert trainer.lr_scheduler.warmup_epochs == 0 and trainer.query_weight == 0.0
    control = make_trainer("nnUNetTrainerKMaX_lite", "2d_lite")
    control.initialize()
    assert list(trainer.network.state_dict()) == list(control.network.state_dict())

    output, target, loss, logs = _dual_kmax_step(trainer, [UNLABELLED[1], "tiny_002"])
    out_a, out_b = output
    target_a = ignore_erased(target, trainer._erased, 4)
    expected = []
    for out, t in ((out_a, target_a), (out_b, target)):                      # KMaX's terms on the labelled entry
        seg = [s[1:] for s in out["seg"]]
        expected.append(control.loss(seg, [x[1:] for x in t]) + 0.5 * control.conv_loss(out["conv"][1:], t[0][1:]))
    segc = ((softmax_probabilities(out_a["seg"][0]) - softmax_probabilities(out_b["seg"][0])) ** 2).sum(1).mean()
    qdc = ((out_a["cluster"] - out_b["cluster"]) ** 2).sum(1).mean()
    assert loss.item() == pytest.approx((expected[0] + expected[1] + 0.1 * (segc + qdc)).item(), rel=1e-4)
    loss.backward()
    assert trainer.network_b.kmax.classifier[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["nnUNetTrainerDualKMaX_lite", "nnUNetTrainerDualKMaX_lite_noConsistency"])
def test_unlabelled_cases_train_only_through_the_consistency(use_env, name):
    """On a batch of unlabelled cases only, the default's loss is the consistency alone and moves both networks;
    ``_noConsistency`` gives 0 and no gradient, so the unlabelled cases take no part in it."""
    trainer = make_trainer(name, "2d_lite")
    trainer.initialize()
    _, _, loss, logs = _dual_kmax_step(trainer, [UNLABELLED[0], UNLABELLED[1]])
    assert logs["segc"] > 0 and logs["qdc"] > 0                              # computed and logged either way
    loss.backward()
    grads = [p.grad.abs().sum().item() if p.grad is not None else 0.0
             for net in (trainer.network, trainer.network_b) for p in net.parameters()]
    if name.endswith("noConsistency"):
        assert loss.item() == 0.0 and max(grads) == 0.0
    else:
        assert loss.item() == pytest.approx(0.1 * (logs["segc"] + logs["qdc"]).item(), rel=1e-5)
        assert trainer.network.kmax.classifier[0].weight.grad.abs().sum() > 0
        assert trainer.network_b.kmax.classifier[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["nnUNetTrainerDualKMaX_lite", "nnUNetTrainerDualKMaX_lite_predictStrongView",
                                  "nnUNetTrainerDKUXNet_lite", "nnUNetTrainerDKUXNet_lite_predictWeakView"])
def test_predictor_view_names_the_network_on_each_view(use_env, tiny_3d, monkeypatch, name):
    """The weak view (the batch as nnU-Net augments it) goes to network B. Dual kMaX's default and DKUXNet's
    ``_predictWeakView`` make B nnU-Net's own network (saved as network_weights, validated, used by
    nnUNetv2_predict) and A the extra state; ``_predictStrongView`` and DKUXNet's default the other way round."""
    dual = "DualKMaX" in name
    if not dual:
        import nnunet_weak.nnunet_ext.nnunet_weak_trainers as shim
        monkeypatch.setattr(getattr(shim, name), "DK_KW", dict(TINY_LITE))
    trainer = make_trainer(name, "2d_lite" if dual else "3d_lite")
    trainer.initialize()
    trainer.strong_view_settings = StrongViewSettings(p_cutout=1.0)
    data, _ = _tiny_batch(trainer, ["tiny_000", "tiny_001"])
    out_strong, out_weak = trainer.network_forward(data)
    predictor, second = trainer.network, trainer.network_b
    b_predicts = name.endswith("predictWeakView") or name == "nnUNetTrainerDualKMaX_lite"
    on_weak = predictor if b_predicts else second
    on_strong = second if on_weak is predictor else predictor
    def seg(out):
        return out["seg"][0] if isinstance(out["seg"], (list, tuple)) else out["seg"]

    with torch.no_grad():
        assert torch.allclose(seg(on_weak(data, return_aux=True)), seg(out_weak), atol=1e-5)
        assert not torch.allclose(seg(on_strong(data, return_aux=True)), seg(out_strong), atol=1e-3)
    assert trainer._extra_state["network_b"] is second


def test_predictor_view_is_checked(use_env, monkeypatch):
    import nnunet_weak.nnunet_ext.nnunet_weak_trainers as shim
    monkeypatch.setattr(shim.nnUNetTrainerDualKMaX_lite, "predictor_view", "both")
    with pytest.raises(NNWError, match="predictor_view must be 'strong' or 'weak', not 'both'"):
        make_trainer("nnUNetTrainerDualKMaX_lite", "2d_lite")


def test_kmax_head_on_residual_encoder_plans(use_env):
    """nnU-Net's ResEnc presets give ResidualEncoderUNet configurations: the kMaX head attaches to them too (same
    decoder family), with the residual encoder kept; other architectures are refused with one line."""
    from nnunet_weak.networks.peer import peer_architecture
    trainer = make_trainer("nnUNetTrainerKMaX_lite", "2d_lite")
    cm = trainer.configuration_manager
    name, kwargs = peer_architecture(cm.network_arch_class_name, cm.network_arch_init_kwargs)
    assert name.endswith("ResidualEncoderUNet")
    cm.configuration["architecture"]["network_class_name"] = name
    cm.configuration["architecture"]["arch_kwargs"] = kwargs
    net = trainer.build_network_architecture(trainer.plans_manager, cm, 1, 4, True)
    assert type(net).__name__ == "KMaXUNet" and type(net.encoder).__name__ == "ResidualEncoder"
    x = torch.randn(2, 1, 48, 48)
    out = net(x, return_aux=True)
    assert tuple(out["seg"][0].shape) == (2, 4, 48, 48) and tuple(out["conv"].shape) == (2, 4, 48, 48)
    again = trainer.build_network_architecture(trainer.plans_manager, cm, 1, 4, True)
    again.load_state_dict(net.state_dict())                             # strict: the rebuilt network matches
    net.eval()
    again.eval()
    net.decoder.deep_supervision = again.decoder.deep_supervision = False
    with torch.no_grad():
        assert torch.allclose(net(x), again(x))
    cm.configuration["architecture"]["network_class_name"] = "some.module.OtherUNet"
    with pytest.raises(NNWError, match="PlainConvUNet and ResidualEncoderUNet"):
        trainer.build_network_architecture(trainer.plans_manager, cm, 1, 4, True)


def test_own_networks_compile_only_when_asked(monkeypatch):
    """kMaX / DKUXNet: nnU-Net compiles by default on CUDA; these networks only with nnUNet_compile set, and then
    nnU-Net still decides (device, DDP)."""
    from nnunet_weak.training.own_network import ExplicitCompile

    class Stock:
        decision = True

        def _do_i_compile(self):
            return self.decision

    class Own(ExplicitCompile, Stock):
        pass

    monkeypatch.delenv("nnUNet_compile", raising=False)
    assert Own()._do_i_compile() is False
    monkeypatch.setenv("nnUNet_compile", "t")
    assert Own()._do_i_compile() is True
    Stock.decision = False
    assert Own()._do_i_compile() is False
