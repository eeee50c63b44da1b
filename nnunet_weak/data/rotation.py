"""In-plane rotation of network inputs, label maps and predictions on the GPU (ModelMix's vicinal
terms).

Rotations are rigid in pixel units about the patch centre (the grid is scaled by the patch's aspect ratio, so a
128 x 112 patch is not sheared) and act on the last two axes; 3D patches (b, c, d, h, w) rotate slice by slice.
Pixels rotated in from outside the patch are *ignore* in label maps, never background, and are reported by
:func:`valid_after_round_trip` so that consistency terms can leave them out.
"""
import torch
import torch.nn.functional as F


def _as_slices(x: torch.Tensor):
    """(b, c, *extra, h, w) -> ((b * prod(extra), c, h, w), restore function)."""
    if x.ndim == 4:
        return x, lambda y: y
    b, c, d, h, w = x.shape
    flat = x.permute(0, 2, 1, 3, 4).reshape(b * d, c, h, w)
    return flat, lambda y: y.reshape(b, d, c, h, w).permute(0, 2, 1, 3, 4)


def _grid(theta: torch.Tensor, slices_per_sample: int, shape, device) -> torch.Tensor:
    """Sampling grid for ``F.grid_sample`` that rotates each (h, w) image by ``theta`` (radians, (b,)) about its
    centre, counter-clockwise in (row, column) pixel units."""
    h, w = shape
    theta = theta.to(device=device, dtype=torch.float32).repeat_interleave(slices_per_sample)
    cos, sin = torch.cos(theta), torch.sin(theta)
    # output pixel -> input pixel is the inverse rotation; normalised coordinates are scaled by (w/2, h/2)
    matrix = torch.zeros(theta.shape[0], 2, 3, device=device)
    matrix[:, 0, 0] = cos
    matrix[:, 0, 1] = -sin * h / w
    matrix[:, 1, 0] = sin * w / h
    matrix[:, 1, 1] = cos
    return F.affine_grid(matrix, [theta.shape[0], 1, h, w], align_corners=False)


def rotate(x: torch.Tensor, theta: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Rotate (b, c, h, w) or (b, c, d, h, w) by ``theta`` (b,) radians; outside pixels become 0.
    Computed in float32 and returned in x's dtype."""
    flat, restore = _as_slices(x)
    per_sample = flat.shape[0] // x.shape[0]
    grid = _grid(theta, per_sample, flat.shape[2:], x.device)
    out = F.grid_sample(flat.float(), grid, mode=mode, padding_mode="zeros", align_corners=False)
    return restore(out).to(x.dtype)


def rotate_labels(labels: torch.Tensor, theta: torch.Tensor, ignore_label: int) -> torch.Tensor:
    """Rotate a (b, 1, ...) label map with nearest-neighbour sampling; pixels from outside become ``ignore_label``."""
    shifted = rotate(labels.float() + 1.0, theta, mode="nearest")     # 0 now marks "came from outside"
    return torch.where(shifted > 0.5, shifted - 1.0, torch.full_like(shifted, float(ignore_label)))


def valid_after_round_trip(like: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """(b, 1, ...) float mask of the pixels of ``like``'s grid that survive rotating by ``theta`` and back: the
    pixels where a back-rotated prediction of the rotated patch exists."""
    ones = torch.ones((like.shape[0], 1) + tuple(like.shape[2:]), device=like.device)
    there = rotate(ones, theta, mode="nearest")
    return (rotate(there, -theta, mode="nearest") > 0.5).float()
