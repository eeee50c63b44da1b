"""Stock nnU-Net+pL with a labelled share per batch: the baselines for datasets whose labels cover few cases.

``nnUNetTrainerLabelledOnly``: nnU-Net trained on the labelled cases of a semi-supervised dataset only, the
"labelled cases only" baseline of semi-supervised papers (e.g. Dataset805 with 10 % of the patients labelled).
Stock ``nnUNetTrainer`` on such a dataset already gets zero loss from the unlabelled (all-ignore) cases, but they
still fill batch slots: at 10 % labelled, nine of ten samples teach nothing. Here every sample of every batch
comes from a labelled case. Network, loss, augmentation and schedule are nnU-Net's; padding stays background as
in nnU-Net, since the labels are dense.

``nnUNetTrainerFewLabels``: nnU-Net+pL for a dataset where few cases carry (scribble) labels and the rest are
all-ignore: 80 % of every batch from the annotated cases, padding as ignore. It is ``nnUNetTrainerModelMix``'s
matched control (the same sampler, labelled share, padding rule, augmentation and loss; only ModelMix's second
task and parameter mixing are missing) and the baseline to beat on few-label data.

``nnUNetTrainerFewLabels_padBackground``: the same sampler with nnU-Net's padding rule (border = background),
to tell the sampler's effect from the padding rule's. The recipe knobs are named variants so that nnU-Net's output
folder says which recipe trained a model; ``NNW_LABELLED_FRACTION`` / ``NNW_PAD_AS_IGNORE`` remain for experiments
and are then recorded in the fold's ``debug.json`` (``recipe_from_env``).
"""
from nnunet_weak.training.weak_base import nnUNetTrainerWeakBase


class nnUNetTrainerLabelledOnly(nnUNetTrainerWeakBase):
    labelled_fraction = 1.0
    pad_as_ignore = False


class nnUNetTrainerFewLabels(nnUNetTrainerWeakBase):
    labelled_fraction = 0.8       # as nnUNetTrainerModelMix
    pad_as_ignore = True


class nnUNetTrainerFewLabels_padBackground(nnUNetTrainerFewLabels):
    pad_as_ignore = False
