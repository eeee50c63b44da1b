"""Bad input gets one clear line naming the file or variable and the fix."""
import os
import subprocess
import sys

import pytest

from nnunet_weak.utilities.env import env_flag, env_fraction, env_int, require_env
from nnunet_weak.utilities.errors import NNWError
from nnunet_weak.utilities.labels import check_ignore_label

LABELS = {"background": 0, "RV": 1, "MYO": 2, "LV": 3}


def test_ignore_label_checks():
    assert check_ignore_label({"labels": {**LABELS, "ignore": 4}}, "x/dataset.json") == 4
    with pytest.raises(NNWError, match=r"x/dataset.json declares no 'ignore' label.*\"ignore\": 4"):
        check_ignore_label({"labels": LABELS}, "x/dataset.json")
    assert check_ignore_label({"labels": LABELS}, "x", required=False) is None
    with pytest.raises(NNWError, match="ignore label is 7.*highest value"):
        check_ignore_label({"labels": {**LABELS, "ignore": 7}}, "x/dataset.json")
    with pytest.raises(NNWError, match="region"):
        check_ignore_label({"labels": {"background": 0, "whole": [1, 2], "ignore": 3}}, "x")


def test_environment_variables(monkeypatch):
    monkeypatch.setenv("NNW_NUM_EPOCHS", "5")
    assert env_int("NNW_NUM_EPOCHS", 1) == 5
    monkeypatch.setenv("NNW_NUM_EPOCHS", "five")
    with pytest.raises(NNWError, match="NNW_NUM_EPOCHS='five' is invalid"):
        env_int("NNW_NUM_EPOCHS", 1)
    monkeypatch.setenv("NNW_LABELLED_FRACTION", "1.5")
    with pytest.raises(NNWError, match="between 0 and 1"):
        env_fraction("NNW_LABELLED_FRACTION")
    monkeypatch.setenv("NNW_PAD_AS_IGNORE", "no")
    assert env_flag("NNW_PAD_AS_IGNORE") is False
    monkeypatch.delenv("nnUNet_results", raising=False)
    with pytest.raises(NNWError, match="nnUNet_results is not set.*export nnUNet_results="):
        require_env("nnUNet_results", "to write the trained model")


def test_nnwerror_prints_one_line_without_traceback():
    code = "import nnunet_weak.utilities.errors as e; raise e.NNWError('dataset.json lacks X; add X')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "nnunet_weak error: dataset.json lacks X; add X"


def test_every_environment_variable_is_registered_and_documented():
    """One registry of our variables: every NNW_* name the package reads is in utilities.env.VARIABLES, and the
    README's table lists exactly those."""
    import re
    from nnunet_weak.utilities.env import VARIABLES
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "nnunet_weak")
    used = set()
    for folder, _, names in os.walk(root):
        for name in names:
            if name.endswith(".py"):
                used |= set(re.findall(r"NNW_[A-Z0-9_]+", open(os.path.join(folder, name)).read()))
    assert used == set(VARIABLES)
    readme = open(os.path.join(os.path.dirname(root), "README.md")).read()
    section = readme[readme.index("## Environment variables"):]
    section = section[:section.index("\n## ", 1)]
    table = {n for line in section.splitlines() if line.startswith("| `NNW_")
             for n in re.findall(r"`(NNW_[A-Z0-9_]+)`", line.split("|")[1])}
    assert table == set(VARIABLES)
