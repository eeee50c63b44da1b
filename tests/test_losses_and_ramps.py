"""Partial CE against hand-computed values; ramp schedules as fractions of training."""
import math

import pytest
import torch

from nnunet_weak.losses.partial_ce import PartialCrossEntropy
from nnunet_weak.training.loss_factory import deep_supervision_weights
from nnunet_weak.utilities.ramps import sigmoid_rampup


def test_partial_ce_hand_computed():
    # 1 image, 2 classes, 3 pixels: logits (0,0) -> p=0.5 ; (ln 3, 0) -> p(class0)=0.75 ; third pixel ignored
    logits = torch.tensor([[[0.0, math.log(3.0), 5.0], [0.0, 0.0, -5.0]]]).view(1, 2, 1, 3)
    target = torch.tensor([[1, 0, 2]]).view(1, 1, 1, 3)
    loss = PartialCrossEntropy(ignore_label=2)(logits, target)
    expected = (-math.log(0.5) - math.log(0.75)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_partial_ce_ignores_values_of_unannotated_pixels():
    logits = torch.randn(2, 4, 5, 5)
    target = torch.randint(0, 4, (2, 1, 5, 5))
    target[:, :, :2] = 4
    a = PartialCrossEntropy(4)(logits, target)
    logits2 = logits.clone()
    logits2[:, :, :2] = torch.randn(2, 4, 2, 5) * 100  # anything at ignored pixels
    assert PartialCrossEntropy(4)(logits2, target).item() == pytest.approx(a.item(), rel=1e-6)


def test_partial_ce_all_ignore_is_zero_and_differentiable():
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    loss = PartialCrossEntropy(3)(logits, torch.full((1, 1, 4, 4), 3))
    loss.backward()
    assert loss.item() == 0.0 and logits.grad is not None and torch.all(logits.grad == 0)


def test_partial_ce_is_fp32_for_half_logits():
    logits = torch.randn(1, 3, 4, 4).half()
    loss = PartialCrossEntropy(3)(logits, torch.randint(0, 3, (1, 1, 4, 4)))
    assert loss.dtype == torch.float32


def test_deep_supervision_weights_match_nnunet():
    w = deep_supervision_weights(5)
    assert w == pytest.approx([8 / 15, 4 / 15, 2 / 15, 1 / 15, 0.0])


def test_ramps():
    assert sigmoid_rampup(0.0) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(0.5, 0.0, 1.0) == pytest.approx(math.exp(-5 * 0.25))
    assert sigmoid_rampup(0.05, 0.1, 0.5) == 0.0
    assert sigmoid_rampup(0.7, 0.1, 0.5) == 1.0
    assert sigmoid_rampup(0.5, 0.5, 0.5) == 1.0 and sigmoid_rampup(0.4, 0.5, 0.5) == 0.0  # zero-length = step
