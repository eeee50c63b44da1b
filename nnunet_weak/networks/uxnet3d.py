"""3D UX-Net encoder (Lee et al., ICLR 2023) and its UNETR-style CNN decoder.

Encoder (ConvNeXt-like, widths w0..w3, per-level strides s1..s4 given per axis):
    f0 = LN(stage0(LN(Conv(k=7, stride s1, pad 3)(x))))          w0 @ 1/s1
    f_i = LN(stage_i(Conv(k=s_{i+1}, stride s_{i+1})(LN(f_{i-1}))))  i = 1..3
A UX block on C channels mixes no channels:
    y = DWConv(k) -> LN -> 1x1 (C -> 4C, groups C) -> GELU -> 1x1 (4C -> C, groups C) -> * gamma (1e-6) -> DropPath
    x + y
(the grouped 1x1 convs are UX-Net's "depthwise convolution scaling"; no GRN layer).

Decoder (ResBlock = conv3 -> IN -> LReLU(0.01) -> conv3 -> IN, 1x1 conv + IN shortcut when widths differ, LReLU
after the add; Up(s) = ConvTranspose(k = stride = s) -> concat skip -> ResBlock(2b -> b)):
    enc1 = Res(C_in -> w0)(x); enc2 = Res(w0 -> w1)(f0); enc3 = Res(w1 -> w2)(f1); enc4 = Res(w2 -> w3)(f2)
    hid = Res(w3 -> hidden)(f3)
    d3 = Up_s4(hid, enc4); d2 = Up_s3(d3, enc3); d1 = Up_s2(d2, enc2); d0 = Up_s1(d1, enc1)
    conv logits = 1x1(Res(w0 -> w0)(d0)); auxiliary 1x1 heads on d1, d2, d3 (always built)
Strides of 1 along an axis are allowed (kernel 1 there), so anisotropic nnU-Net plans work.
"""
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from nnunet_weak.networks.blocks import ChannelLayerNorm, DepthwiseConv3d, DropPath

Stride = Tuple[int, int, int]


class UXBlock(nn.Module):
    def __init__(self, dim: int, kernel: int = 7, drop_path: float = 0.0, layer_scale: float = 1e-6):
        super().__init__()
        self.depthwise = DepthwiseConv3d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = ChannelLayerNorm(dim, eps=1e-6)
        self.expand = nn.Conv3d(dim, 4 * dim, 1, groups=dim)
        self.reduce = nn.Conv3d(4 * dim, dim, 1, groups=dim)
        self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale)))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.reduce(F.gelu(self.expand(self.norm(self.depthwise(x)))))
        return x + self.drop_path(y * self.gamma.view(1, -1, 1, 1, 1))


