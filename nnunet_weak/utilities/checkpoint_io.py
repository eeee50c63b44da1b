"""Reading checkpoints without running code from them.

``torch.load(weights_only=False)`` unpickles arbitrary objects, i.e. runs whatever code the file names. The
checkpoints our tools read from paths a user passes (``nnunet_weak_modelmix_export --checkpoint``, PA-Seg SCM's
stage-1 models) and the extra state of our trainers hold only tensors, containers, strings, numbers and the NumPy
scalars nnU-Net's logger stores, so they load with ``weights_only=True`` and that short allow-list. nnU-Net's own
loads (``--c``, ``nnUNetv2_predict``, ``-pretrained_weights``) are nnU-Net's trust boundary and unchanged.
"""
import pickle
import zipfile
from typing import Optional

import numpy as np
import torch

from nnunet_weak.utilities.errors import NNWError

try:  # NumPy 2
    from numpy._core.multiarray import scalar as _numpy_scalar
except ImportError:  # pragma: no cover - NumPy 1
    from numpy.core.multiarray import scalar as _numpy_scalar

SAFE_GLOBALS = [_numpy_scalar, np.dtype] + sorted(
    {type(np.dtype(t)) for t in (np.float64, np.float32, np.float16, np.int64, np.int32, np.int16, np.int8,
                                 np.uint8, np.bool_)}, key=lambda c: c.__name__)


def require_complete_checkpoint(path: str, fix: str) -> None:
    """Refuse a file torch cannot open: checkpoints are zip archives, and a truncated one (an interrupted copy, a
    run killed while saving) has no central directory. ``fix`` ends the message."""
    if not zipfile.is_zipfile(path):
        raise NNWError(f"{path} is not a readable checkpoint (truncated, or not written by torch.save). {fix}")


def load_checkpoint_file(path: str, map_location="cpu", purpose: str = "", fix: Optional[str] = None) -> dict:
    """``torch.load(path)`` with ``weights_only=True`` and :data:`SAFE_GLOBALS`.

    Raises :class:`NNWError` naming ``path`` when the file is not a complete checkpoint or holds other objects.
    ``purpose`` (e.g. "--checkpoint") is added to the message so the user knows which input to fix; ``fix``
    replaces the default advice for an incomplete file (pointing ``purpose`` at another checkpoint).
    """
    where = f"{path}{f' ({purpose})' if purpose else ''}"
    require_complete_checkpoint(path, fix or f"Point {purpose or 'it'} at a complete checkpoint_final.pth / "
                                             f"checkpoint_best.pth.")
    with torch.serialization.safe_globals(SAFE_GLOBALS):
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as e:
            detail = str(e).split("Unsupported global:")[-1].split(" was not")[0].strip()
            raise NNWError(f"{where} holds objects beyond tensors, numbers and containers ({detail}); nnunet_weak "
                           f"does not run code from checkpoint files. Use a checkpoint written by nnU-Net or "
                           f"nnunet_weak trainers.") from None
