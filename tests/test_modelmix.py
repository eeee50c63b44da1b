"""ModelMix building blocks: the mixing pool, virtual networks, rotations and the vicinal losses."""
import math

import pytest
import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet

from nnunet_weak.data.rotation import rotate, rotate_labels, valid_after_round_trip
from nnunet_weak.losses.vicinal import (batch_mixup, class_cosine, mixup_terms, one_hot_partial,
                                        soft_partial_ce)
from nnunet_weak.networks.param_mix import mixed_parameters, mixing_pool, virtual_forward


def unet(in_channels=1, classes=4, seed=0):
    torch.manual_seed(seed)
    return PlainConvUNet(in_channels, 3, [4, 8, 16], torch.nn.Conv2d, 3, [1, 2, 2], [2, 2, 2], classes, [2, 2],
                         conv_bias=True, norm_op=torch.nn.InstanceNorm2d, norm_op_kwargs={"affine": True},
                         nonlin=torch.nn.LeakyReLU, deep_supervision=False)


# ---------------------------------------------------------------------- pool and virtual networks
def test_pool_holds_encoder_layers_of_equal_shape_only(one_thread):
    a, b = unet(in_channels=1), unet(in_channels=3)
    pool = mixing_pool(a, b, "conv")
    names = [n for layer in pool for n in layer]
    assert all(n.startswith("encoder.") for n in names)
    first = "encoder.stages.0.0.convs.0.conv.weight"
    assert first not in names                     # 1 vs 3 input channels: left out
    assert "encoder.stages.0.0.convs.1.conv.weight" in names
    assert all(len(layer) == 2 for layer in pool)  # weight + bias
    n_convs = sum(1 for n, m in a.named_modules() if n.startswith("encoder.") and isinstance(m, torch.nn.Conv2d))
    assert len(pool) == n_convs - 1
    with_norm = mixing_pool(a, b, "conv+norm")
    assert len(with_norm) > len(pool)
    assert any(n.endswith("norm.weight") for layer in with_norm for n in layer)
    assert not any("decoder" in n for layer in with_norm for n in layer)


def test_lambda_one_reproduces_the_owner_and_zero_uses_the_other_layer(one_thread):
    a, b = unet(seed=0), unet(seed=1)
    before = {n: p.detach().clone() for n, p in a.named_parameters()}
    x = torch.randn(2, 1, 32, 32)
    pool = mixing_pool(a, b)
    with torch.no_grad():
        assert torch.equal(virtual_forward(a, mixed_parameters(a, b, pool[:1], 1.0), x), a(x))
        layer = pool[0]
        swapped = mixed_parameters(a, b, [layer], 0.0)
        for n in layer:
            assert torch.equal(swapped[n], dict(b.named_parameters())[n])
        assert not torch.allclose(virtual_forward(a, swapped, x), a(x))
    # the virtual forward must leave the owner's weights alone (torch's tie_weights=True does not)
    assert all(torch.equal(p, before[n]) for n, p in a.named_parameters())


def test_full_mode_trains_both_networks_official_mode_only_the_owners_head(one_thread):
    a, b = unet(seed=0), unet(seed=1)
    x = torch.randn(2, 1, 32, 32)
    layer = mixing_pool(a, b)[1]
    virtual_forward(a, mixed_parameters(a, b, [layer], 0.3, "full"), x).square().mean().backward()
    params_b = dict(b.named_parameters())
    assert params_b[layer[0]].grad is not None and params_b[layer[0]].grad.abs().sum() > 0
    assert all(p.grad is None for n, p in b.named_parameters() if n not in layer)
    assert dict(a.named_parameters())["encoder.stages.0.0.convs.0.conv.weight"].grad.abs().sum() > 0

    a.zero_grad(set_to_none=True)
    b.zero_grad(set_to_none=True)
    virtual_forward(a, mixed_parameters(a, b, [layer], 0.3, "official"), x).square().mean().backward()
    assert all(p.grad is None for p in b.parameters())
    trained = [n for n, p in a.named_parameters() if p.grad is not None]
    assert trained and all(n.startswith("decoder.seg_layers.") for n in trained)


# ---------------------------------------------------------------------- rotation
def test_quarter_turn_is_rot90_and_the_round_trip_is_the_identity(one_thread):
    x = torch.arange(2 * 16 * 16, dtype=torch.float32).reshape(2, 1, 16, 16)
    quarter = rotate(x, torch.full((2,), math.pi / 2), mode="nearest")
    assert any(torch.equal(quarter, torch.rot90(x, k, (2, 3))) for k in (1, 3))
    theta = torch.tensor([0.3, 2.0])
    rows, cols = torch.meshgrid(torch.arange(24.0), torch.arange(20.0), indexing="ij")
    ramp = (0.5 * rows - 0.25 * cols + 3.0).expand(2, 3, 24, 20)   # bilinear sampling is exact on it
    back = rotate(rotate(ramp, theta), -theta)
    valid = valid_after_round_trip(ramp, theta)
    # two pixels in from the valid region's edge, both bilinear samplings stay inside the rotated patch
    outside = torch.nn.functional.pad(1 - valid, (2, 2, 2, 2), value=1.0)    # the patch border counts too
    inner = 1 - torch.nn.functional.max_pool2d(outside, 5, 1)
    assert 0.3 < valid.mean() < 1 and valid[..., 12, 10].all() and inner.sum() > 0
    assert ((back - ramp).abs() * inner).amax() < 1e-4
    # the back-rotated patch is empty exactly outside the valid mask (up to bilinear fringes)
    assert (back * (1 - torch.nn.functional.max_pool2d(valid, 3, 1, 1))).abs().amax() == 0


