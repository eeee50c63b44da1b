"""The ModelMix pairing file and its reading by the trainer: which auxiliary dataset and plans a target is paired
with (``$nnUNet_preprocessed/<target>/modelmix.json``, written by ``nnunet_weak_modelmix_pair``, or the
``NNW_MODELMIX_AUX`` / ``NNW_MODELMIX_AUX_PLANS`` overrides). Kept apart from the pairing command so the trainer
does not import a CLI module."""
import json
import os
from typing import Dict

from nnunet_weak.utilities.env import env_str
from nnunet_weak.utilities.errors import NNWError

MODELMIX_FILE = "modelmix.json"
DEFAULT_PLANS = "nnUNetPlans"
# Top-level key written into the moved plans: which target plans they were copied from. It lets a re-run tell its
# own earlier output (safe to replace) from a plans file someone else wrote under the same name.
PAIRING_STAMP = "modelmix_pairing"
ENV_AUX = "NNW_MODELMIX_AUX"
ENV_AUX_PLANS = "NNW_MODELMIX_AUX_PLANS"


# ------------------------------------------------------------------------------------------------- names, files


def aux_plans_name(target_plans: str, target_dataset: str) -> str:
    """Plans name of A's plans inside B: ``nnUNetPlans`` + target ``Dataset801_X`` -> ``nnUNetPlans_mm801``."""
    from nnunetv2.utilities.dataset_name_id_conversion import convert_dataset_name_to_id
    return f"{target_plans}_mm{convert_dataset_name_to_id(target_dataset):03d}"


def _dataset_name(value, role: str, where: str) -> str:
    """nnU-Net dataset name for an id or name; NNWError naming ``role`` (e.g. "auxiliary dataset (-a)")."""
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    try:
        return maybe_convert_to_dataset_name(value)
    except (RuntimeError, ValueError) as e:
        # nnU-Net's messages span several lines; keep ours to one
        reason = "more than one dataset has this id" if "More than one" in str(e) else "no such dataset"
        raise NNWError(f"{role} {value!r} not found ({reason}); looked in {where}. Give a dataset id such as 801 "
                       f"or a full name such as Dataset801_ACDC.") from None


def _load_json(path: str, what: str, fix: str):
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise NNWError(f"{what} {path} is not valid JSON ({e.msg}, line {e.lineno}); {fix}") from None


def _save_json(obj, path: str) -> None:
    # like nnU-Net's save_json(sort_keys=False): plans stay in nnU-Net's key order, readable next to the originals
    with open(path, "w") as f:
        json.dump(obj, f, indent=4, sort_keys=False)


def owner_configuration(configurations: Dict[str, dict], name: str) -> str:
    """The configuration whose ``data_identifier`` ``name`` uses: ``name`` itself, or the first ancestor along its
    ``inherits_from`` chain that sets one (``2d_lite`` -> ``2d``). That is the one to preprocess."""
    seen = []
    current = name
    while True:
        if current not in configurations:
            raise NNWError(f"configuration {seen[-1] if seen else name!r} inherits from {current!r}, which the plans "
                           f"do not define.")
        if current in seen:
            raise NNWError(f"configurations {' -> '.join(seen + [current])} inherit from each other in a loop.")
        seen.append(current)
        config = configurations[current]
        if "data_identifier" in config:
            return current
        if "inherits_from" not in config:
            raise NNWError(f"configuration {current!r} has no data_identifier and inherits from nothing.")
        current = config["inherits_from"]


