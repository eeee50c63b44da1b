"""A 2D Swin-UNet-style decoder over a CNN encoder's features: PCLMix's auxiliary "transformer decoder".

Input: encoder features at cumulative stride 4, 8, 16, 32 (or the first L of them, shallow to deep). Each level
is projected to tokens (1x1 conv + LayerNorm, width ``embed_dim * 2**k``). From the deepest level upwards:
patch-expand x2, concatenate the level's tokens, Linear back to the level's width, ``depth`` Swin blocks
(windowed attention with a relative position bias; every second block shifts by half a window). After the
stride-4 level: LayerNorm, x4 patch expand to full resolution, 1x1 conv (no bias) to the class logits.

Differences from the original decoder:
- no absolute position embedding (the original's were unregistered random constants);
- each token grid is zero-padded to a multiple of the window and cropped afterwards; the attention mask
  (padding keys masked out, shifted-window regions kept apart) is computed for the padded grid on the fly, so
  grids like 64x56 (256x224 patches) work. Along an axis no longer than the window, the window is that axis'
  length and there is no shift (the original does this when the whole grid fits one window).

Token maps are kept channels-last, (b, h, w, c), throughout.
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from nnunet_weak.networks.blocks import DropPath

MASKED = -100.0  # additive attention score of a forbidden pair (Swin's value; finite, so no NaN rows)


class TokenEmbed(nn.Module):
    """(b, c_in, h, w) feature map -> (b, h, w, dim) tokens: 1x1 conv, then LayerNorm."""

    def __init__(self, in_channels: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=1)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class PatchExpand(nn.Module):
    """(b, h, w, dim) -> (b, f*h, f*w, out_dim): Linear to f*f*out_dim channels, pixel shuffle, LayerNorm.

    ``factor=2`` halves the width (between levels); ``factor=4`` keeps it (the final expand)."""

    def __init__(self, dim: int, factor: int = 2):
        super().__init__()
        self.factor = factor
        self.out_dim = dim // 2 if factor == 2 else dim
        self.expand = nn.Linear(dim, factor * factor * self.out_dim, bias=False)
        self.norm = nn.LayerNorm(self.out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        f, c = self.factor, self.out_dim
        x = self.expand(x).view(b, h, w, f, f, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h * f, w * f, c)
        return self.norm(x)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows, with a learned relative position bias.

    The bias table covers the largest window ((2*window-1)^2 offsets); smaller windows (short axes) index a
    subset of it, so the parameters do not depend on the grid.
    """

    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.window = window
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.bias_table, std=0.02)
        self._index_cache: Dict[tuple, torch.Tensor] = {}

    def _relative_index(self, wh: int, ww: int, device) -> torch.Tensor:
        """(wh*ww, wh*ww) indices into the bias table for a wh x ww window."""
        key = (wh, ww, str(device))
        if key not in self._index_cache:
            ys, xs = torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")
            ys, xs = ys.flatten(), xs.flatten()
            span = 2 * self.window - 1
            index = (ys[:, None] - ys[None, :] + self.window - 1) * span + (xs[:, None] - xs[None, :] + self.window - 1)
            self._index_cache[key] = index.to(device)
        return self._index_cache[key]

    def forward(self, x: torch.Tensor, window: Tuple[int, int], mask: Optional[torch.Tensor]) -> torch.Tensor:
        """x: (b * n_windows, wh*ww, dim); mask: (n_windows, wh*ww, wh*ww) additive, or None.
        Returns (b * n_windows, wh*ww, dim)."""
        bn, n, dim = x.shape
        q, k, v = self.qkv(x).view(bn, n, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        bias = self.bias_table[self._relative_index(*window, x.device)].permute(2, 0, 1)  # (heads, n, n)
        if mask is None:
            scores = bias[None]  # broadcast over windows and images
        else:
            n_windows = mask.shape[0]
            scores = (bias[None, None] + mask[None, :, None]).expand(bn // n_windows, -1, -1, -1, -1)
            scores = scores.reshape(bn, self.heads, n, n)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=scores.to(q.dtype))
        return self.proj(out.transpose(1, 2).reshape(bn, n, dim))


def _windows(x: torch.Tensor, wh: int, ww: int) -> torch.Tensor:
    """(b, H, W, c) with H, W multiples of the window -> (b * n_windows, wh*ww, c)."""
    b, h, w, c = x.shape
    return x.view(b, h // wh, wh, w // ww, ww, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, wh * ww, c)


def _unwindows(x: torch.Tensor, wh: int, ww: int, b: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`_windows`."""
    c = x.shape[-1]
    return x.view(b, h // wh, w // ww, wh, ww, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)


class SwinBlock(nn.Module):
    """Pre-norm Swin block: (shifted) window attention and an MLP, each residual with stochastic depth."""

    def __init__(self, dim: int, heads: int, window: int = 7, shifted: bool = False, mlp_ratio: float = 4.0,
                 drop_path_rate: float = 0.0):
        super().__init__()
        self.window = window
        self.shifted = shifted
        self.drop_path = DropPath(drop_path_rate)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, window)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self._mask_cache: Dict[tuple, Optional[torch.Tensor]] = {}

    def geometry(self, h: int, w: int) -> Tuple[Tuple[int, int], Tuple[int, int], Tuple[int, int]]:
        """((window_h, window_w), (shift_h, shift_w), (padded_h, padded_w)) for an h x w grid."""
        window, shift, padded = [], [], []
        for size in (h, w):
            if size <= self.window:  # the whole axis is one window; shifting it would only wrap tokens around
                window.append(size)
                shift.append(0)
                padded.append(size)
            else:
                window.append(self.window)
                shift.append(self.window // 2 if self.shifted else 0)
                padded.append(math.ceil(size / self.window) * self.window)
        return tuple(window), tuple(shift), tuple(padded)

    def attention_mask(self, h: int, w: int, device) -> Optional[torch.Tensor]:
        """(n_windows, N, N) additive mask for an h x w grid, or None when neither padding nor shift needs one.

        A query may attend to a key iff the key is a real (not padded) token and both lie on the same side of
        the wrap-around seam of the cyclic shift, per axis. Built in grid coordinates and then shifted and
        windowed exactly like the tokens."""
        key = (h, w, str(device))
        if key in self._mask_cache:
            return self._mask_cache[key]
        (wh, ww), (sh, sw), (hp, wp) = self.geometry(h, w)
        if (sh, sw) == (0, 0) and (hp, wp) == (h, w):
            self._mask_cache[key] = None
            return None
        rows, cols = torch.arange(hp), torch.arange(wp)
        # tokens in the first `shift` rows/cols wrap to the end of the grid after the cyclic shift
        side = (rows < sh).long()[:, None] * 2 + (cols < sw).long()[None, :]
        real = (rows < h)[:, None] & (cols < w)[None, :]
        side = torch.roll(side, (-sh, -sw), dims=(0, 1))
        real = torch.roll(real, (-sh, -sw), dims=(0, 1))
        side = _windows(side[None, :, :, None], wh, ww)[..., 0]  # (n_windows, N)
        real = _windows(real[None, :, :, None], wh, ww)[..., 0]
        allowed = (side[:, :, None] == side[:, None, :]) & real[:, None, :]
        mask = torch.zeros(allowed.shape).masked_fill(~allowed, MASKED).to(device)
        self._mask_cache[key] = mask
        return mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (b, h, w, dim) -> (b, h, w, dim)."""
        b, h, w, c = x.shape
        (wh, ww), (sh, sw), (hp, wp) = self.geometry(h, w)
        y = self.norm1(x)
        if (hp, wp) != (h, w):
            y = F.pad(y, (0, 0, 0, wp - w, 0, hp - h))
        if sh or sw:
            y = torch.roll(y, (-sh, -sw), dims=(1, 2))
        y = self.attn(_windows(y, wh, ww), (wh, ww), self.attention_mask(h, w, x.device))
        y = _unwindows(y, wh, ww, b, hp, wp)
        if sh or sw:
            y = torch.roll(y, (sh, sw), dims=(1, 2))
        x = x + self.drop_path(y[:, :h, :w])
        return x + self.drop_path(self.mlp(self.norm2(x)))


class SwinUpLevel(nn.Module):
    """One decoder level: concatenate the upsampled tokens with the level's own, Linear 2*dim -> dim,
    ``len(drop_path_rates)`` Swin blocks (alternating shift), then an optional x2 patch expand."""

    def __init__(self, dim: int, heads: int, window: int, drop_path_rates: Sequence[float], expand: bool,
                 mlp_ratio: float = 4.0):
        super().__init__()
        self.concat = nn.Linear(2 * dim, dim)
        self.blocks = nn.ModuleList([SwinBlock(dim, heads, window, shifted=i % 2 == 1, mlp_ratio=mlp_ratio,
                                               drop_path_rate=float(r)) for i, r in enumerate(drop_path_rates)])
        self.expand = PatchExpand(dim, 2) if expand else None

    def forward(self, up: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.concat(torch.cat([up, skip], dim=-1))
        for block in self.blocks:
            x = block(x)
        return self.expand(x) if self.expand is not None else x


class SwinDecoder2D(nn.Module):
    """Swin-UNet-style decoder for L >= 2 feature levels at strides 4, 8, ... (each twice the previous).

    Args:
        in_channels: channels of the encoder features, shallow (stride 4) to deep.
        num_classes: output channels.
        embed_dim: token width of the stride-4 level; level k has ``embed_dim * 2**k`` (96 -> 96/192/384/768).
        base_heads: heads of the stride-4 level; level k has ``base_heads * 2**k`` (3 -> 3/6/12/24).
        depth: Swin blocks per level (the deepest level has none: it is only expanded, as in the original).
        window: attention window (7).
        drop_path: the stochastic-depth rates are linspace(0, drop_path, depth * max(4, L)); level k uses
            entries [depth*k, depth*(k+1)) (the original's schedule for L = 4).
    Shapes:
        forward(features): features[k] is (b, in_channels[k], H / (4 * 2**k), W / (4 * 2**k)); returns logits
        (b, num_classes, H, W) with H, W four times the stride-4 grid.
    """

    def __init__(self, in_channels: Sequence[int], num_classes: int, embed_dim: int = 96, base_heads: int = 3,
                 depth: int = 2, window: int = 7, drop_path: float = 0.1, mlp_ratio: float = 4.0):
        super().__init__()
        n_levels = len(in_channels)
        if n_levels < 2:
            raise ValueError("the Swin decoder needs at least two feature levels (strides 4 and 8)")
        widths = [embed_dim * 2 ** k for k in range(n_levels)]
        rates = torch.linspace(0, drop_path, depth * max(4, n_levels)).tolist()
        self.embeds = nn.ModuleList([TokenEmbed(c, d) for c, d in zip(in_channels, widths)])
        self.expand_deepest = PatchExpand(widths[-1], 2)
        self.levels = nn.ModuleList([
            SwinUpLevel(widths[k], base_heads * 2 ** k, window, rates[depth * k:depth * (k + 1)], expand=k > 0,
                        mlp_ratio=mlp_ratio)
            for k in range(n_levels - 1)])  # levels[k] works on the grid of features[k]
        self.norm = nn.LayerNorm(widths[0])
        self.final_expand = PatchExpand(widths[0], 4)
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=1, bias=False)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, features: List[torch.Tensor]) -> torch.Tensor:
        if len(features) != len(self.embeds):
            raise ValueError(f"expected {len(self.embeds)} feature levels, got {len(features)}")
        tokens = [embed(f) for embed, f in zip(self.embeds, features)]
        x = self.expand_deepest(tokens[-1])
        for k in reversed(range(len(self.levels))):
            if x.shape[1:3] != tokens[k].shape[1:3]:
                raise ValueError(f"level {k}: upsampled grid {tuple(x.shape[1:3])} does not match the encoder's "
                                 f"{tuple(tokens[k].shape[1:3])}; each level must halve the previous grid exactly")
            x = self.levels[k](x, tokens[k])
        x = self.final_expand(self.norm(x))
        return self.head(x.permute(0, 3, 1, 2))
