"""CPU-sized configurations ``2d_lite`` and ``3d_lite`` added to a dataset's nnU-Net plans.

Each inherits from nnU-Net's own configuration (``2d`` / ``3d_fullres``: same spacing, normalisation and
preprocessed data) and only shrinks the patch, the network width/depth and the batch, so that one training
iteration costs well under a second on a 2-core CPU. Usage, after ``nnUNetv2_plan_and_preprocess``:

    nnunet_weak_add_lite -d 801
    nnUNetv2_train 801 2d_lite 0 -tr nnUNetTrainerPCE -device cpu
"""
import argparse
import json
import math
import os
import sys
from copy import deepcopy
from typing import List, Optional

from nnunet_weak.utilities.env import require_env
from nnunet_weak.utilities.errors import NNWError

# the per-stage depth entry of each U-Net family's arch_kwargs
PER_STAGE = {"PlainConvUNet": "n_conv_per_stage", "ResidualEncoderUNet": "n_blocks_per_stage"}
DEFAULTS = {
    # name: (parent, max patch voxels, batch size, base features, max features, max stages)
    "2d_lite": ("2d", 128 * 128, 12, 16, 256, 5),
    "3d_lite": ("3d_fullres", 16 * 96 * 96, 2, 16, 256, 5),
}


def lite_configuration(parent_name: str, parent: dict, max_patch_voxels: int, batch_size: int,
                       base_features: int = 16, max_features: int = 256, max_stages: int = 5) -> dict:
    """A configuration dict that inherits from ``parent_name`` with a smaller U-Net of the same family
    (``PlainConvUNet``, or ``ResidualEncoderUNet`` from nnU-Net's ResEnc presets, which keeps its residual blocks per
    stage).

    The first ``min(max_stages, parent stages)`` stages keep the parent's strides and kernel sizes; the patch is
    the parent's, scaled isotropically (in voxels) to at most ``max_patch_voxels`` and rounded to a multiple of
    the network's total stride per axis; features double from ``base_features`` up to ``max_features``.
    """
    arch = deepcopy(parent["architecture"])
    kwargs = arch["arch_kwargs"]
    family = arch["network_class_name"].split(".")[-1]
    if family not in PER_STAGE:
        raise NNWError(f"configuration {parent_name!r} uses {arch['network_class_name']}; the lite "
                       f"configurations shrink nnU-Net's {' and '.join(PER_STAGE)} plans (the default planner's "
                       f"and the ResEnc presets').")
    n = min(max_stages, kwargs["n_stages"])
    strides = [list(s) for s in kwargs["strides"][:n]]
    ndim = len(parent["patch_size"])
    total_stride = [math.prod(s[d] for s in strides) for d in range(ndim)]

    parent_patch = parent["patch_size"]
    scale = min(1.0, (max_patch_voxels / math.prod(parent_patch)) ** (1.0 / ndim))
    patch = []
    for d in range(ndim):
        multiple = max(1, int(parent_patch[d] * scale) // total_stride[d])
        patch.append(multiple * total_stride[d])

    kwargs.update({
        "n_stages": n,
        "features_per_stage": [min(base_features * 2 ** i, max_features) for i in range(n)],
        "kernel_sizes": [list(k) for k in kwargs["kernel_sizes"][:n]],
        "strides": strides,
        PER_STAGE[family]: list(kwargs[PER_STAGE[family]][:n]),
        "n_conv_per_stage_decoder": list(kwargs["n_conv_per_stage_decoder"][:n - 1]),
    })
    return {
        "inherits_from": parent_name,
        "patch_size": patch,
        "batch_size": batch_size,
        "architecture": arch,
    }


def add_lite_configurations(plans_file: str, overwrite: bool = False, settings: Optional[dict] = None) -> List[str]:
    """Add the lite configurations to ``plans_file`` in place; returns the names added or updated.

    A lite configuration whose parent is missing is skipped (e.g. no ``3d_fullres`` for 2D datasets). An
    existing lite configuration that differs from the new one is only replaced with ``overwrite``.
    """
    if not os.path.isfile(plans_file):
        raise NNWError(f"plans file {plans_file} not found; run `nnUNetv2_plan_and_preprocess -d <id> -c 2d` "
                       f"(or `nnUNetv2_plan_experiment`) first.")
    with open(plans_file) as f:
        plans = json.load(f)
    configs = plans["configurations"]
    changed = []
    for name, (parent, voxels, batch, base, top, stages) in (settings or DEFAULTS).items():
        if parent not in configs:
            continue
        new = lite_configuration(parent, _resolved(configs, parent), voxels, batch, base, top, stages)
        if name in configs and configs[name] != new:
            if not overwrite:
                raise NNWError(f"{plans_file} already has a different {name!r} configuration; pass --overwrite "
                               f"to replace it.")
        if configs.get(name) != new:
            configs[name] = new
            changed.append(name)
    if changed:
        with open(plans_file, "w") as f:
            json.dump(plans, f, indent=4, sort_keys=False)
    return changed


def _resolved(configs: dict, name: str) -> dict:
    """A configuration with nnU-Net's ``inherits_from`` chain applied (shallow update, like PlansManager)."""
    config = deepcopy(configs[name])
    if "inherits_from" in config:
        base = _resolved(configs, config.pop("inherits_from"))
        base.update(config)
        config = base
    return config


def plans_file_for(dataset: str, plans_name: str = "nnUNetPlans") -> str:
    preprocessed = require_env("nnUNet_preprocessed", "to find the dataset's plans")
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    try:
        name = maybe_convert_to_dataset_name(dataset)
    except RuntimeError:
        raise NNWError(f"dataset {dataset!r} not found in nnUNet_raw or nnUNet_preprocessed "
                       f"({preprocessed}); check the id and run nnUNetv2_plan_and_preprocess first.") from None
    return os.path.join(preprocessed, name, plans_name + ".json")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-d", required=True, help="dataset id or name")
    parser.add_argument("-p", default="nnUNetPlans", help="plans identifier (default nnUNetPlans)")
    parser.add_argument("--batch-2d", type=int, default=DEFAULTS["2d_lite"][2])
    parser.add_argument("--patch-voxels-2d", type=int, default=DEFAULTS["2d_lite"][1])
    parser.add_argument("--batch-3d", type=int, default=DEFAULTS["3d_lite"][2])
    parser.add_argument("--patch-voxels-3d", type=int, default=DEFAULTS["3d_lite"][1])
    parser.add_argument("--overwrite", action="store_true", help="replace existing, different lite configurations")
    args = parser.parse_args(argv)
    settings = {
        "2d_lite": ("2d", args.patch_voxels_2d, args.batch_2d, *DEFAULTS["2d_lite"][3:]),
        "3d_lite": ("3d_fullres", args.patch_voxels_3d, args.batch_3d, *DEFAULTS["3d_lite"][3:]),
    }
    plans_file = plans_file_for(args.d, args.p)
    changed = add_lite_configurations(plans_file, args.overwrite, settings)
    with open(plans_file) as f:
        configs = json.load(f)["configurations"]
    for name in settings:
        if name in configs:
            c = configs[name]
            print(f"{name}: patch {c['patch_size']}, batch {c['batch_size']}, features "
                  f"{c['architecture']['arch_kwargs']['features_per_stage']}"
                  f"{' (added)' if name in changed else ' (unchanged)'}")
        else:
            print(f"{name}: skipped, the plans have no {settings[name][0]!r} configuration")
    plans_option = "" if args.p == "nnUNetPlans" else f" -plans_name {args.p}"
    print(f"plans: {plans_file}. The lite configurations reuse their parent's preprocessed data (2d, 3d_fullres); "
          f"if that is missing run `nnUNetv2_preprocess -d {args.d}{plans_option} -c 2d`.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
