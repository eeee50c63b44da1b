"""Score the *second* network of a two-network trainer (DKUXNet / Dual kMaX: the extra-state ``network_b``, the one
that does not predict) on the validation cases, the way the benchmark scores the predicting one: ``nnUNetv2_predict``
on a copy of the trained fold whose ``network_weights`` are the second network's, then the dense evaluation. A
diagnostic: it tells whether the network that predicts is the weaker of the two. Which view that is depends on the
trainer's ``predictor_view``: DKUXNet and Dual kMaX's ``_predictStrongView`` (how the 10 % runs were trained)
predict with A (strong view), so this scores B (weak view); Dual kMaX's default the other way round.

    python benchmarks/second_network_eval.py \\
        --fold-folder benchmarks/work/nnUNet_results/Dataset805_ACDCSemi10/nnUNetTrainerDualKMaX_lite__nnUNetPlans__2d_lite/fold_0 \\
        --inputs benchmarks/work/inputs/Dataset805_ACDCSemi10_fold0 \\
        --ref benchmarks/work/nnUNet_raw/Dataset805_ACDCSemi10/labelsTr_dense \\
        --per-case benchmarks/results/per_case/dualkmax_semi10_runs__network-b-run-2_dense_eval.json

The copy lives under ``--work`` (default: a new temporary folder); the trained fold is only read, and it must sit
where ``nnUNetv2_train`` put it (``DatasetXXX_Name/TRAINER__PLANS__CONFIG/fold_N``), which names the model.
Prediction and scoring are the benchmark's own (``predict_and_score``: CPU, TTA off, one process).
"""
import argparse
import os
import re
import shutil
import sys
import tempfile

import torch
from batchgenerators.utilities.file_and_folder_operations import load_json

from nnunet_weak.experiment.benchmark import Model, Reference, dataset_classes, plans_args, predict_and_score
from nnunet_weak.training.weak_base import EXTRA_STATE_KEY
from nnunet_weak.utilities.errors import NNWError

MODEL_FILES = ("plans.json", "dataset.json", "dataset_fingerprint.json")


def swapped_checkpoint(checkpoint: dict, source: str, name: str = "network_b") -> dict:
    """``checkpoint`` with ``network_weights`` replaced by the extra-state network ``name`` (refused when absent)."""
    extra = checkpoint.get(EXTRA_STATE_KEY, {})
    if name not in extra:
        raise NNWError(f"{source} holds no extra network {name!r} (it has {sorted(extra) or 'none'}); only "
                       f"two-network trainers (DKUXNet, Dual kMaX) have a second network to score.")
    if set(extra[name]) != set(checkpoint["network_weights"]):
        raise NNWError(f"{source}: {name!r} and network_weights have different parameters; they are not two copies "
                       f"of one architecture, so the predictor cannot load {name!r} in A's place.")
    swapped = dict(checkpoint)
    swapped["network_weights"] = extra[name]
    swapped.pop(EXTRA_STATE_KEY)
    swapped.pop("optimizer_state", None)
    return swapped


def model_copy(fold_folder: str, work: str) -> tuple:
    """Copy the trainer folder's json files and a second-network checkpoint into ``work``/nnUNet_results; returns
    (results root, dataset id, configuration, trainer, plans, fold)."""
    fold_folder = os.path.abspath(fold_folder.rstrip("/"))
    checkpoint_file = os.path.join(fold_folder, "checkpoint_final.pth")
    if not os.path.isfile(checkpoint_file):
        raise NNWError(f"{checkpoint_file} not found: pass the fold folder of a finished training (fold_N).")
    model_folder, fold_name = os.path.split(fold_folder)
    dataset_folder, model_name = os.path.split(model_folder)
    dataset = os.path.basename(dataset_folder)
    match = re.fullmatch(r"(.+?)__(.+)__(.+)", model_name)
    if not (match and fold_name.startswith("fold_") and re.fullmatch(r"Dataset\d{3}_.+", dataset)):
        raise NNWError(f"{fold_folder} is not laid out as nnUNet_results/DatasetXXX_Name/TRAINER__PLANS__CONFIG/"
                       f"fold_N; pass the folder nnUNetv2_train wrote.")
    trainer, plans, configuration = match.groups()
    root = os.path.join(work, "nnUNet_results")
    target = os.path.join(root, dataset, model_name, fold_name)
    os.makedirs(target, exist_ok=True)
    for name in MODEL_FILES:
        source = os.path.join(model_folder, name)
        if os.path.isfile(source):
            shutil.copy(source, os.path.join(root, dataset, model_name, name))
    checkpoint = torch.load(checkpoint_file, map_location="cpu", weights_only=False)
    torch.save(swapped_checkpoint(checkpoint, checkpoint_file), os.path.join(target, "checkpoint_final.pth"))
    return root, int(dataset[7:10]), configuration, trainer, plans, fold_name[len("fold_"):]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fold-folder", required=True, help="nnUNet_results/.../TRAINER__PLANS__CONFIG/fold_N")
    parser.add_argument("--inputs", required=True, help="folder of the validation images (nnUNetv2_predict -i)")
    parser.add_argument("--ref", required=True, help="folder of the dense reference labels")
    parser.add_argument("--per-case", required=True, help="per-case JSON to write (and its .md)")
    parser.add_argument("--work", help="folder for the model copy and predictions (default: a temporary folder)")
    args = parser.parse_args(argv)
    work = args.work or tempfile.mkdtemp(prefix="second_network_")
    try:
        dataset_json_file = os.path.join(args.fold_folder, "..", "dataset.json")
        if not os.path.isfile(dataset_json_file):
            raise NNWError(f"{os.path.abspath(dataset_json_file)} not found: pass the fold folder of a training "
                           f"(nnUNet_results/DatasetXXX_Name/TRAINER__PLANS__CONFIG/fold_N).")
        dataset_json = load_json(dataset_json_file)
        reference = Reference(os.path.abspath(args.ref), dataset_classes(dataset_json, dataset_json_file),
                              dataset_json["file_ending"])
        inputs = os.path.abspath(args.inputs)
        n_cases = len([f for f in os.listdir(inputs) if f.endswith("_0000" + reference.file_ending)]) \
            if os.path.isdir(inputs) else 0
        if n_cases == 0:
            raise NNWError(f"{inputs} holds no images named CASE_0000{reference.file_ending}; pass the folder the "
                           f"benchmark linked the validation images into (benchmarks/work/inputs/...).")
        root, dataset_id, configuration, trainer, plans, fold = model_copy(args.fold_folder, work)
        # timing and precision are read from the trained fold; prediction runs from the copy
        model = Model(dataset_id, configuration, int(fold), trainer, os.path.abspath(args.fold_folder),
                      predict_args=["--disable_tta"] + plans_args(plans))
        env = dict(os.environ, nnUNet_results=root, nnUNet_compile="f")
        env.setdefault("nnUNet_raw", os.path.join(work, "raw"))
        env.setdefault("nnUNet_preprocessed", os.path.join(work, "preprocessed"))
        row = predict_and_score(model, inputs, os.path.join(work, "predictions"), n_cases, reference,
                                args.per_case, env, os.path.join(work, "predict.log"))
    except NNWError as e:
        print(f"second_network_eval: {e}", file=sys.stderr)
        return 1
    print(f"second network (network_b) of {args.fold_folder}: {row['n_cases']} cases, mean Dice "
          f"{row['mean_dice']:.3f}, per class " + ", ".join(f"{c} {d:.3f}" for c, d in row["dice"].items())
          + f"; mean HD95 {row['mean_hd95']:.1f}; per-case {args.per_case}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
