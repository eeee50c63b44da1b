"""Model mixing (ModelMix): a *virtual* network whose chosen encoder
layers are convex combinations of two task networks' layers, evaluated with ``torch.func.functional_call`` so
that no module is copied and gradients reach both networks.

The pool of mixable layers is the intersection of the two networks' encoder layers with the same name and the
same parameter shapes (the first convolution drops out when the two datasets have different channel counts).
Names come from ``named_modules()``, which lists every module once: dynamic_network_architectures' aliases
(``decoder.encoder``, ``all_modules``) do not create duplicates.
"""
from typing import Dict, List, Sequence

import torch
from torch import nn
from torch.func import functional_call

from nnunet_weak.networks.wrappers import unwrap

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORM = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,
         nn.GroupNorm, nn.LayerNorm)
POOLS = ("conv", "conv+norm")


def mixing_pool(owner: nn.Module, other: nn.Module, pool: str = "conv", prefix: str = "encoder.") -> List[List[str]]:
    """Mixable layers: one list of parameter names (e.g. ``[...conv.weight, ...conv.bias]``) per layer.

    pool: ``"conv"`` (convolutions only, the paper) or ``"conv+norm"`` (normalisation affines too, the official
    code's 50/50 draw). Only layers under ``prefix`` whose parameters exist with equal shapes in both networks.
    """
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
    kinds = _CONV + (_NORM if pool == "conv+norm" else ())
    theirs = dict(unwrap(other).named_parameters())
    layers = []
    for name, module in unwrap(owner).named_modules():
        if not name.startswith(prefix) or not isinstance(module, kinds):
            continue
        own = {f"{name}.{p}": value for p, value in module.named_parameters(recurse=False)}
        if own and all(n in theirs and theirs[n].shape == value.shape for n, value in own.items()):
            layers.append(list(own))
    return layers


def mixed_parameters(owner: nn.Module, other: nn.Module, layers: Sequence[Sequence[str]], lam: float,
                     trainable: str = "full") -> Dict[str, torch.Tensor]:
    """Parameters to override in ``owner``: ``lam * owner + (1 - lam) * other`` for every name in ``layers``.

    trainable: ``"full"`` keeps the graph, so the virtual model's losses reach both networks' mixed layers and the
        rest of ``owner`` (``functional_call`` uses the owner's own parameters for names not returned here).
        ``"official"`` reproduces the released code, which evaluates a detached copy: every parameter comes back
        detached except the owner's segmentation layers (``decoder.seg_layers``), the only ones it trains.
    """
    mine, theirs = dict(unwrap(owner).named_parameters()), dict(unwrap(other).named_parameters())
    mixed = {n: lam * mine[n] + (1.0 - lam) * theirs[n] for layer in layers for n in layer}
    if trainable == "full":
        return mixed
    if trainable != "official":
        raise ValueError(f"trainable must be 'full' or 'official', got {trainable!r}")
    out = {n: p.detach() for n, p in mine.items() if not n.startswith("decoder.seg_layers.")}
    out.update({n: v.detach() for n, v in mixed.items()})
    return out


def virtual_forward(owner: nn.Module, parameters: Dict[str, torch.Tensor], x: torch.Tensor):
    """``owner(x)`` with ``parameters`` substituted (the virtual model); same output structure as ``owner``.

    ``tie_weights=False`` on purpose: with torch 2.13's default (True), a module reachable under several names
    (``all_modules.0``, ``decoder.encoder``) kept the substitute as its parameter after the call, silently
    overwriting the owner's weights (measured; tests/test_modelmix.py guards it). The aliases are one module
    object, so substituting under the canonical name already reaches every alias."""
    return functional_call(unwrap(owner), parameters, (x,), strict=False, tie_weights=False)
