"""``DKUXNet``: 3D UX-Net encoder + UNETR CNN decoder + kMaX decoder.

Contract (nnU-Net's):
- ``forward(x)`` returns the kMaX segmentation logits Y (b, K, *patch), or ``[Y, aux(d1), aux(d2), aux(d3)]`` when
  ``decoder.deep_supervision`` is set. The inference path runs encoder, decoder, the kMaX layers, the final
  predictor, the softmax over queries and one einsum; it skips the conv head, the auxiliary heads and the
  cluster grouping.
- ``forward(x, return_aux=True)`` (a keyword, so the call still goes through DDP / compile wrappers) returns
  ``{'seg': as above, 'cluster': G (b, groups, *patch), 'conv': conv logits (b, K, *patch)}`` for training.
- Every module is built whatever the deep-supervision flag, so the state dict of a training build equals the one
  nnU-Net's predictor rebuilds.

Strides come from the plans: the per-axis strides of stages 1..4 (``arch_kwargs['strides'][1:5]``) set the stem
stride, each downsampling conv and the mirrored up-convolutions. Plans with fewer than 5 stages (small patches)
keep the resolution in the missing deepest levels (stride 1 there); deeper plans use their first four
downsamplings. Every patch axis must be divisible by its total stride.
"""
import math
from typing import List, Sequence, Tuple

import torch
from torch import nn

from nnunet_weak.networks.kmax import KMaXHead
from nnunet_weak.networks.uxnet3d import UNETRDecoder, UXNetEncoder
from nnunet_weak.utilities.errors import NNWError

PAPER_WIDTHS = dict(widths=(48, 96, 192, 384), depths=(2, 2, 2, 2), hidden=768, kernel=7, num_queries=128,
                    query_dim=256, pixel_dim=256, mask_dim=128, kmax_levels=(3, 2), layers_per_level=2,
                    num_heads=8, key_dim=128, ffn_dim=2048, classifier_hidden=64, query_groups="per_class",
                    norm="bn")


class DKUXNet(nn.Module):
    """Dual-KMax UX-Net's segmentation network (one of the two; the trainer builds two).

    Args:
        strides: 4 per-axis strides (stem, then the three downsamplings).
        kmax_levels: decoder levels the kMaX layers attend to, in order: 1 = d1, 2 = d2, 3 = d3, 4 = the
            bottleneck; ``layers_per_level`` layers each.
        query_groups: ``'per_class'`` or ``'paper'`` (see ``nnunet_weak.networks.kmax.query_group_sizes``).
        norm: ``'bn'`` (original) or ``'nnunet'`` for the kMaX decoder.
    """

    def __init__(self, input_channels: int, num_classes: int, strides: Sequence[Sequence[int]],
                 widths=(48, 96, 192, 384), depths=(2, 2, 2, 2), hidden: int = 768, kernel: int = 7,
                 num_queries: int = 128, query_dim: int = 256, kmax_levels=(3, 2), layers_per_level: int = 2,
                 pixel_dim: int = 256, mask_dim: int = 128, query_groups: str = "per_class",
                 deep_supervision: bool = False, norm: str = "bn", num_heads: int = 8, key_dim: int = 128,
                 ffn_dim: int = 2048, classifier_hidden: int = 64, drop_path: float = 0.0):
        super().__init__()
        strides = [tuple(int(v) for v in s) for s in strides]
        if len(strides) != 4 or any(len(s) != 3 for s in strides):
            raise NNWError(f"DKUXNet needs 4 per-axis 3D strides, got {strides}")
        if any(level not in (1, 2, 3, 4) for level in kmax_levels) or not kmax_levels:
            raise NNWError(f"kmax_levels must be a non-empty sequence of 1 (d1), 2 (d2), 3 (d3), 4 (bottleneck); "
                           f"got {kmax_levels}")
        self.strides = strides
        self.kmax_levels = tuple(kmax_levels)
        self.encoder = UXNetEncoder(input_channels, widths, depths, strides, kernel, drop_path=drop_path)
        self.decoder = UNETRDecoder(input_channels, widths, hidden, strides, num_classes, deep_supervision)
        level_channels = {1: widths[1], 2: widths[2], 3: widths[3], 4: hidden}
        self.kmax = KMaXHead([level_channels[level] for level in self.kmax_levels], widths[0], num_classes, dims=3,
                             num_queries=num_queries, query_dim=query_dim, pixel_dim=pixel_dim, mask_dim=mask_dim,
                             layers_per_level=layers_per_level, num_heads=num_heads, key_dim=key_dim,
                             ffn_dim=ffn_dim, norm=norm, query_groups=query_groups,
                             classifier_hidden=classifier_hidden)

    @property
    def total_stride(self) -> Tuple[int, int, int]:
        return tuple(math.prod(s[d] for s in self.strides) for d in range(3))

    def forward(self, x: torch.Tensor, return_aux: bool = False):
        levels = self.decoder(x, self.encoder(x))                           # [d0, d1, d2, d3, hid]
        seg, clusters = self.kmax([levels[level] for level in self.kmax_levels], levels[0], clusters=return_aux)
        if self.decoder.deep_supervision:
            seg = [seg] + self.decoder.aux_logits(levels)
        if not return_aux:
            return seg
        return {"seg": seg, "cluster": clusters, "conv": self.decoder.conv_logits(levels[0])}


