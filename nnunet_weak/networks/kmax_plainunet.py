"""``KMaXUNet``: nnU-Net's U-Net (``PlainConvUNet`` or, from the ResEnc presets, ``ResidualEncoderUNet``) with a
kMaX head producing the full-resolution logits, in 2D and 3D (``KMaXPlainConvUNet`` builds the plain one from
keyword arguments).

Everything of the U-Net comes from the plans' ``arch_kwargs`` (stages, widths, kernels, strides, norm); its encoder
and nnU-Net's ``UNetDecoder`` are used as built (:func:`decoder_stage_outputs` reads every decoder stage). The kMaX layers attend to the decoder stages whose cumulative in-plane
stride is 8 and 4 (in that order, 2 layers each); plans without both (small patches) use the two coarsest decoder
stages instead. The final predictor reads the full-resolution decoder output.

Outputs:
- ``forward(x)``: the kMaX logits Y (b, K, *patch); with ``decoder.deep_supervision`` the list
  ``[Y, seg_layers at 1/2, 1/4, ...]``: the lower-resolution outputs stay nnU-Net's own ``seg_layers`` at the plan's
  scales, so nnU-Net's deep-supervision targets are unchanged.
- ``forward(x, return_aux=True)``: ``{'seg', 'cluster', 'conv'}`` where ``conv`` is the full-resolution
  ``seg_layers[-1]`` output (trained with an auxiliary loss, skipped at inference).
The U-Net keeps nnU-Net's He initialisation; the kMaX head keeps its own.
"""
import pydoc
from typing import List, Sequence

import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from torch import nn
from dynamic_network_architectures.building_blocks.helper import convert_conv_op_to_dim
from dynamic_network_architectures.initialization.weight_init import InitWeights_He

from nnunet_weak.networks.blocks import cumulative_strides
from nnunet_weak.networks.dkuxnet import configuration_name
from nnunet_weak.networks.kmax import KMaXHead
from nnunet_weak.utilities.errors import NNWError

LEVEL_STRIDES = (8, 4)


