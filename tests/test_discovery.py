"""The stock nnU-Net lookup finds our trainers, from a new process, with no manual step."""
import inspect
import os
import subprocess
import sys

import pytest

from nnunet_weak import _autoext


def test_register_trainer_folder_appends_once():
    env = {"nnUNet_extTrainer": os.pathsep.join(["/a", "/b"])}
    value = _autoext.register_trainer_folder(env)
    assert value.split(os.pathsep) == ["/a", "/b", _autoext.EXT_FOLDER]
    assert _autoext.register_trainer_folder(env) == value  # no duplicate


def test_fresh_interpreter_has_folder_and_importable_timm():
    """The .pth hook runs at start-up: the variable is set and torchvision/timm import (CPU shim if needed)."""
    env = {k: v for k, v in os.environ.items() if k != "nnUNet_extTrainer"}
    code = ("import os, nnunet_weak._autoext as a; "
            "assert a.EXT_FOLDER in os.environ['nnUNet_extTrainer'].split(os.pathsep); "
            "import timm, torchvision; print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    # the variable came from the .pth file, i.e. before our code above imported anything
    code = "import os, sys; print(os.environ.get('nnUNet_extTrainer', '')); print('nnunet_weak' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.split("\n")
    assert _autoext.EXT_FOLDER in out[0], "nnunet_weak.pth is not installed in this environment"


@pytest.mark.parametrize("name", ["nnUNetTrainerPCE", "nnUNetTrainerBudget", "nnUNetTrainerWeakBase"])
def test_nnunet_resolver_finds_canonical_class(name):
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    cls = recursive_find_trainer_class_by_name(name)
    assert issubclass(cls, nnUNetTrainer)
    assert cls.__module__.startswith("nnunet_weak.training."), cls.__module__  # canonical, picklable module
    import importlib
    assert getattr(importlib.import_module(cls.__module__), name) is cls


def test_trainer_names_unique_and_signatures_exact():
    import nnunetv2
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class
    import nnunet_weak.nnunet_ext.nnunet_weak_trainers as shim
    builtin = os.path.join(os.path.dirname(nnunetv2.__file__), "training", "nnUNetTrainer")
    expected = list(inspect.signature(nnUNetTrainer.__init__).parameters)
    for name, cls in vars(shim).items():
        if isinstance(cls, type) and issubclass(cls, nnUNetTrainer):
            assert recursive_find_python_class(builtin, name, "nnunetv2.training.nnUNetTrainer") is None, \
                f"{name} collides with a built-in nnU-Net trainer"
            assert list(inspect.signature(cls.__init__).parameters) == expected, name


def test_env_command_prints_export_line():
    from nnunet_weak.env import main
    import io, contextlib
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main([]) == 0
    assert buf.getvalue().startswith("export nnUNet_extTrainer=") and _autoext.EXT_FOLDER in buf.getvalue()