def test_rotated_labels_fill_with_ignore_and_keep_label_values(one_thread):
    labels = torch.randint(0, 4, (2, 1, 20, 20)).float()
    out = rotate_labels(labels, torch.tensor([0.7, 0.7]), ignore_label=4)
    assert set(out.unique().tolist()) <= {0.0, 1.0, 2.0, 3.0, 4.0}
    assert (out[..., 0, 0] == 4).all()            # a corner comes from outside the patch
    assert torch.equal(rotate_labels(labels, torch.zeros(2), 4), labels)
    volume = torch.randint(0, 3, (1, 1, 3, 10, 10)).float()   # 3D: each slice rotates in plane
    rotated = rotate_labels(volume, torch.tensor([math.pi / 2]), 9)
    for z in range(3):
        assert torch.equal(rotated[0, 0, z], rotate_labels(volume[:, :, z], torch.tensor([math.pi / 2]), 9)[0, 0])


# ---------------------------------------------------------------------- losses
def test_one_hot_partial_and_batch_mixup():
    labels = torch.tensor([[[[0, 2], [4, 1]]]]).float()
    onehot = one_hot_partial(labels, 3, ignore_label=4)
    assert onehot.shape == (1, 3, 2, 2)
    assert onehot[0, :, 1, 0].sum() == 0 and onehot[0, 2, 0, 1] == 1 and onehot[0, 0, 0, 0] == 1
    x = torch.tensor([[1.0], [3.0], [7.0]])
    lam = torch.tensor([0.25, 0.5, 1.0])
    assert torch.allclose(batch_mixup(x, lam), torch.tensor([[0.25 * 1 + 0.75 * 7], [3.0], [7.0]]))


def test_soft_partial_ce_by_hand():
    logits = torch.tensor([[[[0.0]], [[math.log(3.0)]]]])       # p = (0.25, 0.75) at one pixel
    target = torch.tensor([[[[0.5]], [[0.3]]]])                 # a mixed, partly empty label
    expected = -(0.5 * math.log(0.25) + 0.3 * math.log(0.75)) / 0.8
    assert math.isclose(soft_partial_ce(logits, target).item(), expected, rel_tol=1e-6)
    empty = torch.zeros_like(target)
    logits.requires_grad_(True)
    value = soft_partial_ce(logits, empty)
    value.backward()
    assert value.item() == 0 and torch.isfinite(logits.grad).all()


def test_class_cosine_by_hand():
    a = torch.tensor([[[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]]])
    b = torch.tensor([[[1.0, 1.0, 0.0], [2.0, 2.0, 2.0]]])
    expected = (0.5 + 1.0) / 2
    assert math.isclose(class_cosine(a, b).item(), expected, rel_tol=1e-6)
    assert class_cosine(a, torch.zeros_like(a)).item() == 0     # eps-safe on absent classes


def test_mixup_terms_on_an_all_ignore_batch_are_finite(one_thread):
    logits = torch.randn(2, 4, 8, 8, requires_grad=True)
    probs = torch.softmax(torch.randn(2, 4, 8, 8), 1)
    onehot = one_hot_partial(torch.full((2, 1, 8, 8), 4.0), 4, 4)
    ce, cons = mixup_terms(logits, probs, onehot, torch.tensor([0.2, 0.9]))
    (ce + cons).backward()
    assert ce.item() == 0 and 0 <= cons.item() <= 2 and torch.isfinite(logits.grad).all()


def test_mixing_pool_and_virtual_network_on_residual_encoders():
    """nnU-Net's ResEnc presets: the pool holds the residual encoder's convolutions (stem, blocks, skips) and the
    virtual network mixes them as it mixes a plain encoder's."""
    from dynamic_network_architectures.architectures.unet import ResidualEncoderUNet
    torch.manual_seed(0)

    def resenc():
        return ResidualEncoderUNet(1, 3, [4, 8, 16], torch.nn.Conv2d, 3, [1, 2, 2], [1, 2, 2], 3, [1, 1],
                                   norm_op=torch.nn.InstanceNorm2d, norm_op_kwargs={"affine": True},
                                   nonlin=torch.nn.LeakyReLU, deep_supervision=False)
    a, b = resenc(), resenc()
    pool = mixing_pool(a, b, "conv")
    names = [layer[0] for layer in pool]
    assert any(".stem." in n for n in names) and sum(".blocks." in n for n in names) >= 5
    assert all(n.startswith("encoder.") for n in names)
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(virtual_forward(a, mixed_parameters(a, b, pool, 1.0), x), a(x))
        swapped = virtual_forward(a, mixed_parameters(a, b, pool[2:3], 0.0), x)
    assert not torch.equal(swapped, a(x))
