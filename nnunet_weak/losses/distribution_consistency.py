"""Consistency between the two networks of Dual-KMax UX-Net, on all samples.

The paper's formulas could not be retrieved; this package's choice is used:

    L_segc = mean_{b,x} sum_k (softmax_k(Y^A) - softmax_k(Y^B))^2      segmentation consistency
    L_qdc  = mean_{b,x} sum_g (G^A_g - G^B_g)^2                        query-distribution consistency

:class:`DistributionConsistency` computes either between two probability maps (softmax of the logits, or the
cluster outputs G, which already sum to 1 over groups). ``kind='kl'`` gives the symmetric KL option
0.5 [KL(p||q) + KL(q||p)] (summed over channels, averaged over voxels, eps 1e-6). Gradients reach both sides
(mutual learning) unless ``detach_second`` (stop-gradient on the weak / B side).
"""
import torch
from torch import nn

KINDS = ("mse", "kl")


class DistributionConsistency(nn.Module):
    """Shapes: p, q (b, C, *S) probabilities over C. Returns a float32 scalar >= 0, 0 when p == q."""

    def __init__(self, kind: str = "mse", detach_second: bool = False, eps: float = 1e-6):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown consistency kind {kind!r}; choose one of {KINDS}")
        self.kind, self.detach_second, self.eps = kind, detach_second, eps

    def forward(self, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        if p.shape != q.shape:
            raise ValueError(f"consistency between {tuple(p.shape)} and {tuple(q.shape)}")
        if self.detach_second:
            q = q.detach()
        with torch.autocast(device_type=p.device.type, enabled=False):
            p, q = p.float(), q.float()
            if self.kind == "mse":
                per_voxel = (p - q).pow(2).sum(1)
            else:
                log_p, log_q = p.clamp_min(self.eps).log(), q.clamp_min(self.eps).log()
                per_voxel = 0.5 * ((p * (log_p - log_q)).sum(1) + (q * (log_q - log_p)).sum(1))
            return per_voxel.mean()


def softmax_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """softmax over channels in float32 (the segmentation logits Y -> probabilities)."""
    with torch.autocast(device_type=logits.device.type, enabled=False):
        return torch.softmax(logits.float(), dim=1)
