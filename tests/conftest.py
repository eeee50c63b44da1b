"""Shared fixtures: a tiny scribble dataset, planned and preprocessed once per session by the stock CLI."""
import json
import os

import pytest
import torch

from nnunet_weak.dataset_conversion import conversion_module
from nnunet_weak.demo.dataset import write_demo_dataset
from nnunet_weak.experiment import steps

if os.environ.get("PYTEST_XDIST_WORKER"):
    # two test workers share the cores: one thread each, also in the nnU-Net commands they start (which would
    # otherwise take every core: nnUNetv2_train -device cpu sets the thread count to the core count)
    os.environ.setdefault("NNW_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_ID = 981
TINY_NAME = f"Dataset{TINY_ID}_NNWTiny"
TINY_SHAPE = (4, 48, 48)
N_LABELLED, N_UNLABELLED, N_TEST = 6, 2, 2
UNLABELLED = [f"tiny_{i:03d}" for i in range(N_LABELLED, N_LABELLED + N_UNLABELLED)]


@pytest.fixture(scope="session")
def tiny_env(tmp_path_factory):
    """(environment dict, raw dataset folder) of a planned + preprocessed tiny scribble dataset.

    Fold 0 of the split written here validates on two labelled and one unlabelled case, so tests can check
    that unlabelled cases leave validation.
    """
    root = str(tmp_path_factory.mktemp("nnunet"))
    env = steps.nnunet_environment(root, nnUNet_n_proc_DA="0", NNW_NUM_EPOCHS="1", NNW_ITERS_PER_EPOCH="2",
                                   NNW_VAL_ITERS_PER_EPOCH="1")
    raw = os.path.join(env["nnUNet_raw"], TINY_NAME)
    write_demo_dataset(raw, N_LABELLED, N_TEST, seed=0, shape=TINY_SHAPE, n_unlabelled=N_UNLABELLED, prefix="tiny")
    log = os.path.join(root, "setup.log")
    steps.plan_and_preprocess(TINY_ID, ["2d"], env, log)
    cases = [f"tiny_{i:03d}" for i in range(N_LABELLED + N_UNLABELLED)]
    val = ["tiny_000", "tiny_001", UNLABELLED[0]]
    splits = [{"train": [c for c in cases if c not in val], "val": val}]
    with open(os.path.join(env["nnUNet_preprocessed"], TINY_NAME, "splits_final.json"), "w") as f:
        json.dump(splits, f)
    return env, raw


@pytest.fixture
def use_env(tiny_env, monkeypatch):
    """Apply the tiny dataset's environment to this process (nnU-Net reads its paths lazily)."""
    env, raw = tiny_env
    for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_n_proc_DA", "NNW_NUM_EPOCHS",
              "NNW_ITERS_PER_EPOCH", "NNW_VAL_ITERS_PER_EPOCH", "nnUNet_compile"):
        monkeypatch.setenv(k, env[k])
    return env, raw


def conversion_script(name):
    """The conversion module ``nnunet_weak.dataset_conversion.<name>``."""
    return conversion_module(name)


@pytest.fixture
def no_preprocessed(monkeypatch):
    """Conversions also write splits into $nnUNet_preprocessed when it is set; keep them in tmp folders."""
    monkeypatch.delenv("nnUNet_preprocessed", raising=False)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one thread is faster than two competing with anything else on a 2-core box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
