"""Unlabelled training cases: label maps that are entirely ``ignore``.

nnU-Net already trains on them (they are cropped at random and contribute nothing to a partial loss). What it
lacks, and what lives here: finding them once, drawing a fixed share of every batch from labelled cases, and
keeping them out of validation (their pseudo Dice is NaN).
"""
import contextlib
from typing import Callable, Iterable, List, Sequence, Tuple

import numpy as np
from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
from nnunetv2.training.nnUNetTrainer import nnUNetTrainer as nnunet_trainer_module


def is_unlabelled(properties: dict) -> bool:
    """A preprocessed case is unlabelled when no annotated voxel was recorded for any class.

    ``properties['class_locations']`` (written by nnU-Net's preprocessor) has one key per class plus, with an
    ignore label, a key for "any annotated voxel"; all of them are empty exactly when the map is all-ignore.
    """
    locations = properties.get("class_locations", {})
    return all(len(v) == 0 for v in locations.values())


def split_labelled(dataset, keys: Iterable[str]) -> Tuple[List[str], List[str]]:
    """(labelled keys, unlabelled keys) of an nnU-Net dataset object, in the order given."""
    labelled, unlabelled = [], []
    for k in keys:
        properties = dataset.load_case(k)[3]
        (unlabelled if is_unlabelled(properties) else labelled).append(k)
    return labelled, unlabelled


class MixedLabelDataLoader(nnUNetDataLoader):
    """nnUNetDataLoader whose batches hold exactly ``round(labelled_fraction * batch_size)`` labelled cases.

    Unlabelled cases come first in the batch so that nnU-Net's forced-foreground samples (the last third of
    a batch) land on labelled cases, where a foreground class exists. Cases are drawn with replacement,
    uniformly within each group. ``foreground_share_of_labelled``: force foreground in the planned share
    (``oversample_foreground_percent``) of the labelled samples rather than of the whole batch, so that a batch
    grown by unlabelled samples oversamples its labelled part exactly as a batch of labelled cases alone would
    (nnU-Net's rule would give 8 of 12 labelled samples forced foreground in a batch of 12 + 12, against 4 of 12).
    """

    def __init__(self, *args, labelled_keys: Sequence[str], unlabelled_keys: Sequence[str],
                 labelled_fraction: float, foreground_share_of_labelled: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if not 0.0 <= labelled_fraction <= 1.0:
            raise ValueError(f"labelled_fraction must lie in [0, 1], got {labelled_fraction}")
        self.labelled_keys = list(labelled_keys)
        self.unlabelled_keys = list(unlabelled_keys)
        n_lab = int(round(labelled_fraction * self.batch_size))
        if not self.unlabelled_keys:
            n_lab = self.batch_size
        if not self.labelled_keys:
            n_lab = 0
        self.n_labelled = n_lab
        if foreground_share_of_labelled and not kwargs.get("probabilistic_oversampling", False):
            self.get_do_oversample = self._oversample_last_of_labelled

    def _oversample_last_of_labelled(self, sample_idx: int) -> bool:
        """nnU-Net's "last XX percent" rule applied to the labelled samples (the batch's tail) alone."""
        first_forced = round(self.n_labelled * (1 - self.oversample_foreground_percent))
        return sample_idx - (self.batch_size - self.n_labelled) >= max(first_forced, 0)

    def get_indices(self):
        n_unl = self.batch_size - self.n_labelled
        unl = list(np.random.choice(self.unlabelled_keys, n_unl, replace=True)) if n_unl else []
        lab = list(np.random.choice(self.labelled_keys, self.n_labelled, replace=True)) if self.n_labelled else []
        return unl + lab


@contextlib.contextmanager
def nnunet_loader_class_replaced(factory: Callable):
    """While the block runs, nnU-Net's ``get_dataloaders`` builds its loaders with ``factory(stock_class, dataset,
    *args, **kwargs)`` instead of ``nnUNetDataLoader(dataset, *args, **kwargs)``.

    nnU-Net has no hook for the loader class: ``get_dataloaders`` calls the name ``nnUNetDataLoader`` of its own
    module. Rebinding that name for the duration of the call changes the loader without copying the method; the
    name is restored on exit, also on error."""
    stock = nnunet_trainer_module.nnUNetDataLoader
    nnunet_trainer_module.nnUNetDataLoader = lambda *args, **kwargs: factory(stock, *args, **kwargs)
    try:
        yield
    finally:
        nnunet_trainer_module.nnUNetDataLoader = stock
