"""Partial cross-entropy: cross-entropy averaged over annotated pixels only (the literature's "pCE")."""
import torch
import torch.nn.functional as F
from torch import nn


class PartialCrossEntropy(nn.Module):
    """Cross-entropy over pixels whose label is not ``ignore_label``.

    Args:
        ignore_label: value marking unannotated pixels (nnU-Net's ``ignore`` label), or None for plain CE.

    Shapes:
        logits: (b, C, *spatial) raw scores; target: (b, 1, *spatial) or (b, *spatial), integer class ids.
    Returns:
        scalar: sum of per-pixel CE over annotated pixels / number of annotated pixels. A batch without any
        annotated pixel returns 0 (connected to the graph, so backward works) instead of NaN.
    The CE is computed in float32 whatever the logits' dtype (fp16 under autocast loses precision in log-softmax).
    """

    def __init__(self, ignore_label=None):
        super().__init__()
        self.ignore_label = ignore_label

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.ndim == logits.ndim:
            target = target[:, 0]
        target = target.long()
        if self.ignore_label is None:
            return F.cross_entropy(logits.float(), target)
        annotated = target != self.ignore_label
        n = annotated.sum()
        safe_target = torch.where(annotated, target, torch.zeros_like(target))
        per_pixel = F.cross_entropy(logits.float(), safe_target, reduction="none")
        total = (per_pixel * annotated).sum()
        return total / n.clamp_min(1)
