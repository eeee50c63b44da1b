"""ModelMix's vicinal-risk pieces: image-level mixup with soft partial labels,
the soft partial cross-entropy on mixed targets, and the per-(sample, class) cosine used by the consistency
terms. All losses run in float32 (they are called under autocast with half-precision logits).
"""
from typing import Tuple

import torch
import torch.nn.functional as F


def one_hot_partial(labels: torch.Tensor, num_classes: int, ignore_label) -> torch.Tensor:
    """(b, 1, ...) label map -> (b, C, ...) float one-hot with an all-zero vector where the label is ignore."""
    labels = labels[:, 0].long()
    known = labels != ignore_label if ignore_label is not None else torch.ones_like(labels, dtype=torch.bool)
    onehot = F.one_hot(torch.where(known, labels, torch.zeros_like(labels)), num_classes)
    onehot = onehot.movedim(-1, 1).float()
    return onehot * known.unsqueeze(1)


def batch_mixup(x: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """``lam_i x_i + (1 - lam_i) x_{b-1-i}``: each sample mixed with the batch reversed (the official pairing).
    x: (b, ...); lam: (b,)."""
    lam = lam.to(x.dtype).view(-1, *([1] * (x.ndim - 1)))
    return lam * x + (1 - lam) * torch.flip(x, [0])


def soft_partial_ce(logits: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Cross-entropy against soft targets that may be partly empty (mixed scribbles):
    ``sum(-target * log softmax(logits)) / max(sum(target), eps)``.

    logits, target: (b, C, ...). A batch without any labelled pixel gives 0 (with a graph).
    """
    log_p = torch.log_softmax(logits.float(), dim=1)
    target = target.float()
    return -(target * log_p).sum() / target.sum().clamp_min(eps)


def class_cosine(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean over samples and classes of the cosine similarity over pixels: a, b (b, C, ...) -> scalar in [-1, 1]."""
    a = a.float().flatten(2)
    b = b.float().flatten(2)
    return F.cosine_similarity(a, b, dim=2, eps=eps).mean()


def draw_beta(n: int, beta: float, device) -> torch.Tensor:
    """n draws of Beta(beta, beta) (float32, on ``device``)."""
    concentration = torch.tensor(float(beta))
    return torch.distributions.Beta(concentration, concentration).sample((n,)).to(device)


def mixup_terms(logits_mixed: torch.Tensor, probs_clean: torch.Tensor, target_onehot: torch.Tensor,
                lam: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """ModelMix's image-level mixup (L_inv): (soft pCE of the mixed prediction against the mixed labels,
    1 - cosine between the mixed prediction and the mix of the clean predictions).

    logits_mixed: (b, C, ...) on ``batch_mixup(x, lam)``; probs_clean: (b, C, ...) softmax on x (not detached,
    as in the original); target_onehot: (b, C, ...) from :func:`one_hot_partial`; lam: (b,).
    """
    ce = soft_partial_ce(logits_mixed, batch_mixup(target_onehot, lam))
    consistency = 1.0 - class_cosine(torch.softmax(logits_mixed.float(), 1), batch_mixup(probs_clean.float(), lam))
    return ce, consistency
