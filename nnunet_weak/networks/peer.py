"""A peer architecture from the same plans: the other member of a two-network method (PA-Seg's stage-2
auxiliary model).

PA-Seg's point is that the peer differs in architecture, so the two make different mistakes. From nnU-Net's
default ``PlainConvUNet`` plans we build dynamic_network_architectures' ``ResidualEncoderUNet`` with the same
stages, features, kernels, strides, norms and decoder, and one residual block (two convolutions, like the plain
stage) per encoder stage, so its cost is close to the primary's. From ``ResidualEncoderUNet`` plans (nnU-Net's
ResEnc presets) we go the other way, to a ``PlainConvUNet`` with two convolutions per stage.
"""
import copy
from typing import Tuple

PLAIN = "dynamic_network_architectures.architectures.unet.PlainConvUNet"
RESENC = "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"


def peer_architecture(class_name: str, arch_kwargs: dict) -> Tuple[str, dict]:
    """(network class name, init kwargs) of the peer of a plans' architecture; raises ValueError for others."""
    kwargs = copy.deepcopy(arch_kwargs)
    short = class_name.split(".")[-1]
    if short == "PlainConvUNet":
        n = kwargs.pop("n_conv_per_stage")
        kwargs["n_blocks_per_stage"] = [1] * (len(n) if isinstance(n, (list, tuple)) else kwargs["n_stages"])
        return RESENC, kwargs
    if short == "ResidualEncoderUNet":
        blocks = kwargs.pop("n_blocks_per_stage")
        for key in ("block", "bottleneck_channels", "stem_channels"):
            kwargs.pop(key, None)
        kwargs["n_conv_per_stage"] = [2] * (len(blocks) if isinstance(blocks, (list, tuple)) else kwargs["n_stages"])
        return PLAIN, kwargs
    raise ValueError(f"no peer architecture for {class_name}; the plans must use PlainConvUNet or "
                     f"ResidualEncoderUNet")
