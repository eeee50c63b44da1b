"""Small building blocks shared by the UX-Net and kMaX modules (written here to avoid MONAI / timm).

Shapes: ``(b, c, *spatial)`` channels-first tensors of any spatial rank unless said otherwise.
"""
from typing import List, Sequence, Tuple

import torch
from torch import nn


def conv_nd(dims: int):
    """``nn.Conv1d`` / ``nn.Conv2d`` / ``nn.Conv3d`` for a spatial rank."""
    return {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims]


def cumulative_strides(strides: Sequence, dims: int) -> List[Tuple[int, ...]]:
    """Per-stage cumulative stride per axis from the plans' ``strides`` (ints or per-axis lists)."""
    total, out = (1,) * dims, []
    for s in strides:
        s = tuple(s) if isinstance(s, (list, tuple)) else (s,) * dims
        total = tuple(a * b for a, b in zip(total, s))
        out.append(total)
    return out


def batch_norm_nd(dims: int):
    return {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[dims]


def instance_norm_nd(dims: int):
    return {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}[dims]


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis (dim 1) of a channels-first tensor of any rank, computed in float32.

    Equal to ``nn.LayerNorm(c)`` applied channels-last; used by UX-Net (eps 1e-6) and as the query-side norm of the
    kMaX layers with ``norm='nnunet'``.
    """

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return (x * self.weight.view(shape) + self.bias.view(shape)).to(dtype)


class DropPath(nn.Module):
    """Stochastic depth per sample: in training, zero a whole residual branch with probability ``p`` and scale the
    rest by 1 / (1 - p); identity in eval or with p = 0."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


def trunc_normal_(tensor: torch.Tensor, std: float = 1.0) -> torch.Tensor:
    """Normal(0, std) truncated at +-2 std, in place."""
    return nn.init.trunc_normal_(tensor, mean=0.0, std=std, a=-2.0 * std, b=2.0 * std)


class DepthwiseConv3d(nn.Conv3d):
    """``nn.Conv3d`` (same parameters and state-dict keys) that, on the CPU, runs on a channels-last input: oneDNN's
    depthwise path is about 3-4x faster (forward + backward, kernels 5-7) than PyTorch's default layout there. The
    result is the same; GPU inputs are left as they are. (2D depthwise convs gain nothing and stay plain.)

    Under CPU bf16 autocast it stays in float32: oneDNN's bf16 channels-last depthwise backward crashes the
    process for some shapes (seen with torch 2.13: kernel 7 on a depth of 4, e.g. (2, 32, 4, 12, 12)), and a
    depthwise convolution is memory-bound, so bf16 would gain little there. Output (b, C, *S): float32 then."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu":
            return super().forward(x)
        x = x.contiguous(memory_format=torch.channels_last_3d)
        if not torch.is_autocast_enabled("cpu"):
            return super().forward(x)
        with torch.autocast("cpu", enabled=False):
            return super().forward(x.float())


def depthwise_conv_nd(dims: int):
    """The convolution class for depthwise kernels of a spatial rank."""
    return {2: nn.Conv2d, 3: DepthwiseConv3d}[dims]