def decoder_stage_outputs(decoder, skips: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    """The stage outputs of nnU-Net's ``UNetDecoder``, coarsest first (the last one at full resolution), without
    running its segmentation layers. ``skips``: the encoder's outputs, shallow to deep."""
    x = skips[-1]
    features = []
    for s in range(len(decoder.stages)):
        x = decoder.stages[s](torch.cat((decoder.transpconvs[s](x), skips[-(s + 2)]), 1))
        features.append(x)
    return features


def kmax_decoder_stages(strides: Sequence, dims: int, level_strides: Sequence[int] = LEVEL_STRIDES) -> List[int]:
    """Decoder stage indices (0 = coarsest) whose output has cumulative in-plane stride ``level_strides`` (the last
    two axes equal to it); if one is missing, the ``len(level_strides)`` coarsest stages."""
    cumulative = cumulative_strides(strides, dims)
    n_stages = len(cumulative)
    by_stride = {}
    for s in range(n_stages - 1):                       # decoder stage s ends on encoder stage n - 2 - s
        inplane = cumulative[n_stages - 2 - s][-2:]
        if inplane[0] == inplane[1]:
            by_stride.setdefault(inplane[0], s)
    if all(v in by_stride for v in level_strides):
        return [by_stride[v] for v in level_strides]
    return list(range(min(len(level_strides), n_stages - 1)))


class KMaXUNet(nn.Module):
    """An nnU-Net U-Net (``PlainConvUNet`` or ``ResidualEncoderUNet``: ``encoder`` + ``UNetDecoder``) whose
    full-resolution output comes from a ``kmax`` head; the module keys are ``encoder``, ``decoder``, ``kmax``.

    unet: the built U-Net (its encoder and decoder are kept); strides: the plans' strides; the head's settings are
    keyword-only."""

    def __init__(self, unet: nn.Module, num_classes: int, strides: Sequence, pixel_norm_op=None,
                 pixel_norm_kwargs=None, *, num_queries: int = 128, query_dim: int = 256, pixel_dim: int = 64,
                 mask_dim: int = 64, layers_per_level: int = 2, level_strides: Sequence[int] = LEVEL_STRIDES,
                 norm: str = "nnunet", query_groups: str = "per_class", num_heads: int = 8, key_dim: int = 128,
                 ffn_dim: int = 2048, classifier_hidden: int = 64):
        super().__init__()
        if len(strides) < 2:
            raise NNWError("the kMaX U-Net needs a U-Net with at least 2 stages (one decoder stage).")
        self.encoder, self.decoder = unet.encoder, unet.decoder
        dims = convert_conv_op_to_dim(self.encoder.conv_op)
        self.kmax_stage_ids = tuple(kmax_decoder_stages(strides, dims, level_strides))
        channels = self.encoder.output_channels
        level_channels = [channels[-(s + 2)] for s in self.kmax_stage_ids]
        self.kmax = KMaXHead(level_channels, channels[0], num_classes, dims=dims, num_queries=num_queries,
                             query_dim=query_dim, pixel_dim=pixel_dim, mask_dim=mask_dim,
                             layers_per_level=layers_per_level, num_heads=num_heads, key_dim=key_dim,
                             ffn_dim=ffn_dim, norm=norm, query_groups=query_groups,
                             classifier_hidden=classifier_hidden, pixel_norm_op=pixel_norm_op,
                             pixel_norm_kwargs=pixel_norm_kwargs)

    def forward(self, x: torch.Tensor, return_aux: bool = False):
        features = decoder_stage_outputs(self.decoder, self.encoder(x))
        seg, clusters = self.kmax([features[s] for s in self.kmax_stage_ids], features[-1], clusters=return_aux)
        if self.decoder.deep_supervision:
            layers = self.decoder.seg_layers
            seg = [seg] + [layers[s](features[s]) for s in range(len(features) - 2, -1, -1)]
        if not return_aux:
            return seg
        return {"seg": seg, "cluster": clusters, "conv": self.decoder.seg_layers[-1](features[-1])}


class KMaXPlainConvUNet(KMaXUNet):
    """``KMaXUNet`` on a ``PlainConvUNet`` built from its keyword arguments (as in the plans' arch_kwargs)."""

    def __init__(self, input_channels, n_stages, features_per_stage, conv_op, kernel_sizes, strides,
                 n_conv_per_stage, num_classes, n_conv_per_stage_decoder, conv_bias=False, norm_op=None,
                 norm_op_kwargs=None, dropout_op=None, dropout_op_kwargs=None, nonlin=None, nonlin_kwargs=None,
                 deep_supervision=False, nonlin_first=False, **head_kwargs):
        unet = PlainConvUNet(input_channels, n_stages, features_per_stage, conv_op, kernel_sizes, strides,
                             n_conv_per_stage, num_classes, n_conv_per_stage_decoder, conv_bias, norm_op,
                             norm_op_kwargs, dropout_op, dropout_op_kwargs, nonlin, nonlin_kwargs, deep_supervision,
                             nonlin_first)
        unet.apply(InitWeights_He(1e-2))
        super().__init__(unet, num_classes, strides, norm_op, norm_op_kwargs, **head_kwargs)


SUPPORTED = ("PlainConvUNet", "ResidualEncoderUNet")


def build_kmax_plain_unet(plans_manager, configuration_manager, num_input_channels: int, num_output_channels: int,
                          enable_deep_supervision: bool = True, **head_kwargs) -> KMaXUNet:
    """KMaXUNet from a PlainConvUNet or ResidualEncoderUNet configuration of the plans (nnU-Net's default and
    ResEnc presets); ``head_kwargs`` set the kMaX head. The U-Net keeps nnU-Net's own initialisation."""
    arch_name = configuration_manager.network_arch_class_name
    if arch_name.split(".")[-1] not in SUPPORTED:
        name = configuration_name(plans_manager, configuration_manager)
        raise NNWError(f"configuration {name!r} uses {arch_name}; the kMaX head is attached to nnU-Net's "
                       f"{' and '.join(SUPPORTED)} plans (the default planner's and the ResEnc presets').")
    kwargs = dict(configuration_manager.network_arch_init_kwargs)
    unet = get_network_from_plans(arch_name, kwargs, configuration_manager.network_arch_init_kwargs_req_import,
                                  num_input_channels, num_output_channels, allow_init=True,
                                  deep_supervision=enable_deep_supervision)
    norm_op = pydoc.locate(kwargs["norm_op"]) if isinstance(kwargs.get("norm_op"), str) else kwargs.get("norm_op")
    return KMaXUNet(unet, num_output_channels, kwargs["strides"], norm_op, kwargs.get("norm_op_kwargs"),
                    **head_kwargs)
