"""Pair a target dataset A with an auxiliary dataset B for ModelMix: B gets A's plans, preprocessed.

ModelMix trains one network per dataset and mixes their encoder parameters (theta = lambda theta_A +
(1 - lambda) theta_B). That only works when both networks are built from *identical* plans: same spacing, patch
size, batch size and architecture kwargs, so that the two encoders line up tensor for tensor. Only the first
convolution (input channels) and the segmentation heads (classes) may differ, and the trainer leaves those out of
the mixing pool. This command gives B a copy of A's plans and preprocesses B with it. Usage:

    nnUNetv2_plan_and_preprocess -d 801 -c 2d -np 1 -npfp 1
    nnunet_weak_modelmix_pair -t 801 -a 802              # add -c 2d_lite after `nnunet_weak_add_lite -d 801`
    nnUNetv2_train 801 2d 0 -tr nnUNetTrainerModelMix -device cpu

What it does (the stock-CLI equivalent is `nnUNetv2_extract_fingerprint -d 802`,
`nnUNetv2_move_plans_between_datasets -s 801 -t 802 -sp nnUNetPlans -tp nnUNetPlans_mm801`,
`nnUNetv2_preprocess -d 802 -plans_name nnUNetPlans_mm801 -c 2d`, plus the fixes below):

1. checks that A is planned and preprocessed for the requested configurations, that B exists in nnUNet_raw, that
   B != A and that both have the same dimensionality (2D or 3D images);
2. extracts B's fingerprint if it is missing;
3. moves A's plans to B as ``<plans>_mm<A id>`` with nnU-Net's ``move_plans_between_datasets``, then fixes what
   the move leaves inconsistent with B: the intensity properties and the per-channel ``normalization_schemes`` /
   ``use_mask_for_norm`` lists are A's, so they have A's channel count (an auxiliary dataset with more channels
   would crash nnU-Net's preprocessor with an IndexError). Every data identifier is made to start with the new
   plans name, so B's data for these plans never lands in the folder of B's own ``nnUNetPlans``;
4. preprocesses B with these plans (for configurations that inherit their data from another one, such as
   ``2d_lite``, the configuration that owns the data identifier is preprocessed);
5. writes ``$nnUNet_preprocessed/<A>/modelmix.json``, which the trainer reads through :func:`read_pairing`.

Re-running with the same auxiliary dataset is safe and gives the same result. Pairing A with a different
auxiliary dataset, or replacing a plans file this command did not write, needs ``--overwrite``.
"""
import argparse
import json
import os
import shutil
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from nnunet_weak.planning.lite import DEFAULTS as LITE_DEFAULTS
from nnunet_weak.planning.pairing_io import (DEFAULT_PLANS, MODELMIX_FILE, PAIRING_STAMP, _dataset_name,
                                             _load_json, _save_json, aux_plans_name, owner_configuration)
from nnunet_weak.utilities.env import require_env
from nnunet_weak.utilities.errors import NNWError

# -------------------------------------------------------------------------------------------- plan inspection


def spatial_dims_of_fingerprint(fingerprint: dict) -> int:
    """2 for a dataset of 2D images, else 3, with nnU-Net's own criterion.

    nnU-Net reads 2D images as volumes with one slice along a dummy axis of huge spacing (999 x the in-plane
    spacing), and its planner only makes 3D configurations when the median shape along the lowest-resolution axis
    is not 1. Same test here, on the fingerprint's median spacing and shape.
    """
    spacing = np.median(np.asarray(fingerprint["spacings"], dtype=float), 0)
    shape = np.median(np.asarray(fingerprint["shapes_after_crop"], dtype=float), 0)
    return 2 if shape[int(np.argmax(spacing))] == 1 else 3


def spatial_dims_of_plans(plans: dict) -> int:
    """Same criterion on planned data (``original_median_shape_after_transp`` puts the lowest-res axis first)."""
    return 2 if plans["original_median_shape_after_transp"][0] == 1 else 3


def num_channels(dataset_json: dict) -> int:
    return len(dataset_json["channel_names"] if "channel_names" in dataset_json else dataset_json["modality"])