class UXNetEncoder(nn.Module):
    """(b, C_in, *S) -> [f0, f1, f2, f3] with widths ``widths`` at the cumulative strides of ``strides``."""

    def __init__(self, in_channels: int, widths: Sequence[int], depths: Sequence[int], strides: Sequence[Stride],
                 kernel: int = 7, stem_kernel: int = 7, drop_path: float = 0.0, layer_scale: float = 1e-6):
        super().__init__()
        if not (len(widths) == len(depths) == len(strides) == 4):
            raise ValueError(f"UX-Net has 4 levels: got widths {widths}, depths {depths}, strides {strides}")
        self.downsample = nn.ModuleList([nn.Sequential(
            nn.Conv3d(in_channels, widths[0], stem_kernel, stride=tuple(strides[0]), padding=stem_kernel // 2),
            ChannelLayerNorm(widths[0], eps=1e-6))])
        for i in range(1, 4):
            self.downsample.append(nn.Sequential(
                ChannelLayerNorm(widths[i - 1], eps=1e-6),
                nn.Conv3d(widths[i - 1], widths[i], tuple(strides[i]), stride=tuple(strides[i]))))
        rates = torch.linspace(0, drop_path, sum(depths)).tolist()
        self.stages = nn.ModuleList()
        start = 0
        for i in range(4):
            self.stages.append(nn.Sequential(*[UXBlock(widths[i], kernel, rates[start + j], layer_scale)
                                               for j in range(depths[i])]))
            start += depths[i]
        self.norms = nn.ModuleList([ChannelLayerNorm(w, eps=1e-6) for w in widths])

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        features = []
        for down, stage, norm in zip(self.downsample, self.stages, self.norms):
            x = stage(down(x))
            features.append(norm(x))
        return features


class ResBlock(nn.Module):
    """MONAI's UnetResBlock (kernel 3, stride 1, InstanceNorm without affine, LeakyReLU 0.01), written anew."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm1 = nn.InstanceNorm3d(out_channels)
        self.conv2 = nn.Conv3d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = nn.InstanceNorm3d(out_channels)
        self.shortcut = None
        if in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv3d(in_channels, out_channels, 1, bias=False),
                                          nn.InstanceNorm3d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.leaky_relu(self.norm1(self.conv1(x)), 0.01)
        y = self.norm2(self.conv2(y))
        return F.leaky_relu(y + (x if self.shortcut is None else self.shortcut(x)), 0.01)


class UpBlock(nn.Module):
    """ConvTranspose (kernel = stride) to the skip's grid, concatenation with the skip, ResBlock(2b -> b)."""

    def __init__(self, in_channels: int, out_channels: int, stride: Stride):
        super().__init__()
        self.up = nn.ConvTranspose3d(in_channels, out_channels, tuple(stride), stride=tuple(stride), bias=False)
        self.block = ResBlock(2 * out_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(torch.cat([self.up(x), skip], dim=1))


class UNETRDecoder(nn.Module):
    """The CNN decoder; ``deep_supervision`` is the flag nnU-Net's trainer and predictor switch.

    forward(x, features) -> [d0, d1, d2, d3, hid] (level i at the grid of f_{i-1}, d0 at full resolution).
    """

    def __init__(self, in_channels: int, widths: Sequence[int], hidden: int, strides: Sequence[Stride],
                 num_classes: int, deep_supervision: bool = False):
        super().__init__()
        w0, w1, w2, w3 = widths
        self.deep_supervision = deep_supervision
        self.enc1 = ResBlock(in_channels, w0)
        self.enc2 = ResBlock(w0, w1)
        self.enc3 = ResBlock(w1, w2)
        self.enc4 = ResBlock(w2, w3)
        self.bottleneck = ResBlock(w3, hidden)
        self.up3 = UpBlock(hidden, w3, strides[3])
        self.up2 = UpBlock(w3, w2, strides[2])
        self.up1 = UpBlock(w2, w1, strides[1])
        self.up0 = UpBlock(w1, w0, strides[0])
        self.out_block = ResBlock(w0, w0)
        self.conv_head = nn.Conv3d(w0, num_classes, 1)
        self.aux_heads = nn.ModuleList([nn.Conv3d(w, num_classes, 1) for w in (w1, w2, w3)])  # d1, d2, d3

    def forward(self, x: torch.Tensor, features: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        f0, f1, f2, f3 = features
        hid = self.bottleneck(f3)
        d3 = self.up3(hid, self.enc4(f2))
        d2 = self.up2(d3, self.enc3(f1))
        d1 = self.up1(d2, self.enc2(f0))
        d0 = self.up0(d1, self.enc1(x))
        return [d0, d1, d2, d3, hid]

    def conv_logits(self, d0: torch.Tensor) -> torch.Tensor:
        """The plain UX-Net head on d0 (training only)."""
        return self.conv_head(self.out_block(d0))

    def aux_logits(self, levels: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        """Deep-supervision logits at d1, d2, d3 (1/s1, 1/(s1 s2), 1/(s1 s2 s3))."""
        return [head(level) for head, level in zip(self.aux_heads, levels[1:4])]
