"""Checks on a dataset's label declaration, run before nnU-Net sees it so users get one clear line."""
from typing import Optional

from nnunet_weak.utilities.errors import NNWError


def _int_labels(labels: dict, where: str) -> dict:
    out = {}
    for name, value in labels.items():
        if isinstance(value, (list, tuple)):
            raise NNWError(f"{where}: label {name!r} is a region {value}; nnunet_weak trainers need plain integer "
                           f"labels (region training is not supported). Use integer labels in dataset.json.")
        out[name] = int(value)
    return out


def check_ignore_label(dataset_json: dict, where: str, required: bool = True) -> Optional[int]:
    """Return the ignore label value of ``dataset_json`` after checking nnU-Net's rules.

    ``where`` names the file in the message (e.g. the path of dataset.json). Raises :class:`NNWError` when the
    ignore label is missing (and ``required``), or is not exactly the highest label value.
    """
    if "labels" not in dataset_json:
        raise NNWError(f"{where} has no 'labels' entry; it is not an nnU-Net v2 dataset.json.")
    labels = _int_labels(dataset_json["labels"], where)
    if "ignore" not in labels:
        if required:
            highest = max(labels.values())
            raise NNWError(f"{where} declares no 'ignore' label, but weak-label trainers learn from partially "
                           f"annotated label maps. Mark unannotated pixels with {highest + 1} and add "
                           f"\"ignore\": {highest + 1} to 'labels' (or train with the stock nnUNetTrainer).")
        return None
    ignore = labels.pop("ignore")
    highest = max(labels.values())
    if ignore != highest + 1:
        raise NNWError(f"{where}: the ignore label is {ignore}, but nnU-Net requires it to be the highest value, "
                       f"one above the last class ({highest}). Relabel unannotated pixels to {highest + 1} and set "
                       f"\"ignore\": {highest + 1}.")
    return ignore