# ------------------------------------------------------------------------------------------------- plans
def configuration_name(plans_manager, configuration_manager) -> str:
    """Name of ``configuration_manager``'s configuration in the plans (for error messages)."""
    for name in plans_manager.available_configurations:
        try:
            if plans_manager.get_configuration(name).configuration == configuration_manager.configuration:
                return name
        except Exception:  # a broken sibling configuration must not hide the real error
            continue
    return configuration_manager.data_identifier


def dkuxnet_strides(patch_size: Sequence[int], plan_strides: Sequence, configuration: str) -> List[Tuple[int, ...]]:
    """The 4 per-axis strides DKUXNet uses for a 3D plan, checked against the patch; NNWError names the
    configuration when the plan cannot be served."""
    if len(patch_size) != 3:
        raise NNWError(f"DKUXNet is a 3D network; configuration {configuration!r} has a {len(patch_size)}D patch "
                       f"{list(patch_size)}. Train a 3D configuration (3d_fullres, 3d_lite).")
    per_axis = []
    for s in plan_strides:
        s = tuple(s) if isinstance(s, (list, tuple)) else (s,) * 3
        if len(s) != 3 or any(int(v) != v or v < 1 for v in s):
            raise NNWError(f"configuration {configuration!r} has strides {list(plan_strides)}; DKUXNet needs "
                           f"positive integer strides with 3 values per stage.")
        per_axis.append(tuple(int(v) for v in s))
    if not per_axis:
        raise NNWError(f"configuration {configuration!r} has no 'strides' in its architecture; DKUXNet takes its "
                       f"strides from nnU-Net's PlainConvUNet / ResidualEncoderUNet plans.")
    strides = (per_axis[1:5] + [(1, 1, 1)] * 4)[:4]
    total = [math.prod(s[d] for s in strides) for d in range(3)]
    bad = [d for d in range(3) if patch_size[d] % total[d]]
    if bad:
        raise NNWError(f"configuration {configuration!r}: patch {list(patch_size)} is not divisible by DKUXNet's "
                       f"total stride {total} (strides {strides} from the plans) along axis {bad}. Use a patch "
                       f"that is a multiple of the total stride.")
    return strides


def build_dkuxnet(plans_manager, configuration_manager, num_input_channels: int, num_output_channels: int,
                  enable_deep_supervision: bool = False, **kwargs) -> DKUXNet:
    """DKUXNet from the plans (strides) and ``kwargs`` (widths etc., see :class:`DKUXNet`); K = the number of
    segmentation heads (ignore excluded)."""
    name = configuration_name(plans_manager, configuration_manager)
    arch = configuration_manager.network_arch_init_kwargs
    strides = dkuxnet_strides(configuration_manager.patch_size, arch.get("strides", []), name)
    return DKUXNet(num_input_channels, num_output_channels, strides, deep_supervision=enable_deep_supervision,
                   **kwargs)
