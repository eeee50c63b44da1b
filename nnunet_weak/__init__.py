"""nnunet_weak: weakly supervised segmentation trainers for nnU-Net v2."""
from nnunet_weak import _autoext  # noqa: F401  (trainer registration + CPU torchvision shim; see _autoext)

__version__ = "0.1.0"
