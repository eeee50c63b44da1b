"""``nnUNetTrainerLabelledOnly``: nnU-Net trained on the labelled cases of a semi-supervised dataset only.

The "labelled cases only" baseline of semi-supervised papers (e.g. Dataset805 with 10 % of the patients
labelled). Stock ``nnUNetTrainer`` on such a dataset already gets zero loss from the unlabelled (all-ignore)
cases, but they still fill batch slots: at 10 % labelled, nine of ten samples teach nothing. Here every sample of
every batch comes from a labelled case. Network, loss, augmentation and schedule are nnU-Net's; padding stays
background as in nnU-Net, since the labels are dense.
"""
from nnunet_weak.training.weak_base import nnUNetTrainerWeakBase


class nnUNetTrainerLabelledOnly(nnUNetTrainerWeakBase):
    labelled_fraction = 1.0
    pad_as_ignore = False
