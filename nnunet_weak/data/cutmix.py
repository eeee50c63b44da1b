"""CutMix-style mixing for PCLMix's dynamic mix.

One rectangle per sample covers a fixed fraction of the patch (0.2): height fraction exp(u * ln area),
u ~ U(0, 1), width fraction area / height fraction, sizes rounded to pixels, top-left corner uniform with the box
inside the patch. A mixed batch takes the box region from one permutation of the batch and the rest from another:

    x_m = M * x[box_perm] + (1 - M) * x[background_perm]

for images, scribbles (every deep-supervision scale, the box mask resized to that grid with ``nearest-exact``,
i.e. exactly what nnU-Net's ``DownsampleSegForDSTransform`` would make of the full-resolution mixed scribble) and
pseudo-label maps.
"""
import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F


def random_boxes(batch: int, shape: Sequence[int], area: float = 0.2, device="cpu",
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """(batch, 1, H, W) float mask, 1 inside one random box per sample of about ``area`` * H * W pixels.

    The random numbers are drawn on the CPU (``generator`` is a CPU generator or None for the global one)."""
    h, w = int(shape[0]), int(shape[1])
    u = torch.rand(batch, generator=generator, dtype=torch.float64)
    frac_h = torch.exp(u * math.log(area))                 # in [area, 1]
    frac_w = area / frac_h                                 # in [area, 1]
    box_h = torch.round(frac_h * h).long().clamp(1, h)
    box_w = torch.round(frac_w * w).long().clamp(1, w)
    top = (torch.rand(batch, generator=generator, dtype=torch.float64) * (h - box_h + 1)).long()
    left = (torch.rand(batch, generator=generator, dtype=torch.float64) * (w - box_w + 1)).long()
    rows = torch.arange(h)[None, :]
    cols = torch.arange(w)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < (top + box_h)[:, None])     # (batch, H)
    in_cols = (cols >= left[:, None]) & (cols < (left + box_w)[:, None])   # (batch, W)
    mask = (in_rows[:, :, None] & in_cols[:, None, :]).float()
    return mask[:, None].to(device)


def mask_like(mask: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The (b, 1, H, W) box mask on ``target``'s grid (nearest-exact, as nnU-Net's DS targets), as bool."""
    if tuple(mask.shape[2:]) != tuple(target.shape[2:]):
        mask = F.interpolate(mask.float(), size=tuple(target.shape[2:]), mode="nearest-exact")
    return mask > 0.5


def mix(mask: torch.Tensor, inside: torch.Tensor, outside: torch.Tensor) -> torch.Tensor:
    """``inside`` where the (b, 1, H, W) mask is set, ``outside`` elsewhere (same shape (b, c, h, w) or (b, h, w);
    the mask is resized to their grid)."""
    if inside.ndim == mask.ndim - 1:  # (b, h, w) label maps
        return torch.where(mask_like(mask, inside[:, None])[:, 0], inside, outside)
    return torch.where(mask_like(mask, inside), inside, outside)


def mix_batch(values: Union[torch.Tensor, List[torch.Tensor]], mask: torch.Tensor, box_perm: torch.Tensor,
              background_perm: torch.Tensor) -> Union[torch.Tensor, List[torch.Tensor]]:
    """Mix one tensor or a deep-supervision list: each element indexed by the same two permutations (b,) and
    combined with the box mask resized to its grid."""
    if isinstance(values, (list, tuple)):
        return [mix_batch(v, mask, box_perm, background_perm) for v in values]
    return mix(mask, values[box_perm], values[background_perm])


def two_permutations(batch: int, device="cpu", generator: Optional[torch.Generator] = None
                     ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Two independent random permutations of the batch (drawn on the CPU, returned on ``device``)."""
    return (torch.randperm(batch, generator=generator).to(device),
            torch.randperm(batch, generator=generator).to(device))


def dynamic_mix(data: torch.Tensor, target: Union[torch.Tensor, List[torch.Tensor]], labels_a: torch.Tensor,
                labels_b: torch.Tensor, area: float = 0.2
                ) -> Tuple[torch.Tensor, Union[torch.Tensor, List[torch.Tensor]], torch.Tensor]:
    """PCLMix's dynamic mix of one batch: two permutations a and b of the batch, one box
    per sample, and a coin flip which permutation fills the box; the other fills the surroundings.

    data: (b, c, H, W) images; target: (b, 1, H, W) label map or the deep-supervision list; labels_a / labels_b:
    (b, H, W) pseudo labels of every sample from two sources (the same tensor twice for one source), of which
    permutation a takes ``labels_a`` and b ``labels_b``.
    Returns the mixed images, mixed targets (every scale) and mixed pseudo labels (b, H, W).
    """
    b = data.shape[0]
    perm_a, perm_b = two_permutations(b, data.device)
    label_a, label_b = labels_a[perm_a], labels_b[perm_b]
    box = random_boxes(b, data.shape[2:], area, device=data.device)
    if torch.rand(()).item() < 0.5:                             # box from a, surroundings from b
        inside, outside, label_in, label_out = perm_a, perm_b, label_a, label_b
    else:
        inside, outside, label_in, label_out = perm_b, perm_a, label_b, label_a
    return (mix_batch(data, box, inside, outside), mix_batch(target, box, inside, outside),
            mix(box, label_in, label_out))
