"""Multi-view gated CRF loss (mCRF) of PA-Seg: a 2D gated CRF loss (Obukhov et al. 2019) applied slice by slice
in up to three views of a 3D patch, on a coarser grid.

Conventions:

- **Inputs are logits** by default (the trainer hands the highest-resolution head ``out[0]`` to the loss). They are
  resampled first and the softmax is taken on the resampled logits, as in the original.
  ``from_logits=False`` accepts probabilities instead; they are resampled as they are, which keeps them summing to 1.
  All arithmetic runs in float32 with autocast switched off, whatever the input dtype.
- **Grid**: logits, image and mask are resampled with (tri/bi)linear interpolation,
  ``align_corners=True``, to ``max(1, size // factor)`` along each axis. ``downsample="auto"`` picks the factors:
  in 3D, 2 on every axis except 1 on any axis whose spacing is more than twice the finest one (needs ``spacing``;
  without it every axis gets 2). This gives 64x64x48 for VS (128x128x48) and 64^3 for BraTS. In 2D, 2 only when
  the patch has more than 256^2 pixels, otherwise 1. An int or a per-axis tuple sets the factors explicitly.
- **Views**: view ``a`` is the stack of 2D slices perpendicular to spatial axis ``a`` of the
  (b, C, a0, a1, a2) tensor; the default (0, 1, 2) uses all three. A pair of pixels belongs to view ``a`` when the
  two voxels differ only along the two other axes, by at most ``radius`` each. A 2D input (b, C, y, x) has one view,
  the image plane, and ``views`` is ignored.
- **Kernel**: ``k_ij = weight * exp(-|r_i - r_j|^2 / (2 sigma_xy^2) - |x_i - x_j|^2 / (2 sigma_rgb^2))``
  with ``r`` the pixel index on the resampled grid and ``x`` the (z-scored) image, all selected channels together.
  Defaults sigma_xy = 6, sigma_rgb = 0.1, radius 5 (an 11x11 window), weight 1; the centre pair is excluded.
  ``use_mm=True`` measures ``r`` in millimetres instead (``spacing`` required; the resampled step along an axis is
  ``spacing * (n - 1) / (n' - 1)``, exact for ``align_corners=True``); PA-Seg's default is pixel units.
- **Compatibility**: Potts with the constant kept, ``1 - sum_c p_ic p_jc``, so the loss is >= 0 and
  exactly 0 for a prediction that is one-hot and the same class everywhere.
- **Valid pairs only** (our choice): a pair whose neighbour lies outside the slice adds
  nothing (no zero padding). With ``mask`` given, a pair adds something only when both of its pixels are valid.
- **Normalisation**: each view's sum over ordered pairs (i, j) is divided by the number of
  pixels, i.e. the number of valid voxels of the resampled volume over the whole batch (every voxel lies in exactly
  one slice of each view); the loss is the mean over the views. Pixels near the border have fewer pairs; they are
  still counted once in that normaliser, as in the original.

Implementation: shifted tensors, no loop over pixels. ``k_ij`` and ``1 - p_i.p_j`` are symmetric, so only half of
the window's offsets are visited and counted twice; an offset along a single axis is shared by the two views that
contain that axis and is computed once (165 offsets for three views at radius 5). Each offset is one pair of slices
of the volume. A small autograd function recomputes the kernels in backward rather than keeping one per offset, so
memory stays O(voxels) whatever the radius; the gradient reaches the logits (through the softmax and the
resampling), never the image or the mask.
"""
import math
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn


def _as_channel_mask(mask: torch.Tensor, ndim: int) -> torch.Tensor:
    """(b, *spatial) or (b, 1, *spatial) -> (b, 1, *spatial) float32."""
    if mask.ndim == ndim - 1:
        mask = mask.unsqueeze(1)
    if mask.ndim != ndim or mask.shape[1] != 1:
        raise ValueError(f"mask must be (b, 1, *spatial) or (b, *spatial), got {tuple(mask.shape)}")
    return mask.float()


def _pair_slices(offset: Sequence[int], shape: Sequence[int]) -> Tuple[Tuple[slice, ...], Tuple[slice, ...]]:
    """Index tuples (over the spatial axes) of the voxels i and of their neighbours i + offset, both in bounds."""
    src, dst = [], []
    for d, n in zip(offset, shape):
        if d >= 0:
            src.append(slice(0, n - d))
            dst.append(slice(d, n))
        else:
            src.append(slice(-d, n))
            dst.append(slice(0, n + d))
    return tuple(src), tuple(dst)


_ALL = (slice(None), slice(None))  # batch and channel axes


def _pair_kernels(feats: torch.Tensor, mask: Optional[torch.Tensor], offsets: Sequence[Tuple[Tuple[int, ...], float]]):
    """Yield (src, dst, k) per offset: k (b, *region) = coef * exp(-|f_src - f_dst|^2 / 2) * mask pair."""
    shape = tuple(feats.shape[2:])
    for off, coef in offsets:
        src, dst = _pair_slices(off, shape)
        diff = feats[_ALL + src] - feats[_ALL + dst]
        k = torch.exp(-0.5 * (diff * diff).sum(dim=1)).mul_(coef)
        if mask is not None:
            k.mul_(mask[_ALL + src][:, 0]).mul_(mask[_ALL + dst][:, 0])
        yield src, dst, k


