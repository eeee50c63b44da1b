"""PCLMix's network: nnU-Net's U-Net from the plans plus a training-only Swin decoder and projection head.

``PCLMixNet.encoder`` / ``.decoder`` are the very modules of the plans' ``PlainConvUNet`` (state-dict keys
unchanged), so ``forward(x) = decoder(encoder(x))`` is nnU-Net's network: prediction, mirroring and
``perform_actual_validation`` cost exactly what plain nnU-Net costs. ``aux_decoder`` and ``proj_head`` are built
unconditionally from the plans (strict loading works in ``nnUNetv2_predict``) but only ``forward_train`` runs them.

Which encoder stages feed the auxiliary decoder: the stages whose cumulative in-plane stride is 4, 8, 16 and 32.
Plans with fewer stages (small patches, e.g. 48x48 with strides 1/2/4/8) use the consecutive ones that exist,
from stride 4 up (at least 4 and 8 are required, 8 also feeds the projection head); the decoder then has fewer
levels. Stages whose stride differs per axis end the chain.
"""
from typing import List, Sequence

import torch
import torch.nn.functional as F
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from torch import nn

from nnunet_weak.networks.blocks import cumulative_strides
from nnunet_weak.networks.swin_decoder import SwinDecoder2D
from nnunet_weak.utilities.errors import NNWError

AUX_STRIDES = (4, 8, 16, 32)
EMBED_STRIDE = 8
EMBED_DIM = 256
SUPPORTED = ("PlainConvUNet", "ResidualEncoderUNet")


def aux_stages(strides: Sequence) -> List[int]:
    """Indices of the encoder stages with cumulative stride 4, 8, 16, 32 (the consecutive ones that exist)."""
    by_stride = {c: i for i, c in enumerate(cumulative_strides(strides, 2)) if c[0] == c[1]}
    chosen = []
    for s in AUX_STRIDES:
        if (s, s) not in by_stride:
            break
        chosen.append(by_stride[(s, s)])
    if len(chosen) < 2:
        raise NNWError(f"PCLMix needs encoder stages at cumulative stride 4x4 and 8x8 for its auxiliary decoder "
                       f"and projection head; the plans' strides {list(strides)} give "
                       f"{cumulative_strides(strides, 2)}. Use a 2D configuration with isotropic 2x2 pooling.")
    return chosen


class ProjectionHead(nn.Module):
    """(b, c, h, w) -> (b, 256, h, w) unit vectors: 1x1 conv c->c, the plans' norm, nonlinearity, 1x1 conv
    c->256, L2 normalisation over channels (computed in float32)."""

    def __init__(self, channels: int, norm_op=None, norm_op_kwargs=None, nonlin=None, nonlin_kwargs=None,
                 out_channels: int = EMBED_DIM):
        super().__init__()
        norm = norm_op(channels, **(norm_op_kwargs or {})) if norm_op is not None else nn.Identity()
        act = nonlin(**(nonlin_kwargs or {})) if nonlin is not None else nn.ReLU(inplace=True)
        self.layers = nn.Sequential(nn.Conv2d(channels, channels, 1), norm, act,
                                    nn.Conv2d(channels, out_channels, 1))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=1e-2)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.layers(x).float(), p=2, dim=1)


class PCLMixNet(nn.Module):
    """nnU-Net's U-Net (``encoder``, ``decoder``) + ``aux_decoder`` (Swin) + ``proj_head``.

    forward(x): (b, c, H, W) -> the U-Net's output (list of deep-supervision logits if
        ``decoder.deep_supervision`` else one (b, C, H, W) tensor). Never touches the auxiliary modules.
    forward_train(x): one encoder pass -> (main output as in forward, aux logits (b, C, H, W),
        embedding (b, 256, H/8, W/8) unit vectors, or None with ``with_embedding=False``).
    """

    def __init__(self, unet: nn.Module, aux_decoder: nn.Module, proj_head: nn.Module, aux_stage_ids: Sequence[int],
                 embed_stage_id: int):
        super().__init__()
        self.encoder = unet.encoder
        self.decoder = unet.decoder
        self.aux_decoder = aux_decoder
        self.proj_head = proj_head
        self.aux_stage_ids = tuple(aux_stage_ids)
        self.embed_stage_id = embed_stage_id

    def forward(self, x: torch.Tensor):
        return self.decoder(self.encoder(x))

    def forward_train(self, x: torch.Tensor, with_embedding: bool = True):
        skips = self.encoder(x)
        main = self.decoder(skips)
        aux = self.aux_decoder([skips[i] for i in self.aux_stage_ids])
        embedding = self.proj_head(skips[self.embed_stage_id]) if with_embedding else None
        return main, aux, embedding


def build_pclmix_network(plans_manager, configuration_manager, num_input_channels: int, num_output_channels: int,
                         enable_deep_supervision: bool = True, embed_dim: int = 96, base_heads: int = 3,
                         window: int = 7, drop_path: float = 0.1, projection_norm: str = "plans") -> PCLMixNet:
    """PCLMixNet from nnU-Net's plans, deterministic in its module tree (same keys at training and inference).

    The U-Net is ``get_network_from_plans`` (He init); the Swin decoder uses trunc-normal init, the projection
    head Kaiming init and the plans' norm (``projection_norm="plans"``, InstanceNorm for nnU-Net's plans) or the
    original's BatchNorm (``"batch"``). Raises NNWError for 3D configurations and plans without 2x2-pooled
    stride-4/8 stages.
    """
    if projection_norm not in ("plans", "batch"):
        raise NNWError(f"projection_norm must be 'plans' or 'batch', not {projection_norm!r}")
    patch = configuration_manager.patch_size
    if len(patch) != 2:
        raise NNWError(f"PCLMix supports 2D configurations only (its Swin decoder and CutMix boxes are 2D); "
                       f"this configuration has a {len(patch)}D patch {list(patch)}. Train a 2d configuration.")
    arch_name = configuration_manager.network_arch_class_name
    if arch_name.split(".")[-1] not in SUPPORTED:
        raise NNWError(f"PCLMix wraps nnU-Net's PlainConvUNet / ResidualEncoderUNet plans, not {arch_name}.")
    kwargs = configuration_manager.network_arch_init_kwargs
    unet = get_network_from_plans(arch_name, kwargs, configuration_manager.network_arch_init_kwargs_req_import,
                                  num_input_channels, num_output_channels, allow_init=True,
                                  deep_supervision=enable_deep_supervision)
    stages = aux_stages(kwargs["strides"])
    channels = list(unet.encoder.output_channels)
    aux = SwinDecoder2D([channels[i] for i in stages], num_output_channels, embed_dim=embed_dim,
                        base_heads=base_heads, window=window, drop_path=drop_path)
    embed_stage = stages[AUX_STRIDES.index(EMBED_STRIDE)]
    encoder = unet.encoder
    norm_op, norm_kwargs = getattr(encoder, "norm_op", None), getattr(encoder, "norm_op_kwargs", None)
    if projection_norm == "batch":
        norm_op, norm_kwargs = nn.BatchNorm2d, {}
    proj = ProjectionHead(channels[embed_stage], norm_op, norm_kwargs, getattr(encoder, "nonlin", None),
                          getattr(encoder, "nonlin_kwargs", None))
    return PCLMixNet(unet, aux, proj, stages, embed_stage)
