"""The CPU-sized lite configurations: derived from nnU-Net's own plans, buildable, never silently replaced."""
import json

import pytest
import torch

from nnunet_weak.planning.lite import add_lite_configurations, lite_configuration
from nnunet_weak.utilities.errors import NNWError


def default_2d(n_stages=6, patch=(256, 224)):
    """A 2d configuration shaped like nnU-Net's default plan for ACDC."""
    return {
        "data_identifier": "nnUNetPlans_2d", "preprocessor_name": "DefaultPreprocessor", "batch_size": 56,
        "patch_size": list(patch), "spacing": [1.5625, 1.5625], "normalization_schemes": ["ZScoreNormalization"],
        "use_mask_for_norm": [False], "batch_dice": True,
        "architecture": {
            "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
            "arch_kwargs": {
                "n_stages": n_stages, "features_per_stage": [min(32 * 2 ** i, 512) for i in range(n_stages)],
                "conv_op": "torch.nn.modules.conv.Conv2d", "kernel_sizes": [[3, 3]] * n_stages,
                "strides": [[1, 1]] + [[2, 2]] * (n_stages - 1), "n_conv_per_stage": [2] * n_stages,
                "n_conv_per_stage_decoder": [2] * (n_stages - 1), "conv_bias": True,
                "norm_op": "torch.nn.modules.instancenorm.InstanceNorm2d",
                "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
                "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}},
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]},
    }


def test_lite_2d_from_acdc_like_plan():
    lite = lite_configuration("2d", default_2d(), 128 * 128, 12)
    kw = lite["architecture"]["arch_kwargs"]
    assert lite["inherits_from"] == "2d" and lite["batch_size"] == 12
    assert lite["patch_size"] == [128, 112]  # 256x224 scaled by ~0.53, rounded down to multiples of 16
    assert kw["n_stages"] == 5 and kw["features_per_stage"] == [16, 32, 64, 128, 256]
    assert len(kw["strides"]) == len(kw["kernel_sizes"]) == 5 and len(kw["n_conv_per_stage_decoder"]) == 4


def test_lite_from_a_resenc_preset_keeps_the_residual_encoder():
    """nnU-Net's ResEnc presets plan ResidualEncoderUNet (n_blocks_per_stage instead of n_conv_per_stage): the lite
    configuration shrinks it within its family, and the network builds."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    parent = default_2d()
    arch = parent["architecture"]
    arch["network_class_name"] = "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"
    arch["arch_kwargs"]["n_blocks_per_stage"] = [1, 3, 4, 6, 6, 6]
    del arch["arch_kwargs"]["n_conv_per_stage"]
    lite = lite_configuration("2d", parent, 128 * 128, 12)
    kw = lite["architecture"]["arch_kwargs"]
    assert lite["architecture"]["network_class_name"].endswith("ResidualEncoderUNet")
    assert kw["n_blocks_per_stage"] == [1, 3, 4, 6, 6] and "n_conv_per_stage" not in kw
    net = get_network_from_plans(lite["architecture"]["network_class_name"], kw,
                                 lite["architecture"]["_kw_requires_import"], 1, 4, deep_supervision=True)
    assert type(net.encoder).__name__ == "ResidualEncoder"
    arch["network_class_name"] = "some.module.OtherUNet"
    with pytest.raises(NNWError, match="PlainConvUNet and ResidualEncoderUNet"):
        lite_configuration("2d", parent, 128 * 128, 12)


def test_lite_network_builds_and_keeps_small_patches():
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    plans = {"dataset_name": "Dataset999_X", "plans_name": "nnUNetPlans", "original_median_spacing_after_transp": [1, 1, 1],
             "original_median_shape_after_transp": [1, 64, 64], "image_reader_writer": "SimpleITKIO",
             "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
             "configurations": {"2d": default_2d(4, (64, 48))}, "experiment_planner_used": "x",
             "label_manager": "LabelManager", "foreground_intensity_properties_per_channel": {}}
    plans["configurations"]["2d_lite"] = lite_configuration("2d", plans["configurations"]["2d"], 128 * 128, 12)
    assert plans["configurations"]["2d_lite"]["patch_size"] == [64, 48]  # never larger than the parent
    cm = PlansManager(plans).get_configuration("2d_lite")
    assert cm.data_identifier == "nnUNetPlans_2d"  # reuses the parent's preprocessed data
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    net = nnUNetTrainer.build_network_architecture(PlansManager(plans), cm, 1, 4, enable_deep_supervision=False)
    assert net(torch.zeros(2, 1, 64, 48)).shape == (2, 4, 64, 48)


def test_add_lite_in_place_and_refuse_to_replace(tmp_path):
    path = tmp_path / "nnUNetPlans.json"
    path.write_text(json.dumps({"configurations": {"2d": default_2d()}}))
    assert add_lite_configurations(str(path)) == ["2d_lite"]  # no 3d_fullres: 3d_lite skipped
    assert add_lite_configurations(str(path)) == []  # idempotent
    other = {"2d_lite": ("2d", 64 * 64, 4, 16, 256, 5)}
    with pytest.raises(NNWError, match="already has a different '2d_lite'.*--overwrite"):
        add_lite_configurations(str(path), settings=other)
    assert add_lite_configurations(str(path), overwrite=True, settings=other) == ["2d_lite"]
    assert json.loads(path.read_text())["configurations"]["2d_lite"]["batch_size"] == 4
    with pytest.raises(NNWError, match="run `nnUNetv2_plan_and_preprocess"):
        add_lite_configurations(str(tmp_path / "missing.json"))
