"""``nnUNetTrainerPCE``: partial cross-entropy only, the literature's "pCE" scribble baseline.

Everything else is nnU-Net (network, augmentation, deep supervision, schedule). Compare with the stock
``nnUNetTrainer`` on the same dataset ("nnU-Net+pL"), whose partial loss adds a masked soft Dice to the CE.
"""
import numpy as np
import torch
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper

from nnunet_weak.losses.partial_ce import PartialCrossEntropy
from nnunet_weak.training.weak_base import nnUNetTrainerWeakBase


def deep_supervision_weights(n_scales: int) -> np.ndarray:
    """nnU-Net's weights 1/2^i with the lowest resolution switched off, normalised to sum 1."""
    weights = np.array([1 / (2 ** i) for i in range(n_scales)])
    if n_scales > 1:
        weights[-1] = 0
    return weights / weights.sum()


class nnUNetTrainerPCE(nnUNetTrainerWeakBase):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)

    def _build_loss(self):
        loss = PartialCrossEntropy(ignore_label=self.label_manager.ignore_label)
        if self.enable_deep_supervision:
            loss = DeepSupervisionWrapper(loss, deep_supervision_weights(len(self._get_deep_supervision_scales())))
        return loss
