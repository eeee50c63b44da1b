"""PCLMix's uncertainty-guided pixel contrast against a per-class memory queue.

    anchors: pixels of the embedding grid whose certainty label c is known (scribble or confident pseudo label);
             per (image, class) up to n_view = min(100, 1024 // #pairs) of them, half "hard" (the CNN decoder
             predicts another class there) and half "easy", topped up from the larger group
    loss(a) = -mean_{p in Q[c]} log( exp(a.p / tau) / (exp(a.p / tau) + sum_{n in Q[other classes]} exp(a.n / tau)) )
    L_ctr   = mean over anchors; tau = 0.07; the queue is constant (gradients reach the anchors only)
    enqueue (after the loss): per image and class, the L2-normalised mean embedding, FIFO, 500 per class

Default = the method as described: every class (background included) may anchor and is enqueued, positives are
the anchor's class in the queue and negatives all other classes' entries. ``legacy=True`` is the released
code's behaviour: a class anchors only with more than 100 pixels on the grid, only classes > 0 are enqueued,
the contrast set is the queues of classes 1..C-1 followed by 500 zero vectors labelled 0, and the positive on
the "diagonal" (queue row i for anchor row i, anchors ordered view-major) is dropped. On ACDC-sized grids this
leaves only background anchors, pushed away from the foreground prototypes.

Everything here is float32 (tau = 0.07 overflows fp16).
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from nnunet_weak.utilities.cpu_bf16 import float32_region
from nnunet_weak.utilities.errors import NNWError


class MemoryQueue:
    """Per-class FIFO ring of unit vectors: ``queue`` (C, size, dim), write position ``ptr`` (C,).

    Not an ``nn.Module``: it is trainer state (saved through ``state_dict``/``load_state_dict``), never part of
    the network's weights."""

    def __init__(self, num_classes: int, size: int = 500, dim: int = 256, device="cpu",
                 generator: Optional[torch.Generator] = None):
        init = torch.randn(num_classes, size, dim, generator=generator)
        self.queue = F.normalize(init, p=2, dim=2).to(device)
        self.ptr = torch.zeros(num_classes, dtype=torch.long)  # on the CPU: read every step, no device sync

    @property
    def num_classes(self) -> int:
        return self.queue.shape[0]

    @property
    def size(self) -> int:
        return self.queue.shape[1]

    def push(self, class_id: int, vectors: torch.Tensor) -> None:
        """Write (n, dim) vectors into class ``class_id``'s ring in order, overwriting the oldest entries."""
        n = vectors.shape[0]
        if n == 0:
            return
        if n > self.size:  # only the last `size` would survive anyway
            vectors = vectors[-self.size:]
            self.ptr[class_id] = (self.ptr[class_id] + n - self.size) % self.size
            n = self.size
        start = int(self.ptr[class_id])
        slots = (torch.arange(n) + start) % self.size
        self.queue[class_id, slots.to(self.queue.device)] = vectors.to(self.queue)
        self.ptr[class_id] = (start + n) % self.size

    @torch.no_grad()
    def enqueue_segments(self, embedding: torch.Tensor, labels: torch.Tensor, min_class: int = 0) -> None:
        """Push per image and class the L2-normalised mean embedding of its pixels.

        embedding: (b, dim, h, w); labels: (b, h, w) class ids, -1 = none; classes below ``min_class`` are
        skipped (legacy: 1). Order: image by image, classes ascending (the original's order)."""
        b, dim = embedding.shape[:2]
        flat = embedding.detach().float().flatten(2)                     # (b, dim, N)
        onehot = F.one_hot((labels.flatten(1) + 1).long(), self.num_classes + 1)[..., 1:].float()  # (b, N, C)
        counts = onehot.sum(1)                                            # (b, C)
        means = F.normalize(torch.bmm(flat, onehot).transpose(1, 2), p=2, dim=2)  # (b, C, dim); scale irrelevant
        present = (counts > 0).cpu()
        for c in range(min_class, self.num_classes):
            images = present[:, c].nonzero().flatten()
            if len(images):
                self.push(c, means[images.to(means.device), c])

    def state_dict(self) -> dict:
        return {"queue": self.queue.detach().cpu().clone(), "ptr": self.ptr.clone()}

    def load_state_dict(self, state: dict) -> None:
        if tuple(state["queue"].shape) != tuple(self.queue.shape):
            raise NNWError(f"saved memory queue has shape {tuple(state['queue'].shape)}, this trainer's "
                           f"{tuple(self.queue.shape)}; it belongs to another dataset or configuration.")
        self.queue = state["queue"].to(self.queue.device, torch.float32).clone()
        self.ptr = state["ptr"].cpu().long().clone()


