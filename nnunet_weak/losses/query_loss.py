"""Query loss of Dual-KMax UX-Net: cross-entropy between the cluster outputs G and
the "merged cluster ground truth".

    L_q = - (1 / |A|) sum_{x in A} log clamp(G[g(y_x), x], eps)

G (b, groups, *S) are the query-assignment probabilities summed over each query block (they sum to 1 over the
groups), y the label map, g the class -> group map (identity for ``query_groups='per_class'``, min(y, 2) for
``'paper'``) and A the annotated voxels (label != ignore). The original code sums over voxels without epsilon; here it
is a mean over annotated voxels with eps = 1e-6 (our choice), so its scale does not depend on the patch size.
"""
from typing import Optional, Sequence

import torch
from torch import nn


class QueryLoss(nn.Module):
    """Args:
        class_to_group: group index of each class (length K).
        ignore_label: label of unannotated voxels, or None.
        eps: lower clamp of G before the log.

    Shapes: clusters (b, groups, *S) probabilities; target (b, 1, *S) or (b, *S) integer labels.
    Returns a float32 scalar; 0 (connected to the graph) when no voxel is annotated.
    """

    def __init__(self, class_to_group: Sequence[int], ignore_label: Optional[int] = None, eps: float = 1e-6):
        super().__init__()
        self.register_buffer("class_to_group", torch.as_tensor(list(class_to_group), dtype=torch.long),
                             persistent=False)
        self.ignore_label = ignore_label
        self.eps = eps

    def forward(self, clusters: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.ndim == clusters.ndim:
            target = target[:, 0]
        target = target.long()
        annotated = torch.ones_like(target, dtype=torch.bool) if self.ignore_label is None \
            else target != self.ignore_label
        classes = torch.where(annotated, target, torch.zeros_like(target))
        groups = self.class_to_group.to(classes.device)[classes]                  # (b, *S)
        with torch.autocast(device_type=clusters.device.type, enabled=False):
            picked = torch.gather(clusters.float(), 1, groups.unsqueeze(1)).squeeze(1)
            nll = -torch.log(picked.clamp_min(self.eps))
            return (nll * annotated).sum() / annotated.sum().clamp_min(1)
