"""Start-up hook, run by ``nnunet_weak.pth`` in every interpreter of the environment. Keep it cheap: no torch.

1. Registers ``nnunet_weak/nnunet_ext`` (a folder holding only trainer shims) in ``nnUNet_extTrainer`` so that
   nnU-Net's trainer lookup finds our trainers by name, in this process and in every child it starts.
   Existing entries are kept; nothing is added twice. ``NNW_NO_AUTOEXT=1`` turns this off.
2. CPU-only environments: PyPI's torchvision wheels are CUDA builds whose compiled ops cannot load next to a
   CPU torch. torchvision then still imports, except that it registers fake kernels for ``torchvision::nms``
   and ``torchvision::qnms`` without checking the ops exist, which raises and breaks ``import timm`` and with it
   nnU-Net's trainer lookup. When (and only when) torchvision reports that its ops are missing, we declare
   those two schemas first, so the import completes; calling ``torchvision.ops.nms`` would still fail, and
   nnU-Net never does. A working torchvision is left untouched. ``NNW_NO_TORCHVISION_SHIM=1`` turns this off.
3. Installs ``nnunet_weak.utilities.errors.install_excepthook``: an ``NNWError`` ends a program with one line
   (``nnunet_weak error: ...``), and in nnU-Net's commands (``nnUNetv2_*``) so does a checkpoint torch cannot
   open as a zip archive. Every other exception keeps Python's normal output.
"""
import importlib.abc
import os
import sys

from nnunet_weak.utilities.errors import install_excepthook

EXT_FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nnunet_ext")


def register_trainer_folder(environ=os.environ) -> str:
    """Append our shim folder to ``nnUNet_extTrainer`` (``os.pathsep`` separated) and return the new value."""
    current = [p for p in environ.get("nnUNet_extTrainer", "").split(os.pathsep) if p]
    if EXT_FOLDER not in current:
        current.append(EXT_FOLDER)
    environ["nnUNet_extTrainer"] = os.pathsep.join(current)
    return environ["nnUNet_extTrainer"]


_MISSING_OPS_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_torchvision_fragment = None  # must stay alive: dropping the Library object removes the definitions


class _TorchvisionOpsShim(importlib.abc.MetaPathFinder):
    """Runs once, just before ``torchvision._meta_registrations`` is imported (after ``torchvision.extension``)."""

    def find_spec(self, fullname, path=None, target=None):
        global _torchvision_fragment
        if fullname != "torchvision._meta_registrations":
            return None
        sys.meta_path.remove(self)
        extension = sys.modules.get("torchvision.extension")
        if extension is None or extension._has_ops():
            return None
        import torch

        _torchvision_fragment = torch.library.Library("torchvision", "FRAGMENT")
        for schema in _MISSING_OPS_SCHEMAS:
            try:
                _torchvision_fragment.define(schema)
            except RuntimeError:  # already defined by someone else
                pass
        return None  # let the normal import machinery load the module


def install_torchvision_shim() -> None:
    if "torchvision" in sys.modules or any(isinstance(f, _TorchvisionOpsShim) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _TorchvisionOpsShim())


if os.environ.get("NNW_NO_AUTOEXT", "0") != "1":
    register_trainer_folder()
if os.environ.get("NNW_NO_TORCHVISION_SHIM", "0") != "1":
    install_torchvision_shim()
install_excepthook()
