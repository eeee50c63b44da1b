"""What sits around a network at training time (DDP, ``torch.compile``) and in its saved state dict."""
from typing import Dict

import torch
from torch._dynamo import OptimizedModule

COMPILED_PREFIX = "_orig_mod."   # torch.compile's prefix on every key of a compiled module's state dict


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The plain module behind DDP / torch.compile wrappers."""
    if isinstance(module, torch.nn.parallel.DistributedDataParallel):
        module = module.module
    if isinstance(module, OptimizedModule):
        module = module._orig_mod
    return module


def plain_state_dict(weights: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """``weights`` with torch.compile's key prefix removed, as an uncompiled network expects them."""
    return {k[len(COMPILED_PREFIX):] if k.startswith(COMPILED_PREFIX) else k: v for k, v in weights.items()}
