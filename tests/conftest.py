"""Shared fixtures: a tiny scribble dataset, planned and preprocessed once per session by the stock CLI."""
import json
import os

import numpy as np
import pytest

from nnunet_weak.annotation.scribbles import simulate_scribbles
from nnunet_weak.demo.phantom import make_case
from nnunet_weak.demo import dataset as demo_dataset
from nnunet_weak.experiment import steps

TINY_ID = 981
TINY_NAME = f"Dataset{TINY_ID}_NNWTiny"
TINY_SHAPE = (4, 48, 48)
N_LABELLED, N_UNLABELLED, N_TEST = 6, 2, 2
UNLABELLED = [f"tiny_{i:03d}" for i in range(N_LABELLED, N_LABELLED + N_UNLABELLED)]


def write_tiny_dataset(folder: str, seed: int = 0, ignore: bool = True) -> None:
    """Phantom volumes of TINY_SHAPE: N_LABELLED scribbled, N_UNLABELLED all-ignore, N_TEST dense test cases."""
    rng = np.random.default_rng(seed)
    for sub in ("imagesTr", "labelsTr", "labelsTr_dense", "imagesTs", "labelsTs"):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    n_train = N_LABELLED + N_UNLABELLED
    for i in range(n_train + N_TEST):
        image, dense = make_case(rng, TINY_SHAPE)
        case = f"tiny_{i:03d}"
        if i < n_train:
            demo_dataset._write(image, os.path.join(folder, "imagesTr", f"{case}_0000.nii.gz"))
            if not ignore:
                label = dense
            elif i < N_LABELLED:
                label = simulate_scribbles(dense, ignore_label=4, rng=rng).astype(np.uint8)
            else:
                label = np.full_like(dense, 4)
            demo_dataset._write(label, os.path.join(folder, "labelsTr", f"{case}.nii.gz"))
            demo_dataset._write(dense, os.path.join(folder, "labelsTr_dense", f"{case}.nii.gz"))
        else:
            demo_dataset._write(image, os.path.join(folder, "imagesTs", f"{case}_0000.nii.gz"))
            demo_dataset._write(dense, os.path.join(folder, "labelsTs", f"{case}.nii.gz"))
    labels = {"background": 0, "RV": 1, "MYO": 2, "LV": 3}
    if ignore:
        labels["ignore"] = 4
    with open(os.path.join(folder, "dataset.json"), "w") as f:
        json.dump({"channel_names": {"0": "MRI"}, "labels": labels, "numTraining": n_train,
                   "file_ending": ".nii.gz"}, f)


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
    write_tiny_dataset(raw)
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
