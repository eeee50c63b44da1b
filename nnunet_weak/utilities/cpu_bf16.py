"""The CPU fast path: bfloat16 autocast on CPUs with native bf16 arithmetic (AMX-BF16, AVX512-BF16).

nnU-Net switches autocast off on the CPU because fp32 -> bf16 emulation is slow on most CPUs. On CPUs whose
instruction set multiplies bf16 natively the same convolutions run about twice as fast, so there, when asked
(``NNW_CPU_BF16=1``), every nnunet_weak trainer runs its forward passes under
``torch.autocast("cpu", torch.bfloat16)`` and hands float32 outputs to losses that compute in float32. Unset or
``0``: nnU-Net's fp32 path (the default until training with it is shown to match fp32 Dice). CPUs without native
bf16 stay in fp32 either way. 2D networks only: 3D ones stay in float32 (:data:`THREE_D_REASON`).
CUDA is not touched here: CUDA inputs keep nnU-Net's own fp16 autocast.

What lives here: the capability check, the decision, the autocast context, a wrapper that makes any loss
module compute in float32, and forward hooks that make a network compute in bf16 on CPU inputs and return
float32 (how ``nnUNetv2_predict -device cpu`` gets the same speed without changes to nnU-Net).
"""
import contextlib
import functools
from typing import Any, Optional

import torch
from torch import nn

from nnunet_weak.utilities.env import env_flag

VARIABLE = "NNW_CPU_BF16"
_FLAGS = {"amx_bf16": "AMX-BF16", "avx512_bf16": "AVX512-BF16"}  # /proc/cpuinfo flag -> name, best first
_HOOK_TAG = "_nnunet_weak_cpu_bf16"


@functools.lru_cache(maxsize=None)
def native_bf16_instructions(cpuinfo: str = "/proc/cpuinfo") -> Optional[str]:
    """Name of the CPU's native bf16 instruction set ('AMX-BF16', 'AVX512-BF16'), or None (not found, or not
    Linux: other systems keep the fp32 path unless ``NNW_CPU_BF16=1``)."""
    try:
        with open(cpuinfo) as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return None
    return next((name for flag, name in _FLAGS.items() if flag in flags), None)


def cpu_bf16_requested() -> bool:
    """``NNW_CPU_BF16``: 1 asks for the fast path, 0 or unset keeps fp32 (a bad value stops with one line)."""
    return bool(env_flag(VARIABLE))


def cpu_bf16_enabled(spatial_dims: int = 2) -> bool:
    """Whether CPU work of a ``spatial_dims``-D network runs in bf16: asked for, a CPU with native bf16, and never
    for 3D networks (see :data:`THREE_D_REASON`)."""
    return spatial_dims == 2 and cpu_bf16_requested() and native_bf16_instructions() is not None


THREE_D_REASON = ("3D networks stay in float32: oneDNN's bf16 Conv3d backward corrupts the heap (the process aborts) "
                  "on shapes of nnU-Net's 3D plans, e.g. 16 -> 16 channels on 8 x 128 x 112 (torch 2.13)")


def describe(spatial_dims: int = 2) -> str:
    """One line for logs: what the CPU path does and why."""
    if not cpu_bf16_requested():
        return (f"CPU fast path off: float32 ({VARIABLE}=1 asks for bf16 autocast on 2D networks, on CPUs with "
                f"AMX-BF16 / AVX512-BF16)")
    if spatial_dims != 2:
        return f"CPU fast path off: {THREE_D_REASON}"
    native = native_bf16_instructions()
    if native is None:
        return "CPU fast path off: this CPU has no native bf16 (AMX-BF16 / AVX512-BF16); float32"
    return f"CPU fast path on: bf16 autocast ({native}, {VARIABLE}=1)"


def autocast(device: torch.device, cpu_bf16: bool):
    """The training autocast context: nnU-Net's fp16 autocast on CUDA, bf16 on the CPU when ``cpu_bf16``,
    nothing otherwise (MPS rejects autocast)."""
    if device.type == "cuda":
        return torch.autocast("cuda", enabled=True)
    if device.type == "cpu" and cpu_bf16:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def float32(value: Any) -> Any:
    """``value`` with every floating-point tensor in it (nested lists, tuples, dicts) cast to float32."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() and value.dtype != torch.float32 else value
    if isinstance(value, (list, tuple)):
        return type(value)(float32(v) for v in value)
    if isinstance(value, dict):
        return {k: float32(v) for k, v in value.items()}
    return value


def float32_region(tensor: torch.Tensor):
    """Autocast switched off for ``tensor``'s device type: the arithmetic inside runs in its inputs' dtype."""
    return torch.autocast(device_type=tensor.device.type, enabled=False)


class Float32Loss(nn.Module):
    """Runs ``loss`` with autocast off on float32 copies of its inputs (softmax, Dice sums and CE in float32
    while the network runs in bf16). Shapes are ``loss``'s own; the result is ``loss``'s (a float32 scalar)."""

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss

    def forward(self, *args, **kwargs):
        with torch.autocast("cpu", enabled=False):
            return self.loss(*float32(args), **float32(kwargs))


def _enter(module: nn.Module, args):
    if module.__dict__.get(_HOOK_TAG + "_suspended"):
        return None
    tensor = next((a for a in args if isinstance(a, torch.Tensor)), None)
    if tensor is None or tensor.device.type != "cpu":
        return None
    context = torch.autocast("cpu", dtype=torch.bfloat16)
    context.__enter__()
    module.__dict__.setdefault(_HOOK_TAG + "_stack", []).append(context)
    return None


def _leave(module: nn.Module, args, output):
    stack = module.__dict__.get(_HOOK_TAG + "_stack")
    if not stack:
        return None
    stack.pop().__exit__(None, None, None)
    return float32(output)


def install_inference_hooks(network: nn.Module, on_cpu: bool = False) -> nn.Module:
    """Make ``network(x)`` compute under bf16 autocast when ``x`` is on the CPU and return float32, if the CPU
    fast path is enabled (2D networks only). Forward hooks, so the state dict and strict loading are unchanged.
    Every trainer's ``build_network_architecture`` (what ``nnUNetv2_predict`` builds) calls this; it installs
    nothing in a process that sees a CUDA device, so CUDA training and prediction stay exactly nnU-Net's. A
    trainer told ``-device cpu`` on such a machine passes ``on_cpu=True``. Returns ``network``."""
    three_d = any(isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)) for m in network.modules())
    if not cpu_bf16_enabled(3 if three_d else 2) or has_inference_hooks(network):
        return network
    if not on_cpu and torch.cuda.is_available():
        return network
    network.register_forward_pre_hook(_enter)
    network.register_forward_hook(_leave, always_call=True)
    setattr(network, _HOOK_TAG, True)
    return network


def suspend_inference_hooks(network: nn.Module) -> nn.Module:
    """Make the hooks of :func:`install_inference_hooks` on ``network`` do nothing: ``network(x)`` computes in
    float32 again (a trainer that must train in fp32 although its builder installed them). Returns ``network``."""
    network.__dict__[_HOOK_TAG + "_suspended"] = True
    return network


def has_inference_hooks(network: nn.Module) -> bool:
    return bool(getattr(network, _HOOK_TAG, False))
