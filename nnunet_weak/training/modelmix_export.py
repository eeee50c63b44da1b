"""Export the auxiliary network of a ModelMix run as a standard nnU-Net fold of the auxiliary dataset, so that
``nnUNetv2_predict`` predicts the auxiliary task too (one ModelMix run trains both tasks' models).

    nnunet_weak_modelmix_export -d 801 -c 2d -f 0 [-tr nnUNetTrainerModelMix] [-p nnUNetPlans] [--overwrite]
    nnUNetv2_predict -i IN -o OUT -d <aux> -p nnUNetPlans_mm801 -c 2d -f 0 -tr nnUNetTrainerModelMixAux

The fold is written to ``$nnUNet_results/<aux>/nnUNetTrainerModelMixAux__<aux plans>__<configuration>/fold_<f>``
with the auxiliary dataset's moved plans and dataset.json, as they were at training time (saved in the
checkpoint). An existing model there is never replaced without ``--overwrite``.
"""
import argparse
import os
from os.path import isfile, join
from typing import Optional

import torch
from batchgenerators.utilities.file_and_folder_operations import load_json, maybe_mkdir_p, save_json
from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
from nnunetv2.utilities.file_path_utilities import get_output_folder

from nnunet_weak.networks.wrappers import plain_state_dict
from nnunet_weak.training.weak_base import EXTRA_STATE_KEY
from nnunet_weak.utilities.checkpoint_io import load_checkpoint_file
from nnunet_weak.utilities.env import require_env
from nnunet_weak.utilities.errors import NNWError

AUX_TRAINER = "nnUNetTrainerModelMixAux"


def _write_json_once(obj: dict, path: str, overwrite: bool) -> None:
    if isfile(path) and load_json(path) != obj and not overwrite:
        raise NNWError(f"{path} exists and differs from the auxiliary model's; pass --overwrite to replace it.")
    save_json(obj, path, sort_keys=False)


def export_aux(checkpoint_file: str, overwrite: bool = False) -> str:
    """Write the auxiliary network of a ModelMix checkpoint as a fold of the auxiliary dataset; returns that
    fold's folder."""
    if not isfile(checkpoint_file):
        raise NNWError(f"{checkpoint_file} not found; train the ModelMix fold first (nnUNetv2_train ... "
                       f"-tr nnUNetTrainerModelMix) or pass --checkpoint.")
    checkpoint = load_checkpoint_file(checkpoint_file, purpose="--checkpoint")
    extra = checkpoint.get(EXTRA_STATE_KEY, {})
    if "modelmix_aux" not in extra or "modelmix_aux_network" not in extra:
        raise NNWError(f"{checkpoint_file} holds no ModelMix auxiliary network (written by trainer "
                       f"{checkpoint.get('trainer_name')!r}); pass a checkpoint of nnUNetTrainerModelMix.")
    aux = extra["modelmix_aux"]
    folder = get_output_folder(aux["dataset"], AUX_TRAINER, aux["plans_name"], aux["configuration"], aux["fold"])
    target = join(folder, "checkpoint_final.pth")
    if isfile(target) and not overwrite:
        raise NNWError(f"{target} exists; pass --overwrite to replace it with the auxiliary network of "
                       f"{checkpoint_file}.")
    maybe_mkdir_p(folder)
    base = os.path.dirname(folder)
    plans = {k: v for k, v in aux["plans"].items() if k != "continue_training"}
    _write_json_once(plans, join(base, "plans.json"), overwrite)
    _write_json_once(aux["dataset_json"], join(base, "dataset.json"), overwrite)
    torch.save({
        "network_weights": plain_state_dict(extra["modelmix_aux_network"]),
        "optimizer_state": None,
        "grad_scaler_state": None,
        "current_epoch": checkpoint.get("current_epoch"),
        "init_args": {"plans": plans, "configuration": aux["configuration"], "fold": aux["fold"],
                      "dataset_json": aux["dataset_json"], "device": torch.device("cpu")},
        "trainer_name": AUX_TRAINER,
        "inference_allowed_mirroring_axes": checkpoint.get("inference_allowed_mirroring_axes"),
        "exported_from": os.path.abspath(checkpoint_file),
    }, target)
    return folder


def main(argv: Optional[list] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-d", required=True, help="target dataset name or id (the one ModelMix was trained on)")
    parser.add_argument("-c", required=True, help="configuration")
    parser.add_argument("-f", required=True, help="fold")
    parser.add_argument("-tr", default="nnUNetTrainerModelMix", help="trainer (default nnUNetTrainerModelMix)")
    parser.add_argument("-p", default="nnUNetPlans", help="plans of the target (default nnUNetPlans)")
    parser.add_argument("--checkpoint", default="checkpoint_final.pth", help="checkpoint file name in the fold")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing exported model")
    args = parser.parse_args(argv)
    require_env("nnUNet_results", "to find the ModelMix model and write the auxiliary one")
    fold = args.f if args.f == "all" else int(args.f)
    source = get_output_folder(maybe_convert_to_dataset_name(args.d), args.tr, args.p, args.c, fold)
    folder = export_aux(join(source, args.checkpoint), overwrite=args.overwrite)
    print(f"wrote the auxiliary model to {folder}")


if __name__ == "__main__":
    main()