def planned_normalization(dataset_json: dict, fingerprint: dict) -> Tuple[List[str], List[bool]]:
    """Normalisation schemes and mask flags nnU-Net's planner would choose for a dataset.

    Same rule as ``ExperimentPlanner.determine_normalization_scheme_and_whether_mask_is_used_for_norm``: the
    scheme comes from the channel name ("CT" -> CTNormalization, ...; z-score otherwise), and the nonzero mask is
    used only when cropping to the nonzero region removed more than a quarter of the image.
    """
    from nnunetv2.preprocessing.normalization.map_channel_name_to_normalization import get_normalization_scheme
    names = dataset_json["channel_names"] if "channel_names" in dataset_json else dataset_json["modality"]
    schemes = [get_normalization_scheme(names[k]) for k in sorted(names, key=int)]
    if fingerprint["median_relative_size_after_cropping"] < 3 / 4.:
        masks = [bool(s.leaves_pixels_outside_mask_at_zero_if_use_mask_for_norm_is_true) for s in schemes]
    else:
        masks = [False] * len(schemes)
    return [s.__name__ for s in schemes], masks


def fix_moved_plans(plans: dict, plans_name: str, aux_dataset_json: dict, aux_fingerprint: dict) -> List[str]:
    """Make plans moved from A to B consistent with B, in place; returns warnings for the user.

    * ``foreground_intensity_properties_per_channel`` becomes B's (from B's fingerprint): those are statistics of
      the images being normalised (CTNormalization clips and scales with them), and B's have B's channel count.
    * Per configuration, ``normalization_schemes`` / ``use_mask_for_norm`` keep A's entries for the channels both
      datasets have (the plans stay A's) and are cut to B's channel count, or padded with what nnU-Net would plan
      for B's extra channels.
    * Every ``data_identifier`` starts with ``<plans_name>_``. nnU-Net's move already renames them when the plans
      name changes, but only by a prefix test on the source plans name; this makes the guarantee explicit.
    """
    n = num_channels(aux_dataset_json)
    properties = aux_fingerprint["foreground_intensity_properties_per_channel"]
    if len(properties) != n:
        raise NNWError(f"the fingerprint of {plans['dataset_name']} has intensity statistics for {len(properties)} "
                       f"channel(s) but its dataset.json lists {n}; the fingerprint is stale. Recompute it: "
                       f"`nnUNetv2_extract_fingerprint -d {plans['dataset_name']} -np 1 --clean`.")
    plans["foreground_intensity_properties_per_channel"] = {str(k): v for k, v in properties.items()}
    plans.pop("foreground_intensity_properties_by_modality", None)  # old key; PlansManager would not read ours

    schemes, masks = planned_normalization(aux_dataset_json, aux_fingerprint)
    warnings = []
    for name, config in plans["configurations"].items():
        for key, planned in (("normalization_schemes", schemes), ("use_mask_for_norm", masks)):
            if key in config:  # inheriting configurations get the fixed list from their parent
                values = list(config[key])
                config[key] = values[:n] + planned[len(values):n]
        if "normalization_schemes" in config:
            for c, (kept, own) in enumerate(zip(config["normalization_schemes"], schemes)):
                if kept != own:
                    warnings.append(f"configuration {name!r}, channel {c}: keeping the target's {kept} although "
                                    f"nnU-Net would normalise this auxiliary channel with {own}")
        if "data_identifier" in config and not config["data_identifier"].startswith(plans_name + "_"):
            config["data_identifier"] = f"{plans_name}_{config['data_identifier']}"
    return warnings


def _data_identifiers(configurations: Dict[str, dict]) -> Dict[str, str]:
    return {c: v["data_identifier"] for c, v in configurations.items() if "data_identifier" in v}


def _check_no_foreign_data_identifiers(aux_folder: str, plans_file: str, identifiers: Dict[str, str]) -> None:
    """No other plans file of B may use one of our data identifiers: preprocessing would overwrite its data."""
    ours = set(identifiers.values())
    for entry in sorted(os.listdir(aux_folder)):
        path = os.path.join(aux_folder, entry)
        if not entry.endswith(".json") or os.path.abspath(path) == os.path.abspath(plans_file):
            continue
        try:
            with open(path) as f:
                other = json.load(f)
        except (OSError, json.JSONDecodeError):
            continue  # not a plans file we can read, so not one nnU-Net could preprocess with either
        if isinstance(other, dict) and isinstance(other.get("configurations"), dict):
            clash = ours & set(_data_identifiers(other["configurations"]).values())
            if clash:
                raise NNWError(f"{path} already uses data identifier(s) {sorted(clash)}, which the ModelMix plans "
                               f"{plans_file} would overwrite; rename the plans (-p) or remove the other file.")


# ------------------------------------------------------------------------------------------------ the command


