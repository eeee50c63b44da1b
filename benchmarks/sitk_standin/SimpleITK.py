"""A NIfTI-only stand-in for SimpleITK, backed by nibabel, for machines where SimpleITK cannot be installed.

Why: the GPU machine has no package index, and SimpleITK's wheel (53 MB) does not fit into the 64 MiB that can
travel there next to nnU-Net's other wheels. nnU-Net imports SimpleITK at import time (its reader/writer
registry), and the demo phantom writer and ``nnunet_weak_evaluate`` use it; nothing else in the GPU check does.
``benchmarks/gpu_check.sh`` puts this folder on ``PYTHONPATH`` only when ``import SimpleITK`` fails.

It covers exactly what those paths call: ``ReadImage``, ``WriteImage``, ``GetArrayFromImage``,
``GetImageFromArray`` and an ``Image`` with spacing / origin / direction, for 2D and 3D single-channel NIfTI
(``.nii`` / ``.nii.gz``). Files are written as SimpleITK writes them: the array in (z, y, x) order is stored as
(x, y, z) and the LPS geometry becomes a RAS affine, so real SimpleITK reads them back with the same array,
spacing, origin and direction (``tests/test_gpu_check.py`` checks both directions). Anything else raises
an error that names this stand-in.
"""
from typing import Sequence, Tuple

import nibabel
import numpy as np

__version__ = "0-nibabel-standin"
_LPS_TO_RAS = (-1.0, -1.0, 1.0)


class Image:
    """An image as SimpleITK's: ``array`` in (z, y, x) order, spacing / origin in (x, y, z), direction as the
    row-major flattened d x d direction cosine matrix."""

    def __init__(self, array: np.ndarray):
        if array.ndim not in (2, 3):
            raise NotImplementedError(f"SimpleITK stand-in: only 2D / 3D single-channel images, not {array.shape}")
        self._array = array
        d = array.ndim
        self._spacing = (1.0,) * d
        self._origin = (0.0,) * d
        self._direction = tuple(np.eye(d).ravel())

    def GetDimension(self) -> int:
        return self._array.ndim

    def GetSize(self) -> Tuple[int, ...]:
        return tuple(int(s) for s in self._array.shape[::-1])

    def GetSpacing(self) -> Tuple[float, ...]:
        return self._spacing

    def GetOrigin(self) -> Tuple[float, ...]:
        return self._origin

    def GetDirection(self) -> Tuple[float, ...]:
        return self._direction

    def SetSpacing(self, spacing: Sequence[float]) -> None:
        self._spacing = self._checked(spacing, self._array.ndim, "spacing")

    def SetOrigin(self, origin: Sequence[float]) -> None:
        self._origin = self._checked(origin, self._array.ndim, "origin")

    def SetDirection(self, direction: Sequence[float]) -> None:
        self._direction = self._checked(direction, self._array.ndim ** 2, "direction")

    @staticmethod
    def _checked(values: Sequence[float], n: int, what: str) -> Tuple[float, ...]:
        values = tuple(float(v) for v in values)
        if len(values) != n:
            raise ValueError(f"SimpleITK stand-in: {what} needs {n} values, got {len(values)}")
        return values


def GetImageFromArray(array: np.ndarray, isVector: bool = False) -> Image:
    if isVector:
        raise NotImplementedError("SimpleITK stand-in: vector images are not supported")
    return Image(np.array(array))


def GetArrayFromImage(image: Image) -> np.ndarray:
    return np.array(image._array)


def _affine(image: Image) -> np.ndarray:
    d = image.GetDimension()
    rotation = np.eye(3)
    rotation[:d, :d] = np.reshape(image.GetDirection(), (d, d))
    spacing = np.ones(3)
    spacing[:d] = image.GetSpacing()
    origin = np.zeros(3)
    origin[:d] = image.GetOrigin()
    flip = np.diag(_LPS_TO_RAS)
    affine = np.eye(4)
    affine[:3, :3] = flip @ rotation @ np.diag(spacing)
    affine[:3, 3] = flip @ origin
    return affine


def _nifti_only(path: str) -> None:
    if not str(path).endswith((".nii", ".nii.gz")):
        raise NotImplementedError(f"SimpleITK stand-in reads and writes NIfTI only, not {path}; install SimpleITK")


def WriteImage(image: Image, path: str, useCompression: bool = False, *args) -> None:
    _nifti_only(path)
    data = np.transpose(image._array)                    # (z, y, x) -> (x, y, z), as SimpleITK stores it
    nifti = nibabel.Nifti1Image(data, _affine(image))
    nifti.header.set_xyzt_units("mm", "sec")
    nifti.header.set_qform(nifti.affine, code=1)
    nifti.header.set_sform(nifti.affine, code=1)
    nibabel.save(nifti, str(path))


def ReadImage(path: str, *args) -> Image:
    _nifti_only(path)
    nifti = nibabel.load(str(path))
    data = np.asanyarray(nifti.dataobj)
    d = data.ndim
    if d not in (2, 3):
        raise NotImplementedError(f"SimpleITK stand-in: {path} has {d} dimensions; only 2D / 3D are supported")
    affine = nifti.affine
    flip = np.diag(_LPS_TO_RAS)
    linear = (flip @ affine[:3, :3])[:d, :d]
    spacing = np.linalg.norm(linear, axis=0)
    image = Image(np.ascontiguousarray(np.transpose(data)))
    image.SetSpacing(spacing)
    image.SetDirection((linear / spacing).ravel())
    image.SetOrigin((flip @ affine[:3, 3])[:d])
    return image


def __getattr__(name: str):
    raise AttributeError(f"SimpleITK stand-in (nibabel, NIfTI only) has no {name!r}: this code path needs the real "
                         f"SimpleITK (pip install SimpleITK)")
