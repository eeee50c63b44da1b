"""The timing file every nnunet_weak trainer writes into its fold folder (``nnunet_weak_timing.json``: the wall
time of each epoch's training phase, the time it waited for the loader, the precision) and what the benchmarks read
from it."""
import json
import os
from typing import Optional

import numpy as np

TIMING_FILE = "nnunet_weak_timing.json"


def train_seconds_per_iteration(fold_folder: str, skip_first: bool = True) -> Optional[float]:
    """Seconds per training iteration from the trainer's timing file: the median epoch (robust to a noisy
    neighbour on a shared machine) divided by the iterations per epoch; the first epoch (warm-up) is skipped
    when there are more."""
    path = os.path.join(fold_folder, TIMING_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        record = json.load(f)
    epochs = record["epochs"][1:] if skip_first and len(record["epochs"]) > 1 else record["epochs"]
    return float(np.median(epochs)) / record["iterations_per_epoch"] if epochs else None


def train_precision(fold_folder: str) -> Optional[str]:
    """What a trained fold computed in ('fp32', 'bf16 autocast (CPU)', ...), from its timing file; runs from
    before the CPU fast path existed recorded nothing and ran in fp32. None without a timing file."""
    path = os.path.join(fold_folder, TIMING_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f).get("precision", "fp32")
