"""nnU-Net's own loss pieces, built the way ``nnUNetTrainer._build_loss`` builds them, for trainers that need a
second loss (for example a dense Dice + CE on pseudo labels beside the partial one used for validation). On the
CPU fast path (bf16 autocast) they compute in float32, as the trainer's own ``self.loss`` does."""
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

from nnunet_weak.utilities.cpu_bf16 import Float32Loss


def deep_supervision_weights(n_scales: int) -> np.ndarray:
    """nnU-Net's weights 1/2^i with the lowest resolution switched off, normalised to sum 1."""
    weights = np.array([1 / (2 ** i) for i in range(n_scales)])
    if n_scales > 1:
        weights[-1] = 0
    return weights / weights.sum()


def with_deep_supervision(trainer, loss: torch.nn.Module) -> torch.nn.Module:
    """``loss`` wrapped with nnU-Net's deep-supervision weights when the trainer uses deep supervision."""
    if not trainer.enable_deep_supervision:
        return loss
    return DeepSupervisionWrapper(loss, deep_supervision_weights(len(trainer._get_deep_supervision_scales())))


def dice_ce_loss(trainer, ignore_label: Optional[int] = None) -> torch.nn.Module:
    """nnU-Net's default Dice + CE (batch Dice from the plans, background excluded from Dice), deep-supervised
    like the trainer. ``ignore_label=None`` gives the dense loss, e.g. for pseudo labels."""
    loss = DC_and_CE_loss({"batch_dice": trainer.configuration_manager.batch_dice, "smooth": 1e-5, "do_bg": False,
                           "ddp": trainer.is_ddp}, {}, weight_ce=1, weight_dice=1, ignore_label=ignore_label,
                          dice_class=MemoryEfficientSoftDiceLoss)
    loss = with_deep_supervision(trainer, loss)
    return float32_loss(loss) if getattr(trainer, "cpu_bf16", False) else loss


def full_resolution(x: Union[torch.Tensor, Sequence[torch.Tensor]]) -> torch.Tensor:
    """The full-resolution tensor of a deep-supervised output or target list (highest resolution first), or the
    tensor itself."""
    return x[0] if isinstance(x, (list, tuple)) else x


def single_scale(loss: torch.nn.Module) -> torch.nn.Module:
    """The loss applied to one output tensor: the inner loss of nnU-Net's deep-supervision wrapper (for a
    full-resolution-only term), ``loss`` itself without one."""
    return loss.loss if isinstance(loss, DeepSupervisionWrapper) else loss


def float32_loss(loss: torch.nn.Module) -> torch.nn.Module:
    """``loss`` computing in float32 under autocast. A deep-supervision wrapper keeps its place outside (callers
    take its ``.loss`` for one output tensor); the loss inside it is wrapped. Idempotent."""
    if isinstance(loss, DeepSupervisionWrapper):
        loss.loss = float32_loss(loss.loss)
        return loss
    return loss if isinstance(loss, Float32Loss) else Float32Loss(loss)


def hard_targets_like(labels: torch.Tensor, outputs) -> List[torch.Tensor]:
    """Label maps for every output scale, as nnU-Net's loader makes them: ``labels`` (b, 1, *spatial) resized with
    ``nearest-exact`` to each output's grid. ``outputs``: one tensor or the deep-supervision list. Returns a list
    of float (b, 1, *spatial_k) tensors (one element without deep supervision)."""
    outputs: Sequence[torch.Tensor] = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    labels = labels.float()
    return [labels if tuple(o.shape[2:]) == tuple(labels.shape[2:])
            else F.interpolate(labels, size=tuple(o.shape[2:]), mode="nearest-exact") for o in outputs]