class _PottsPairSum(torch.autograd.Function):
    """sum over offsets and in-bounds pairs of k_ij (1 - p_i.p_j); the gradient flows into the probabilities only.

    The kernels are recomputed in backward instead of being kept per offset, so memory stays O(voxels), and the
    gradient is accumulated in place into one buffer: dS/dp_i = -sum_j k_ij p_j over both pair directions.
    """

    @staticmethod
    def forward(ctx, probs, feats, mask, offsets):
        ctx.offsets = offsets
        ctx.save_for_backward(probs, feats, mask)
        total = probs.new_zeros(())
        for src, dst, k in _pair_kernels(feats, mask, offsets):
            dot = (probs[_ALL + src] * probs[_ALL + dst]).sum(dim=1)
            total += (k * (1.0 - dot)).sum()
        return total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_total):
        probs, feats, mask = ctx.saved_tensors
        grad = torch.zeros_like(probs)
        for src, dst, k in _pair_kernels(feats, mask, ctx.offsets):
            k = k.unsqueeze(1)
            grad[_ALL + src].addcmul_(k, probs[_ALL + dst])
            grad[_ALL + dst].addcmul_(k, probs[_ALL + src])
        return -grad_total * grad, None, None, None


class MultiViewGatedCRFLoss(nn.Module):
    """Gated CRF loss on 2D slices of up to three views, on a downsampled grid (PA-Seg's mCRF).

    Args:
        sigma_rgb: intensity bandwidth, in units of the (normalised) image.
        sigma_xy: position bandwidth, in pixels of the resampled grid (millimetres with ``use_mm``).
        weight: kernel weight.
        radius: half-width of the square in-plane window (the window is (2r+1)^2 minus its centre).
        downsample: "auto", an int (all axes) or a per-axis tuple of ints; see the module docstring.
        views: spatial axes, in 0..2, perpendicular to which 3D inputs are sliced.
        channels: image channels used by the intensity term; None = all.
        spacing: voxel spacing of the input patch per spatial axis, array order; used by ``downsample="auto"``
            and ``use_mm``.
        use_mm: position kernel in millimetres instead of pixels.
        from_logits: the first input holds logits (softmax taken after resampling); False = probabilities.

    Shapes:
        logits: (b, C, y, x) or (b, C, z, y, x), any float dtype.
        image: (b, c, *spatial), same spatial shape; treated as a constant (no gradient flows into it).
        mask: optional (b, 1, *spatial) or (b, *spatial), nonzero = valid pixel; after resampling a pixel is
            valid when the interpolated mask is >= 0.5.
    Returns:
        float32 scalar >= 0: mean over views of sum_{valid ordered pairs} k_ij (1 - p_i.p_j) / number of valid
        pixels. 0 (still attached to the graph) when no pixel is valid.
    """

    def __init__(self, sigma_rgb: float = 0.1, sigma_xy: float = 6.0, weight: float = 1.0, radius: int = 5,
                 downsample: Union[str, int, Sequence[int]] = "auto", views: Sequence[int] = (0, 1, 2),
                 channels: Optional[Sequence[int]] = None, spacing: Optional[Sequence[float]] = None,
                 use_mm: bool = False, from_logits: bool = True):
        super().__init__()
        if sigma_rgb <= 0 or sigma_xy <= 0:
            raise ValueError("sigma_rgb and sigma_xy must be positive")
        if int(radius) < 1:
            raise ValueError("radius must be >= 1")
        views = tuple(int(v) for v in views)
        if not views or any(v not in (0, 1, 2) for v in views) or len(set(views)) != len(views):
            raise ValueError(f"views must be distinct axes among 0, 1, 2, got {views}")
        if isinstance(downsample, str):
            if downsample != "auto":
                raise ValueError(f"downsample must be 'auto', an int or a tuple of ints, got {downsample!r}")
        elif isinstance(downsample, int):
            if downsample < 1:
                raise ValueError("downsample factors must be >= 1")
        else:
            downsample = tuple(int(f) for f in downsample)
            if any(f < 1 for f in downsample):
                raise ValueError("downsample factors must be >= 1")
        if use_mm and spacing is None:
            raise ValueError("use_mm=True needs the spacing")
        self.sigma_rgb = float(sigma_rgb)
        self.sigma_xy = float(sigma_xy)
        self.weight = float(weight)
        self.radius = int(radius)
        self.downsample = downsample
        self.views = views
        self.channels = None if channels is None else [int(c) for c in channels]
        self.spacing = None if spacing is None else tuple(float(s) for s in spacing)
        self.use_mm = bool(use_mm)
        self.from_logits = bool(from_logits)

    # ------------------------------------------------------------------ grid
    def factors(self, spatial_shape: Sequence[int]) -> Tuple[int, ...]:
        """Downsampling factor per spatial axis for an input of this spatial shape."""
        nd = len(spatial_shape)
        if self.spacing is not None and len(self.spacing) != nd:
            raise ValueError(f"spacing {self.spacing} does not match a {nd}D input")
        if isinstance(self.downsample, tuple):
            if len(self.downsample) != nd:
                raise ValueError(f"downsample {self.downsample} does not match a {nd}D input")
            return self.downsample
        if isinstance(self.downsample, int):
            return (self.downsample,) * nd
        # "auto"
        if nd == 2 and math.prod(spatial_shape) <= 256 * 256:
            return (1, 1)
        if self.spacing is None:
            return (2,) * nd
        finest = min(self.spacing)
        return tuple(1 if s > 2 * finest else 2 for s in self.spacing)

    def grid_shape(self, spatial_shape: Sequence[int]) -> Tuple[int, ...]:
        """Spatial shape of the grid the loss is computed on."""
        return tuple(max(1, int(n) // f) for n, f in zip(spatial_shape, self.factors(spatial_shape)))

    def _offsets(self, nd: int, shape: Sequence[int]) -> Dict[Tuple[int, int, int], float]:
        """Half of the window offsets of every view, as 3D offsets -> how many views contain them."""
        views = (0,) if nd == 2 else self.views
        r = self.radius
        counts: Dict[Tuple[int, int, int], float] = {}
        for a in views:
            u, v = [k for k in range(3) if k != a]
            for du in range(0, r + 1):
                for dv in range(-r, r + 1):
                    if du == 0 and dv <= 0:
                        continue
                    if du >= shape[u] or abs(dv) >= shape[v]:
                        continue  # no pair of this offset lies inside the slice
                    off = [0, 0, 0]
                    off[u], off[v] = du, dv
                    counts[tuple(off)] = counts.get(tuple(off), 0.0) + 1.0
        return counts

    def _steps(self, nd: int, in_shape: Sequence[int], grid: Sequence[int]) -> Tuple[float, float, float]:
        """Length of one resampled pixel along each of the three axes of the (possibly lifted) volume."""
        if not self.use_mm:
            return (1.0, 1.0, 1.0)
        steps = []
        for s, n, m in zip(self.spacing, in_shape, grid):
            steps.append(s * (n - 1) / (m - 1) if m > 1 else s * n)
        if nd == 2:
            steps = [1.0] + steps
        return tuple(steps)

    # ------------------------------------------------------------------ loss
    def forward(self, logits: torch.Tensor, image: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        with torch.autocast(device_type=logits.device.type, enabled=False):
            return self._loss(logits.float(), image.detach().float(), mask)

    def _loss(self, logits: torch.Tensor, image: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        if logits.ndim not in (4, 5):
            raise ValueError(f"logits must be (b, C, y, x) or (b, C, z, y, x), got {tuple(logits.shape)}")
        if image.ndim != logits.ndim or image.shape[0] != logits.shape[0] or image.shape[2:] != logits.shape[2:]:
            raise ValueError(f"image {tuple(image.shape)} does not match logits {tuple(logits.shape)}: "
                             f"same batch and spatial shape expected (resize it to the output's grid first)")
        nd = logits.ndim - 2
        if self.channels is not None:
            image = image[:, self.channels]
        if mask is not None:
            mask = _as_channel_mask(mask.detach(), logits.ndim).to(logits.device)
            if mask.shape[0] != logits.shape[0] or mask.shape[2:] != logits.shape[2:]:
                raise ValueError(f"mask {tuple(mask.shape)} does not match logits {tuple(logits.shape)}")

        in_shape = tuple(logits.shape[2:])
        grid = self.grid_shape(in_shape)
        if grid != in_shape:
            mode = "bilinear" if nd == 2 else "trilinear"
            logits = F.interpolate(logits, size=grid, mode=mode, align_corners=True)
            image = F.interpolate(image, size=grid, mode=mode, align_corners=True)
            if mask is not None:
                mask = (F.interpolate(mask, size=grid, mode=mode, align_corners=True) >= 0.5).float()
        elif mask is not None:
            mask = (mask != 0).float()
        probs = torch.softmax(logits, dim=1) if self.from_logits else logits

        feats = image / self.sigma_rgb
        if nd == 2:  # one view: the image plane of a volume with a single slice along axis 0
            probs, feats = probs.unsqueeze(2), feats.unsqueeze(2)
            mask = None if mask is None else mask.unsqueeze(2)
        shape = tuple(probs.shape[2:])
        steps = self._steps(nd, in_shape, grid)
        n_views = 1 if nd == 2 else len(self.views)
        n_valid = mask.sum() if mask is not None else torch.tensor(float(probs.shape[0] * math.prod(shape)),
                                                                   device=probs.device)

        offsets = []
        for off, count in self._offsets(nd, shape).items():
            dist2 = sum((d * st) ** 2 for d, st in zip(off, steps))
            offsets.append((off, count * math.exp(-dist2 / (2.0 * self.sigma_xy ** 2))))
        total = _PottsPairSum.apply(probs, feats.contiguous(), mask, offsets)
        # each unordered pair stands for the two ordered pairs (i, j) and (j, i)
        return 2.0 * self.weight * total / (n_views * n_valid.clamp_min(1.0))
