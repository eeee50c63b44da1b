"""The environment variables of nnunet_weak (all optional): their registry and their parsing.

:data:`VARIABLES` is the one list of our variables (operational knobs: length, threads, validation, speed path,
and a few experiment overrides that the trainers record in the fold's ``debug.json``); the README's table and
the code are checked against it by a test. Bad values raise :class:`NNWError` naming the variable.
"""
import os
from typing import Callable, Optional, TypeVar

from nnunet_weak.utilities.errors import NNWError

T = TypeVar("T")

# name -> what it does (the README's "Environment variables" table has the defaults and details)
VARIABLES = {
    "NNW_NUM_EPOCHS": "epochs of every nnunet_weak trainer (and nnUNetTrainerBudget)",
    "NNW_ITERS_PER_EPOCH": "training iterations per epoch",
    "NNW_VAL_ITERS_PER_EPOCH": "validation iterations per epoch (pseudo Dice)",
    "NNW_SAVE_EVERY": "epochs between checkpoint_latest.pth saves (what --c resumes from)",
    "NNW_SKIP_FINAL_VALIDATION": "1: skip nnU-Net's validation after training",
    "NNW_CPU_BF16": "1: bf16 autocast for 2D networks on CPUs with native bf16",
    "NNW_SEED": "seed of Python / NumPy / torch before the trainer starts",
    "NNW_NUM_THREADS": "CPU training threads",
    "NNW_LABEL_CHECK": "0: skip the start-up check of the raw label maps",
    "NNW_LABELLED_FRACTION": "share of each batch drawn from labelled cases (experiment override)",
    "NNW_PAD_AS_IGNORE": "1 / 0: padded border pixels ignore / background (experiment override)",
    "NNW_SCM_PRIMARY_CHECKPOINT": "stage-1 checkpoint of nnUNetTrainerPASegSCM's primary network",
    "NNW_SCM_AUX_CHECKPOINT": "stage-1 checkpoint of its auxiliary network",
    "NNW_STAGE1_CHECK": "0: nnUNetTrainerPASegSCM skips its check that the stage-1 models predict every class",
    "NNW_MODELMIX_AUX": "auxiliary dataset of nnUNetTrainerModelMix (overrides modelmix.json)",
    "NNW_MODELMIX_AUX_PLANS": "plans name of that auxiliary dataset",
    "NNW_NO_AUTOEXT": "1: the start-up hook does not touch nnUNet_extTrainer",
    "NNW_NO_TORCHVISION_SHIM": "1: no CPU torchvision shim",
}


def _read(name: str, cast: Callable[[str], T], check: Callable[[T], bool], expected: str) -> Optional[T]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = cast(raw.strip())
    except ValueError:
        value = None
    if value is None or not check(value):
        raise NNWError(f"environment variable {name}={raw!r} is invalid: expected {expected}. "
                       f"Fix it or unset it (`unset {name}`).")
    return value


def env_int(name: str, minimum: int = 0) -> Optional[int]:
    return _read(name, int, lambda v: v >= minimum, f"an integer >= {minimum}")


def env_fraction(name: str) -> Optional[float]:
    return _read(name, float, lambda v: 0.0 <= v <= 1.0, "a number between 0 and 1")


def env_flag(name: str) -> Optional[bool]:
    table = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
    return _read(name, lambda s: table[s.lower()] if s.lower() in table else None, lambda v: v is not None,
                 "1 or 0")


def env_str(name: str, check: Callable[[str], bool] = bool, expected: str = "a non-empty value") -> Optional[str]:
    return _read(name, str, check, expected)


def env_path(name: str) -> Optional[str]:
    """A file path from the environment; it must exist."""
    return _read(name, str, os.path.isfile, "the path of an existing file")


def require_env(name: str, purpose: str) -> str:
    """Value of a required variable such as ``nnUNet_preprocessed``; a clear error when it is unset."""
    value = os.environ.get(name)
    if not value:
        raise NNWError(f"environment variable {name} is not set; it is needed {purpose}. "
                       f"Set it, e.g. `export {name}=/path/to/{name}` (see nnU-Net's setting_up_paths.md).")
    return value


def preprocessed_from_env() -> Optional[str]:
    """``$nnUNet_preprocessed`` or None: read by command-line entry points only, which pass it on as an argument."""
    return os.environ.get("nnUNet_preprocessed", "").strip() or None
