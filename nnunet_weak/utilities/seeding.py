"""Seeding a training run (``NNW_SEED``), so that independent runs are named and a run can be repeated.

nnU-Net seeds nothing: every run starts from fresh random weights and draws fresh batches, which is what
independent runs for a benchmark need. ``NNW_SEED=k`` seeds Python's, NumPy's and torch's global generators
before the trainer builds its network and data loaders, so run k starts from the same weights and, with
augmentation in the training process (``nnUNet_n_proc_DA=0``), draws the same batches. Worker processes
(``nnUNet_n_proc_DA`` > 0) seed themselves, and CPU / GPU kernels are not bitwise deterministic, so a repeated
run is close to, not identical with, the first.
"""
import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)
