"""Poly learning-rate decay after a linear warm-up, stepped per epoch like nnU-Net's ``PolyLRScheduler``.

    epoch e < w:  lr = initial_lr * (e + 1) / w
    epoch e >= w: lr = initial_lr * (1 - (e - w) / (E - w)) ^ 0.9          E = number of epochs

``w = min(warmup_epochs, E // 10)``, so short (CPU) runs are not all warm-up.
"""
import torch
from torch.optim.lr_scheduler import _LRScheduler


def effective_warmup(warmup_epochs: int, num_epochs: int) -> int:
    return max(0, min(int(warmup_epochs), int(num_epochs) // 10))


def warmup_poly_lr(epoch: int, initial_lr: float, num_epochs: int, warmup_epochs: int,
                   exponent: float = 0.9) -> float:
    w = effective_warmup(warmup_epochs, num_epochs)
    if epoch < w:
        return initial_lr * (epoch + 1) / w
    return initial_lr * max(0.0, 1 - (epoch - w) / max(1, num_epochs - w)) ** exponent


class WarmupPolyLRScheduler(_LRScheduler):
    """``step(epoch)`` sets every group's lr to :func:`warmup_poly_lr` (nnU-Net calls ``step(current_epoch)``)."""

    def __init__(self, optimizer: torch.optim.Optimizer, initial_lr: float, num_epochs: int, warmup_epochs: int = 5,
                 exponent: float = 0.9):
        self.initial_lr, self.num_epochs = initial_lr, num_epochs
        self.warmup_epochs, self.exponent = warmup_epochs, exponent
        self.ctr = 0
        super().__init__(optimizer, -1)

    def step(self, current_step=None):
        if current_step is None or current_step == -1:
            current_step = self.ctr
            self.ctr += 1
        lr = warmup_poly_lr(current_step, self.initial_lr, self.num_epochs, self.warmup_epochs, self.exponent)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]
