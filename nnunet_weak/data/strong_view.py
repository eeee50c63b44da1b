"""Strong, intensity-only view of an already augmented batch, made on the batch's device.

Dual-KMax UX-Net feeds nnU-Net's augmented patch (the *weak* view) to network B and this *strong* view to network A.
Only intensities change, so both views stay voxel-aligned with each other and with the labels. Per sample, each
operation is applied with its own probability, in this order:

    brightness   x * U(0.75, 1.25)
    contrast     (x - mean) * U(0.75, 1.25) + mean                       (per sample and channel)
    gamma        range-preserving: ((x - min) / (max - min))^U(0.7, 1.5) * (max - min) + min
    blur         Gaussian, sigma U(0.5, 1.0) voxels along the last two (in-plane) axes only
    noise        + N(0, sigma^2), sigma U(0, 0.1) (inputs are z-scored: in units of the image's std)
    cutout       one random box set to 0 (the z-score mean), side U(0.2, 0.5) of each axis; its voxels' labels
                 become ignore for the network that sees this view (``ignore_erased``)

The random draws happen on the CPU (``generator`` makes them reproducible; without one the noise is drawn on the
device); the arithmetic runs on the device.
The probabilities and ranges are this package's choice (the paper lists the operations, not their settings).
"""
import math
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class StrongViewSettings:
    p_brightness: float = 0.5
    brightness: Tuple[float, float] = (0.75, 1.25)
    p_contrast: float = 0.5
    contrast: Tuple[float, float] = (0.75, 1.25)
    p_gamma: float = 0.5
    gamma: Tuple[float, float] = (0.7, 1.5)
    p_blur: float = 0.2
    blur_sigma: Tuple[float, float] = (0.5, 1.0)
    p_noise: float = 0.5
    noise_sigma: Tuple[float, float] = (0.0, 0.1)
    p_cutout: float = 0.5
    cutout_side: Tuple[float, float] = (0.2, 0.5)


def _uniform(n: int, bounds: Tuple[float, float], generator) -> torch.Tensor:
    lo, hi = bounds
    return lo + (hi - lo) * torch.rand(n, generator=generator)


def _chosen(n: int, p: float, generator) -> torch.Tensor:
    return torch.rand(n, generator=generator) < p


def _per_sample(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(b,) CPU values -> (b, 1, ..., 1) on x's device and dtype."""
    return values.to(device=x.device, dtype=x.dtype).view(-1, *([1] * (x.ndim - 1)))


def gaussian_blur_inplane(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (c, *S) along the last two axes (kernel radius ceil(3 sigma), replicate padding)."""
    radius = max(1, int(math.ceil(3 * sigma)))
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(x.dtype)
    out = x.reshape(-1, 1, *x.shape[-2:])                   # (c * other axes, 1, h, w)
    out = F.conv2d(F.pad(out, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    out = F.conv2d(F.pad(out, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
    return out.reshape(x.shape)


def strong_view(x: torch.Tensor, settings: StrongViewSettings = StrongViewSettings(),
                generator: Optional[torch.Generator] = None, return_erased: bool = False):
    """Strong view of a batch x (b, c, *S) (2D or 3D); returns a new tensor, x is not modified. With
    ``return_erased`` also the (b, 1, *S) bool mask of the voxels the cutout erased: their image is gone, so
    their labels must not be supervised on this view (``ignore_erased``)."""
    s = settings
    b = x.shape[0]
    spatial_axes = tuple(range(2, x.ndim))
    out = x.clone()

    chosen = _chosen(b, s.p_brightness, generator)
    factor = torch.where(chosen, _uniform(b, s.brightness, generator), torch.ones(b))
    out = out * _per_sample(factor, out)

    chosen = _chosen(b, s.p_contrast, generator)
    factor = _uniform(b, s.contrast, generator)
    if chosen.any():
        mean = out.mean(dim=spatial_axes, keepdim=True)
        out = torch.where(_per_sample(chosen, out) > 0, (out - mean) * _per_sample(factor, out) + mean, out)

    chosen = _chosen(b, s.p_gamma, generator)
    gamma = torch.where(chosen, _uniform(b, s.gamma, generator), torch.ones(b))
    if chosen.any():
        lo = out.amin(dim=spatial_axes, keepdim=True)
        span = out.amax(dim=spatial_axes, keepdim=True) - lo
        scaled = ((out - lo) / span.clamp_min(1e-8)).clamp(0, 1)
        gammas = _per_sample(gamma, out)
        out = torch.where(gammas != 1, scaled.pow(gammas) * span + lo, out)

    chosen = _chosen(b, s.p_blur, generator)
    sigma = _uniform(b, s.blur_sigma, generator)
    for i in torch.nonzero(chosen).flatten().tolist():
        out[i] = gaussian_blur_inplane(out[i], float(sigma[i]))

    chosen = _chosen(b, s.p_noise, generator)
    sigma = torch.where(chosen, _uniform(b, s.noise_sigma, generator), torch.zeros(b))
    if generator is None:
        noise = torch.randn(out.shape, device=out.device, dtype=out.dtype)
    else:
        noise = torch.randn(out.shape, generator=generator).to(device=out.device, dtype=out.dtype)
    out = out + noise * _per_sample(sigma, out)

    chosen = _chosen(b, s.p_cutout, generator)
    erased = torch.zeros((b, 1) + tuple(x.shape[2:]), dtype=torch.bool, device=x.device)
    for i in range(b):
        sides = [max(1, int(round(float(_uniform(1, s.cutout_side, generator)) * n))) for n in x.shape[2:]]
        starts = [int(torch.randint(0, n - side + 1, (1,), generator=generator)) for n, side in zip(x.shape[2:], sides)]
        if chosen[i]:
            box = (i, slice(None)) + tuple(slice(a, a + side) for a, side in zip(starts, sides))
            out[box] = 0
            erased[(i, 0) + box[2:]] = True
    return (out, erased) if return_erased else out


def ignore_erased(target, erased: torch.Tensor, ignore_label: int):
    """Label map(s) with the erased voxels set to ``ignore_label``. target: (b, 1, *S) or the deep-supervision
    list of such maps on coarser grids; erased: (b, 1, *S) bool at full resolution, resized to each grid with
    nearest-exact (what nnU-Net does to its deep-supervision targets)."""
    if isinstance(target, (list, tuple)):
        return [ignore_erased(t, erased, ignore_label) for t in target]
    mask = erased
    if tuple(mask.shape[2:]) != tuple(target.shape[2:]):
        mask = F.interpolate(erased.float(), size=tuple(target.shape[2:]), mode="nearest-exact") > 0.5
    return torch.where(mask, torch.full_like(target, ignore_label), target)
