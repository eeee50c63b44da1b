"""``nnUNetTrainerPCE``: partial cross-entropy only, the literature's "pCE" scribble baseline.

Everything else is nnU-Net (network, augmentation, deep supervision, schedule). Compare with the stock
``nnUNetTrainer`` on the same dataset ("nnU-Net+pL"), whose partial loss adds a masked soft Dice to the CE.
"""
from nnunet_weak.losses.partial_ce import PartialCrossEntropy
from nnunet_weak.training.loss_factory import with_deep_supervision
from nnunet_weak.training.weak_base import nnUNetTrainerWeakBase


class nnUNetTrainerPCE(nnUNetTrainerWeakBase):
    def _build_loss(self):
        return with_deep_supervision(self, PartialCrossEntropy(ignore_label=self.label_manager.ignore_label))