def pair_datasets(target, aux, configurations: Sequence[str] = ("2d",), plans_identifier: str = DEFAULT_PLANS,
                  overwrite: bool = False, num_processes: int = 1) -> dict:
    """Give the auxiliary dataset ``aux`` the plans of ``target``, preprocess it, and write ``modelmix.json``.

    ``target`` / ``aux`` are dataset ids or names. Returns the pairing written to modelmix.json.
    """
    preprocessed = require_env("nnUNet_preprocessed", "to read the target's plans and write the auxiliary data")
    raw = require_env("nnUNet_raw", "to read the auxiliary dataset's images")
    configurations = list(dict.fromkeys(configurations))  # keep the order, drop repeats
    if not configurations:
        raise NNWError("no configuration requested; pass e.g. -c 2d.")
    if num_processes < 1:
        raise NNWError(f"-np must be at least 1, got {num_processes}.")
    from nnunetv2.utilities.dataset_name_id_conversion import convert_dataset_name_to_id

    target_name = _dataset_name(target, "target dataset (-t)", f"nnUNet_raw ({raw}) and nnUNet_preprocessed "
                                                               f"({preprocessed})")
    aux_name = _dataset_name(aux, "auxiliary dataset (-a)", f"nnUNet_raw ({raw})")
    target_id, aux_id = convert_dataset_name_to_id(target_name), convert_dataset_name_to_id(aux_name)
    if target_id == aux_id:
        raise NNWError(f"the auxiliary dataset must differ from the target, both are {target_name} (-t {target}, "
                       f"-a {aux}); ModelMix needs a second dataset.")

    # 1. the target is planned and preprocessed for every requested configuration
    target_folder = os.path.join(preprocessed, target_name)
    target_plans_file = os.path.join(target_folder, plans_identifier + ".json")
    parents = list(dict.fromkeys(LITE_DEFAULTS[c][0] if c in LITE_DEFAULTS else c for c in configurations))
    if not os.path.isfile(target_plans_file):
        lite = [c for c in configurations if c in LITE_DEFAULTS]
        then = f", then `nnunet_weak_add_lite -d {target_id}`" if lite else ""
        raise NNWError(f"target plans {target_plans_file} not found; run `nnUNetv2_plan_and_preprocess "
                       f"-d {target_id} -c {' '.join(parents)} -np 1 -npfp 1`{then} first.")
    plans_fix = f"re-create it with `nnUNetv2_plan_and_preprocess -d {target_id} -c {' '.join(parents)}`."
    target_plans = _load_json(target_plans_file, "target plans", plans_fix)
    target_configs = target_plans["configurations"]
    for c in configurations:
        if c not in target_configs:
            fix = (f"run `nnunet_weak_add_lite -d {target_id} -p {plans_identifier}`" if c in LITE_DEFAULTS else
                   f"plan it or pick one of {sorted(target_configs)} with -c")
            raise NNWError(f"target plans {target_plans_file} have no configuration {c!r}; {fix}.")
    owners = list(dict.fromkeys(owner_configuration(target_configs, c) for c in configurations))
    for owner in owners:
        data = os.path.join(target_folder, target_configs[owner]["data_identifier"])
        if not os.path.isdir(data) or not os.listdir(data):
            raise NNWError(f"preprocessed target data {data} (configuration {owner!r}) not found; run "
                           f"`nnUNetv2_preprocess -d {target_id} -plans_name {plans_identifier} -c {owner} -np 1`.")

    # 2. the auxiliary dataset is in nnUNet_raw
    aux_raw_json = os.path.join(raw, aux_name, "dataset.json")
    if not os.path.isfile(aux_raw_json):
        raise NNWError(f"auxiliary dataset.json {aux_raw_json} not found; ModelMix preprocesses the auxiliary "
                       f"dataset from its raw images, so it must be an nnU-Net raw dataset in nnUNet_raw.")
    aux_dataset_json = _load_json(aux_raw_json, "auxiliary dataset.json", "fix the file.")

    # refuse to replace someone else's pairing or plans before anything is written
    new_plans = aux_plans_name(plans_identifier, target_name)
    aux_folder = os.path.join(preprocessed, aux_name)
    new_plans_file = os.path.join(aux_folder, new_plans + ".json")
    pairing_file = os.path.join(target_folder, MODELMIX_FILE)
    previous = None
    if os.path.isfile(pairing_file):
        try:
            with open(pairing_file) as f:
                previous = json.load(f)
        except json.JSONDecodeError:
            previous = {}
        if not isinstance(previous, dict):
            previous = {}
        if previous.get("aux_dataset") != aux_name and not overwrite:
            raise NNWError(f"{pairing_file} already pairs {target_name} with {previous.get('aux_dataset')!r}; pass "
                           f"--overwrite to pair it with {aux_name} instead.")
    stamp = {"target_dataset": target_name, "target_plans": plans_identifier}
    if os.path.isfile(new_plans_file) and not overwrite:
        existing = _load_json(new_plans_file, "plans", "remove it or pass --overwrite.")
        if not isinstance(existing, dict) or existing.get(PAIRING_STAMP) != stamp:
            raise NNWError(f"{new_plans_file} exists but was not made by nnunet_weak_modelmix_pair from "
                           f"{target_name}/{plans_identifier}; pass --overwrite to replace it (and its data).")

    # 3. fingerprint of B, then A's plans moved to B and fixed
    fingerprint_file = os.path.join(aux_folder, "dataset_fingerprint.json")
    if not os.path.isfile(fingerprint_file):
        from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprint_dataset
        print(f"Extracting the fingerprint of {aux_name} ...")
        extract_fingerprint_dataset(aux_id, num_processes=num_processes, check_dataset_integrity=False,
                                    clean=True, verbose=False)
    aux_fingerprint = _load_json(fingerprint_file, "fingerprint",
                                 f"recompute it: `nnUNetv2_extract_fingerprint -d {aux_id} -np 1 --clean`.")
    target_fingerprint_file = os.path.join(target_folder, "dataset_fingerprint.json")
    if os.path.isfile(target_fingerprint_file):
        target_dims = spatial_dims_of_fingerprint(_load_json(target_fingerprint_file, "fingerprint", plans_fix))
        target_source = target_fingerprint_file
    else:
        target_dims, target_source = spatial_dims_of_plans(target_plans), target_plans_file
    aux_dims = spatial_dims_of_fingerprint(aux_fingerprint)
    if aux_dims != target_dims:
        raise NNWError(f"the target has {target_dims}D images ({target_source}) but the auxiliary dataset has "
                       f"{aux_dims}D images ({fingerprint_file}); ModelMix needs two datasets of the same "
                       f"dimensionality.")

    from nnunetv2.experiment_planning.plans_for_pretraining.move_plans_between_datasets import \
        move_plans_between_datasets
    move_plans_between_datasets(target_name, aux_name, plans_identifier, new_plans)
    moved = _load_json(new_plans_file, "plans", "re-run this command.")
    warnings = fix_moved_plans(moved, new_plans, aux_dataset_json, aux_fingerprint)
    moved[PAIRING_STAMP] = stamp
    _check_no_foreign_data_identifiers(aux_folder, new_plans_file, _data_identifiers(moved["configurations"]))
    _save_json(moved, new_plans_file)
    for w in warnings:
        print(f"WARNING: {w}")
    # nnU-Net's preprocessor reads dataset.json from the preprocessed folder; plan_experiment normally copies it
    # there, the move does not
    shutil.copy(aux_raw_json, os.path.join(aux_folder, "dataset.json"))

    # 4. preprocess B with A's plans
    from nnunetv2.experiment_planning.plan_and_preprocess_api import preprocess_dataset
    preprocess_dataset(aux_id, new_plans, owners, [num_processes] * len(owners), verbose=False)

    # 5. what the trainer reads; a re-run with the same aux and plans keeps the configurations paired earlier
    pairing = {"aux_dataset": aux_name, "aux_plans": new_plans, "target_plans": plans_identifier,
               "configurations": configurations}
    if previous and previous.get("aux_dataset") == aux_name and previous.get("aux_plans") == new_plans \
            and isinstance(previous.get("configurations"), list):
        pairing["configurations"] = list(dict.fromkeys(list(previous["configurations"]) + configurations))
    _save_json(pairing, pairing_file)
    print(f"Paired {target_name} with {aux_name}: plans {new_plans_file}, data "
          f"{', '.join(os.path.join(aux_folder, moved['configurations'][o]['data_identifier']) for o in owners)}, "
          f"pairing {pairing_file}.")
    return pairing


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="nnunet_weak_modelmix_pair", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-t", required=True, help="target dataset id or name (the one passed to nnUNetv2_train)")
    parser.add_argument("-a", required=True, help="auxiliary dataset id or name (must be in nnUNet_raw)")
    parser.add_argument("-c", action="extend", nargs="+", default=None,
                        help="configuration(s) to pair; repeatable (default: 2d)")
    parser.add_argument("-p", default=DEFAULT_PLANS, help=f"target plans identifier (default {DEFAULT_PLANS})")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a pairing with another auxiliary dataset, or plans this command did not write")
    parser.add_argument("-np", type=int, default=1,
                        help="processes for fingerprint extraction and preprocessing (default 1)")
    args = parser.parse_args(argv)
    pair_datasets(args.t, args.a, args.c or ["2d"], args.p, args.overwrite, args.np)
    return 0


if __name__ == "__main__":
    sys.exit(main())