def read_pairing(preprocessed_dataset_folder: str) -> dict:
    """The auxiliary dataset paired with the target whose preprocessed folder is given.

    Reads ``<folder>/modelmix.json`` (written by nnunet_weak_modelmix_pair). The environment overrides it:
    ``NNW_MODELMIX_AUX`` (auxiliary dataset id or name) replaces the auxiliary dataset and
    ``NNW_MODELMIX_AUX_PLANS`` its plans name (default ``<target plans>_mm<target id>``). With
    ``NNW_MODELMIX_AUX`` set, modelmix.json is optional.

    Returns ``{"aux_dataset", "aux_plans", "target_plans", "configurations", "aux_plans_file", "source"}``.
    ``configurations`` are those paired by the command; with an environment override to another dataset or plans
    they are the aux plans' configurations whose preprocessed data exists. ``source`` says where the pairing came
    from. Raises NNWError naming the file or variable when something is missing or malformed.
    """
    folder = os.path.abspath(preprocessed_dataset_folder)
    target_name = os.path.basename(folder)
    preprocessed_root = os.path.dirname(folder)
    pairing_file = os.path.join(folder, MODELMIX_FILE)
    fix = f"run `nnunet_weak_modelmix_pair -t {target_name} -a <auxiliary dataset id>`"

    # read here, not at import time: trainers are imported at predict time too, where no pairing exists
    env_aux = env_str(ENV_AUX, bool, "an auxiliary dataset id or name")
    env_plans = env_str(ENV_AUX_PLANS, lambda v: os.sep not in v and not v.endswith(".json"),
                      "a plans name without '.json', e.g. nnUNetPlans_mm801")

    pairing = None
    if os.path.isfile(pairing_file):
        pairing = _validated_pairing(_load_json(pairing_file, "ModelMix pairing", f"{fix} --overwrite."),
                                     pairing_file, target_name, fix)
        source = pairing_file
    elif env_aux is None:
        raise NNWError(f"ModelMix pairing {pairing_file} not found; {fix} first (or set {ENV_AUX}).")

    if env_aux is not None or env_plans is not None:
        if env_aux is not None:
            where = f"nnUNet_raw / nnUNet_preprocessed (environment variable {ENV_AUX})"
            aux_name = _dataset_name(env_aux, f"auxiliary dataset in {ENV_AUX}", where)
        else:
            aux_name = pairing["aux_dataset"]
        target_plans = pairing["target_plans"] if pairing else DEFAULT_PLANS
        aux_plans = env_plans or (pairing["aux_plans"] if pairing and pairing["aux_dataset"] == aux_name
                                  else aux_plans_name(target_plans, target_name))
        same = pairing is not None and (aux_name, aux_plans) == (pairing["aux_dataset"], pairing["aux_plans"])
        names = [n for n, v in ((ENV_AUX, env_aux), (ENV_AUX_PLANS, env_plans)) if v is not None]
        pairing = {"aux_dataset": aux_name, "aux_plans": aux_plans, "target_plans": target_plans,
                   "configurations": pairing["configurations"] if same else None}
        source = f"environment ({', '.join(names)})" + (f" over {pairing_file}" if os.path.isfile(pairing_file)
                                                        else "")

    aux_plans_file = os.path.join(preprocessed_root, pairing["aux_dataset"], pairing["aux_plans"] + ".json")
    if not os.path.isfile(aux_plans_file):
        raise NNWError(f"auxiliary plans {aux_plans_file} not found (pairing from {source}); run "
                       f"`nnunet_weak_modelmix_pair -t {target_name} -a {pairing['aux_dataset']}`.")
    if pairing["configurations"] is None:
        plans = _load_json(aux_plans_file, "auxiliary plans", f"{fix} --overwrite.")
        configs = plans.get("configurations", {})
        aux_folder = os.path.dirname(aux_plans_file)
        pairing["configurations"] = [
            c for c in configs
            if os.path.isdir(os.path.join(aux_folder, configs[owner_configuration(configs, c)]["data_identifier"]))]
    pairing["aux_plans_file"] = aux_plans_file
    pairing["source"] = source
    return pairing


def _validated_pairing(pairing, path: str, target_name: str, fix: str) -> dict:
    def bad(why: str):
        raise NNWError(f"ModelMix pairing {path} is malformed ({why}); {fix} --overwrite.")

    if not isinstance(pairing, dict):
        bad("expected a JSON object")
    for key in ("aux_dataset", "aux_plans", "target_plans"):
        if not isinstance(pairing.get(key), str) or not pairing[key]:
            bad(f"{key!r} must be a non-empty string")
    if not pairing["aux_dataset"].startswith("Dataset"):
        bad(f"aux_dataset {pairing['aux_dataset']!r} is not an nnU-Net dataset name")
    if pairing["aux_dataset"] == target_name:
        bad("aux_dataset is the target itself")
    configs = pairing.get("configurations")
    if not isinstance(configs, list) or not configs or not all(isinstance(c, str) and c for c in configs):
        bad("'configurations' must be a non-empty list of configuration names")
    return {k: pairing[k] for k in ("aux_dataset", "aux_plans", "target_plans", "configurations")}