def labels_to_grid(labels: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """(b, H, W) or (b, 1, H, W) integer map -> (b, h, w) long, torch's ``nearest`` (as the original)."""
    if labels.ndim == 3:
        labels = labels[:, None]
    return F.interpolate(labels.float(), size=size, mode="nearest")[:, 0].long()


def sample_anchors(embedding: torch.Tensor, certain: torch.Tensor, predicted: torch.Tensor, num_classes: int,
                   min_pixels: int = 1, max_samples: int = 1024, max_views: int = 100,
                   generator: Optional[torch.Generator] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Anchors for the contrast: (anchors (M, dim), labels (M,)), ordered view-major as in the original.

    embedding: (b, dim, h, w); certain: (b, h, w) certainty label, -1 = uncertain; predicted: (b, h, w) the CNN
    decoder's argmax on the same grid. An (image, class) pair qualifies with at least ``min_pixels`` certain
    pixels (legacy: 101). Each pair gives k = min(n_view, its pixels) anchors, n_view = min(max_views,
    max_samples // #pairs): k // 2 hard (certain == c, predicted != c) and the rest easy (predicted == c), the
    other group topping up when one runs short; pixels are drawn uniformly without replacement.
    """
    b, dim = embedding.shape[:2]
    cert = certain.flatten(1)                                             # (b, N)
    pred = predicted.flatten(1)
    classes = torch.arange(num_classes, device=cert.device)[None, :, None]
    in_class = cert[:, None, :] == classes                                # (b, C, N)
    hard = in_class & (pred[:, None, :] != classes)
    easy = in_class & ~hard
    counts = torch.stack([hard.sum(2), easy.sum(2)], -1).cpu()           # (b, C, 2): one sync per step
    pairs = ((counts.sum(-1) >= min_pixels) & (counts.sum(-1) > 0)).nonzero()  # (P, 2) rows (image, class)
    if len(pairs) == 0:
        return embedding.new_zeros(0, dim), torch.zeros(0, dtype=torch.long, device=embedding.device)
    n_view = min(max_views, max_samples // len(pairs))
    if n_view == 0:
        return embedding.new_zeros(0, dim), torch.zeros(0, dtype=torch.long, device=embedding.device)
    n_hard, n_easy = counts[pairs[:, 0], pairs[:, 1], 0], counts[pairs[:, 0], pairs[:, 1], 1]
    k = torch.clamp(n_hard + n_easy, max=n_view)
    k_hard = torch.minimum(n_hard, k // 2)
    k_easy = torch.minimum(n_easy, k - k_hard)
    k_hard = torch.minimum(n_hard, k - k_easy)

    device = embedding.device
    img, cls = pairs[:, 0].to(device), pairs[:, 1].to(device)

    def random_members(group: torch.Tensor) -> torch.Tensor:
        """(P, n_view): each pair's pixels of ``group`` (b, C, N) in random order, non-members after them."""
        keys = torch.rand(len(pairs), group.shape[-1], generator=generator,
                          device=generator.device if generator is not None else device).to(device)
        keys = keys.masked_fill(~group[img, cls], 2.0)  # rand is < 1, so members sort first
        order = keys.argsort(dim=1)[:, :n_view]
        return F.pad(order, (0, n_view - order.shape[1]))  # grids smaller than n_view: never selected anyway

    hard_idx, easy_idx = random_members(hard), random_members(easy)
    view = torch.arange(n_view, device=device)[None, :]
    kh, kt = k_hard.to(device)[:, None], k.to(device)[:, None]
    # view v of a pair: its v-th hard pixel while v < k_hard, then its (v - k_hard)-th easy pixel
    easy_pos = (view - kh).clamp(min=0)
    pixel = torch.where(view < kh, hard_idx, easy_idx.gather(1, easy_pos))
    valid = view < kt                                                     # (P, n_view)
    flat = embedding.flatten(2).transpose(1, 2)                           # (b, N, dim)
    anchors = flat[img[:, None], pixel]                                   # (P, n_view, dim)
    labels = cls[:, None].expand(-1, n_view)
    # view-major order (all pairs' view 0, then view 1, ...), which the legacy diagonal quirk depends on
    anchors, labels, valid = anchors.transpose(0, 1), labels.transpose(0, 1), valid.transpose(0, 1)
    return anchors[valid], labels[valid]


def contrast_set(queue: torch.Tensor, legacy: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """Queue entries as (features (M, dim), labels (M,)).

    Default: every class's entries, labelled by class. Legacy: classes 1..C-1, then ``size`` zero rows labelled 0
    (the original skips class 0 yet keeps its rows)."""
    c, size, dim = queue.shape
    labels = torch.arange(c, device=queue.device).repeat_interleave(size)
    if not legacy:
        return queue.reshape(c * size, dim), labels
    feats = torch.cat([queue[1:].reshape((c - 1) * size, dim), queue.new_zeros(size, dim)])
    return feats, torch.cat([labels[size:], labels.new_zeros(size)])


def info_nce(anchors: torch.Tensor, anchor_labels: torch.Tensor, contrast: torch.Tensor,
             contrast_labels: torch.Tensor, temperature: float = 0.07, drop_diagonal: bool = False) -> torch.Tensor:
    """Supervised InfoNCE against a fixed contrast set, in float32.

    anchors (M, dim), anchor_labels (M,), contrast (K, dim), contrast_labels (K,). For anchor i and each
    positive j (same label): -log(exp(s_ij) / (exp(s_ij) + sum_negatives exp(s_in))), s = a.q / temperature;
    averaged over the positives, then over anchors. ``drop_diagonal`` removes positive (i, i) (legacy quirk).
    Anchors without positives are left out; no anchors -> 0 (connected to ``anchors``' graph).
    """
    if anchors.shape[0] == 0:
        return anchors.float().sum() * 0.0
    with float32_region(anchors):  # autocast would run the product in half precision
        scores = anchors.float() @ contrast.float().detach().t() / temperature   # (M, K)
    positive = anchor_labels[:, None] == contrast_labels[None, :]
    negatives = torch.logsumexp(scores.masked_fill(positive, float("-inf")), dim=1, keepdim=True)  # (M, 1)
    log_prob = scores - torch.logaddexp(scores, negatives)
    if drop_diagonal:
        n = min(positive.shape)
        positive = positive.clone()
        idx = torch.arange(n, device=positive.device)
        positive[idx, idx] = False
    n_pos = positive.sum(1)
    per_anchor = -(log_prob * positive).sum(1) / n_pos.clamp(min=1)
    has_pos = n_pos > 0
    return (per_anchor * has_pos).sum() / has_pos.sum().clamp(min=1)


class PixelContrast:
    """The contrast term with its queue update: ``loss = contrast(embedding, certain, predicted, queue)``.

    embedding: (b, dim, h, w) unit vectors (projection head, stride 8); certain, predicted: (b, H, W) at full
    resolution (downsampled here with ``nearest``). The queue is updated after the loss, from the detached
    embedding and the grid's certainty labels.
    """

    def __init__(self, temperature: float = 0.07, max_samples: int = 1024, max_views: int = 100,
                 legacy: bool = False):
        self.temperature = temperature
        self.max_samples = max_samples
        self.max_views = max_views
        self.legacy = legacy

    def __call__(self, embedding: torch.Tensor, certain: torch.Tensor, predicted: torch.Tensor, queue: MemoryQueue,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
        grid = tuple(embedding.shape[2:])
        certain, predicted = labels_to_grid(certain, grid), labels_to_grid(predicted, grid)
        anchors, labels = sample_anchors(embedding, certain, predicted, queue.num_classes,
                                         min_pixels=self.max_views + 1 if self.legacy else 1,
                                         max_samples=self.max_samples, max_views=self.max_views, generator=generator)
        # a copy: the enqueue below writes into the queue in place, and backward still needs these entries
        feats, feat_labels = contrast_set(queue.queue.clone(), self.legacy)
        if anchors.shape[0] == 0:  # nothing qualifies: 0, still attached to the embedding's graph
            loss = embedding.float().sum() * 0.0
        else:
            loss = info_nce(anchors, labels, feats, feat_labels, self.temperature, drop_diagonal=self.legacy)
        queue.enqueue_segments(embedding, certain, min_class=1 if self.legacy else 0)
        return loss
