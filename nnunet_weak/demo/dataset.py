"""Write the demo phantom as an nnU-Net raw dataset with simulated scribbles and dense reference labels."""
import json
import os
from typing import Tuple

import numpy as np
import SimpleITK as sitk

from nnunet_weak.annotation.scribbles import simulate_scribbles
from nnunet_weak.demo.phantom import LABELS, make_case

SPACING_XYZ = (1.5, 1.5, 8.0)  # SimpleITK order


def _write(array: np.ndarray, path: str) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING_XYZ)
    sitk.WriteImage(image, path, useCompression=True)


def write_demo_dataset(dataset_folder: str, n_train: int = 20, n_test: int = 8, seed: int = 0,
                       shape: Tuple[int, int, int] = (8, 128, 128), n_unlabelled: int = 0,
                       prefix: str = "phantom") -> dict:
    """Writes imagesTr / labelsTr (scribbles, ignore = 4) / labelsTr_dense and imagesTs / labelsTs (dense).

    Cases are ``{prefix}_000`` ... in that order: ``n_train`` scribbled training cases, then ``n_unlabelled``
    unlabelled ones (label map all ignore), then ``n_test`` test cases. Returns a summary with the
    annotated-pixel fraction of the scribbles.
    """
    rng = np.random.default_rng(seed)
    ignore = max(LABELS.values()) + 1
    for sub in ("imagesTr", "labelsTr", "labelsTr_dense", "imagesTs", "labelsTs"):
        os.makedirs(os.path.join(dataset_folder, sub), exist_ok=True)
    annotated = []
    n_training = n_train + n_unlabelled
    for i in range(n_training + n_test):
        image, dense = make_case(rng, shape)
        train = i < n_training
        case = f"{prefix}_{i:03d}"
        images, labels = ("imagesTr", "labelsTr") if train else ("imagesTs", "labelsTs")
        _write(image, os.path.join(dataset_folder, images, f"{case}_0000.nii.gz"))
        if train:
            if i < n_train:
                scribbles = simulate_scribbles(dense, ignore_label=ignore, rng=rng)
                annotated.append(float(np.mean(scribbles != ignore)))
            else:
                scribbles = np.full_like(dense, ignore)
            _write(scribbles.astype(np.uint8), os.path.join(dataset_folder, labels, f"{case}.nii.gz"))
            _write(dense, os.path.join(dataset_folder, "labelsTr_dense", f"{case}.nii.gz"))
        else:
            _write(dense, os.path.join(dataset_folder, labels, f"{case}.nii.gz"))
    dataset_json = {
        "name": os.path.basename(dataset_folder),
        "description": "nnunet_weak demo: synthetic cardiac phantom, simulated scribbles (ignore = 4)",
        "channel_names": {"0": "MRI"},
        "labels": {**LABELS, "ignore": ignore},
        "numTraining": n_training,
        "file_ending": ".nii.gz",
    }
    with open(os.path.join(dataset_folder, "dataset.json"), "w") as f:
        json.dump(dataset_json, f, indent=2)
    return {"n_train": n_train, "n_unlabelled": n_unlabelled, "n_test": n_test,
            "annotated_fraction": float(np.mean(annotated)) if annotated else 0.0}
