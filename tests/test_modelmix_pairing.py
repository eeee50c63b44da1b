"""ModelMix pairing: the auxiliary dataset gets the target's plans, its own data folder and a modelmix.json.

Target A: the 1-channel tiny scribble dataset, planned by the stock CLI (plus ``2d_lite``). Auxiliary B: the same
kind of phantom with a second channel and other labels (background / heart / ignore), so the moved plans have to
be padded to B's channel count. C: a raw dataset that is only used to try a second pairing.
"""
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from conftest import TINY_SHAPE
from nnunet_weak.demo.dataset import write_demo_dataset
from nnunet_weak.experiment import steps
from nnunet_weak.planning.pair_datasets import fix_moved_plans, main, spatial_dims_of_fingerprint
from nnunet_weak.planning.pairing_io import MODELMIX_FILE, owner_configuration, read_pairing
from nnunet_weak.utilities.errors import NNWError

TARGET_ID, AUX_ID, OTHER_ID, FLAT_ID = 971, 972, 973, 974
TARGET, AUX, OTHER, FLAT = (f"Dataset{TARGET_ID}_MMTarget", f"Dataset{AUX_ID}_MMAux", f"Dataset{OTHER_ID}_MMOther",
                            f"Dataset{FLAT_ID}_MMFlat")
AUX_PLANS = f"nnUNetPlans_mm{TARGET_ID}"
AUX_LABELS = {"background": 0, "heart": 1, "ignore": 2}
PATH_VARS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")


def make_two_channel_heart_dataset(folder: str) -> None:
    """Turn a demo dataset into B: add a second channel (inverted intensities) and merge the three heart
    structures into one label, so that channels and label set both differ from the target."""
    images = os.path.join(folder, "imagesTr")
    for name in sorted(os.listdir(images)):
        first = sitk.ReadImage(os.path.join(images, name))
        second = sitk.GetImageFromArray(1.0 - sitk.GetArrayFromImage(first))
        second.CopyInformation(first)
        sitk.WriteImage(second, os.path.join(images, name.replace("_0000.", "_0001.")), useCompression=True)
    labels = os.path.join(folder, "labelsTr")
    for name in sorted(os.listdir(labels)):
        label = sitk.ReadImage(os.path.join(labels, name))
        array = sitk.GetArrayFromImage(label)
        merged = np.select([array == 0, array == 4], [0, AUX_LABELS["ignore"]], AUX_LABELS["heart"]).astype(np.uint8)
        out = sitk.GetImageFromArray(merged)
        out.CopyInformation(label)
        sitk.WriteImage(out, os.path.join(labels, name), useCompression=True)
    path = os.path.join(folder, "dataset.json")
    with open(path) as f:
        dataset_json = json.load(f)
    dataset_json.update({"channel_names": {"0": "MRI", "1": "MRI inverted"}, "labels": AUX_LABELS})
    with open(path, "w") as f:
        json.dump(dataset_json, f, indent=2)


def set_paths(mp, env: dict) -> None:
    for k in PATH_VARS:
        mp.setenv(k, env[k])
    for k in ("NNW_MODELMIX_AUX", "NNW_MODELMIX_AUX_PLANS"):
        mp.delenv(k, raising=False)


def build_paired_env(root: str) -> dict:
    """Environment after `nnunet_weak_modelmix_pair -t 971 -a 972 -c 2d -c 2d_lite` (run through main()) in
    a new nnU-Net tree under ``root``; the trainer tests start from it too."""
    env = steps.nnunet_environment(root, nnUNet_n_proc_DA="1")
    raw = env["nnUNet_raw"]
    write_demo_dataset(os.path.join(raw, TARGET), 3, 0, seed=0, shape=TINY_SHAPE, prefix="a")
    write_demo_dataset(os.path.join(raw, AUX), 3, 0, seed=1, shape=TINY_SHAPE, prefix="b")
    make_two_channel_heart_dataset(os.path.join(raw, AUX))
    write_demo_dataset(os.path.join(raw, OTHER), 2, 0, seed=2, shape=TINY_SHAPE, prefix="c")
    steps.plan_and_preprocess(TARGET_ID, ["2d"], env, os.path.join(root, "setup.log"))  # + nnunet_weak_add_lite
    with pytest.MonkeyPatch.context() as mp:
        set_paths(mp, env)
        assert main(["-t", str(TARGET_ID), "-a", str(AUX_ID), "-c", "2d", "-c", "2d_lite"]) == 0
    return env


@pytest.fixture(scope="module")
def paired(tmp_path_factory):
    return build_paired_env(str(tmp_path_factory.mktemp("modelmix")))


@pytest.fixture
def mm_env(paired, monkeypatch):
    set_paths(monkeypatch, paired)
    return paired


def load(path):
    with open(path) as f:
        return json.load(f)


def files_under(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)


def test_moved_plans_are_the_targets_with_the_aux_channel_count(paired):
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    pre = paired["nnUNet_preprocessed"]
    target = PlansManager(os.path.join(pre, TARGET, "nnUNetPlans.json"))
    moved_file = os.path.join(pre, AUX, AUX_PLANS + ".json")
    moved = PlansManager(moved_file)
    assert moved.dataset_name == AUX and moved.plans_name == AUX_PLANS
    for c in ("2d", "2d_lite"):
        a, b = target.get_configuration(c), moved.get_configuration(c)
        for key in ("patch_size", "batch_size", "spacing", "network_arch_class_name", "network_arch_init_kwargs"):
            assert getattr(a, key) == getattr(b, key), (c, key)
        assert b.data_identifier == f"{AUX_PLANS}_2d"  # 2d_lite shares 2d's data, under the new plans name
        assert len(b.normalization_schemes) == len(b.use_mask_for_norm) == 2  # padded to B's channels
    assert sorted(moved.foreground_intensity_properties_per_channel) == ["0", "1"]
    assert load(moved_file)["modelmix_pairing"] == {"target_dataset": TARGET, "target_plans": "nnUNetPlans"}


def test_aux_data_has_its_own_folder_channels_and_labels(paired):
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
    aux_folder = os.path.join(paired["nnUNet_preprocessed"], AUX)
    data_folder = os.path.join(aux_folder, f"{AUX_PLANS}_2d")
    assert not os.path.exists(os.path.join(aux_folder, "nnUNetPlans_2d"))  # B's own plans' folder stays untouched
    dataset = infer_dataset_class(data_folder)(data_folder)
    assert sorted(dataset.identifiers) == ["b_000", "b_001", "b_002"]
    data, seg, *_ = dataset.load_case("b_000")
    assert data.shape[0] == 2 and data.shape[2:] == tuple(TINY_SHAPE[1:])
    assert set(np.unique(np.asarray(seg))) <= set(AUX_LABELS.values())
    assert os.path.isfile(os.path.join(aux_folder, "dataset.json"))  # copied from raw for nnU-Net's preprocessor


def test_encoders_line_up_tensor_for_tensor(paired, one_thread):
    """The point of the pairing: both networks differ only in the first conv and the segmentation heads."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    pre = paired["nnUNet_preprocessed"]
    nets = []
    for plans_file, channels, heads in ((os.path.join(pre, TARGET, "nnUNetPlans.json"), 1, 4),
                                        (os.path.join(pre, AUX, AUX_PLANS + ".json"), 2, 2)):
        pm = PlansManager(plans_file)
        nets.append(nnUNetTrainer.build_network_architecture(pm, pm.get_configuration("2d_lite"), channels, heads,
                                                             enable_deep_supervision=False))
    a, b = (dict(n.encoder.named_parameters()) for n in nets)
    assert a.keys() == b.keys()
    differing = [k for k in a if a[k].shape != b[k].shape]
    assert differing == ["stages.0.0.convs.0.conv.weight"]
    with torch.no_grad():
        assert nets[1](torch.zeros(1, 2, *TINY_SHAPE[1:])).shape == (1, 2, *TINY_SHAPE[1:])


def test_modelmix_json_and_read_pairing(mm_env):
    target_folder = os.path.join(mm_env["nnUNet_preprocessed"], TARGET)
    expected = {"aux_dataset": AUX, "aux_plans": AUX_PLANS, "target_plans": "nnUNetPlans",
                "configurations": ["2d", "2d_lite"]}
    assert load(os.path.join(target_folder, MODELMIX_FILE)) == expected
    pairing = read_pairing(target_folder)
    assert {k: pairing[k] for k in expected} == expected
    assert pairing["aux_plans_file"] == os.path.join(mm_env["nnUNet_preprocessed"], AUX, AUX_PLANS + ".json")
    assert pairing["source"] == os.path.join(target_folder, MODELMIX_FILE)


def test_rerun_with_same_aux_is_idempotent(mm_env):
    pre = mm_env["nnUNet_preprocessed"]
    watched = [os.path.join(pre, AUX, AUX_PLANS + ".json"), os.path.join(pre, TARGET, MODELMIX_FILE)]
    before = [open(p).read() for p in watched]
    data_before = files_under(os.path.join(pre, AUX, f"{AUX_PLANS}_2d"))
    # only 2d this time: the pairing keeps 2d_lite, whose data is the same folder
    assert main(["-t", TARGET, "-a", AUX]) == 0
    assert [open(p).read() for p in watched] == before
    assert files_under(os.path.join(pre, AUX, f"{AUX_PLANS}_2d")) == data_before


def test_other_aux_needs_overwrite(mm_env):
    pre = mm_env["nnUNet_preprocessed"]
    pairing_file = os.path.join(pre, TARGET, MODELMIX_FILE)
    before = open(pairing_file).read()
    with pytest.raises(NNWError, match="--overwrite") as err:
        main(["-t", str(TARGET_ID), "-a", str(OTHER_ID)])
    assert pairing_file in str(err.value) and AUX in str(err.value)
    assert open(pairing_file).read() == before
    assert not os.path.exists(os.path.join(pre, OTHER))  # refused before writing anything


def test_foreign_plans_file_needs_overwrite(mm_env, tmp_path):
    moved_file = os.path.join(mm_env["nnUNet_preprocessed"], AUX, AUX_PLANS + ".json")
    saved = str(tmp_path / "saved.json")
    shutil.copy(moved_file, saved)
    try:
        plans = load(moved_file)
        del plans["modelmix_pairing"]  # as if someone had moved the plans by hand under our name
        with open(moved_file, "w") as f:
            json.dump(plans, f)
        with pytest.raises(NNWError, match="was not made by nnunet_weak_modelmix_pair"):
            main(["-t", str(TARGET_ID), "-a", str(AUX_ID)])
    finally:
        shutil.copy(saved, moved_file)


@pytest.mark.parametrize("args, message", [
    (["-t", str(TARGET_ID), "-a", TARGET], "must differ from the target"),
    (["-t", str(TARGET_ID), "-a", "979"], "auxiliary dataset (-a) '979' not found"),
    (["-t", str(OTHER_ID), "-a", str(AUX_ID)], f"`nnUNetv2_plan_and_preprocess -d {OTHER_ID} -c 2d -np 1 -npfp 1`"),
    (["-t", str(TARGET_ID), "-a", str(AUX_ID), "-c", "2d_huge"], "have no configuration '2d_huge'"),
    # planned (the tiny images are 3D) but only 2d was preprocessed
    (["-t", str(TARGET_ID), "-a", str(AUX_ID), "-c", "3d_fullres"],
     f"`nnUNetv2_preprocess -d {TARGET_ID} -plans_name nnUNetPlans -c 3d_fullres -np 1`"),
])
def test_clear_one_line_errors(mm_env, args, message):
    with pytest.raises(NNWError) as err:
        main(args)
    assert message in str(err.value) and "\n" not in str(err.value)
    if args[1] == str(OTHER_ID):
        assert os.path.join(mm_env["nnUNet_preprocessed"], OTHER, "nnUNetPlans.json") in str(err.value)


def test_aux_without_raw_dataset_json(mm_env):
    folder = os.path.join(mm_env["nnUNet_raw"], "Dataset975_MMEmpty")
    os.makedirs(folder, exist_ok=True)
    try:
        with pytest.raises(NNWError, match="auxiliary dataset.json .*Dataset975_MMEmpty/dataset.json not found"):
            main(["-t", str(TARGET_ID), "-a", "975"])
    finally:
        shutil.rmtree(folder)


def test_dimensionality_mismatch(mm_env):
    """A dataset of 2D images (one slice, nnU-Net's dummy axis) cannot be paired with the 3D target."""
    write_demo_dataset(os.path.join(mm_env["nnUNet_raw"], FLAT), 2, 0, seed=3, shape=(1, 48, 48), prefix="f")
    folder = os.path.join(mm_env["nnUNet_preprocessed"], FLAT)
    os.makedirs(folder, exist_ok=True)
    # the fingerprint nnU-Net extracts from two 1 x 48 x 48 images (written here to skip the extraction)
    fingerprint = {"spacings": [[1498.5, 1.5, 1.5]] * 2, "shapes_after_crop": [[1, 48, 48]] * 2,
                   "foreground_intensity_properties_per_channel": {"0": {}},
                   "median_relative_size_after_cropping": 1.0}
    with open(os.path.join(folder, "dataset_fingerprint.json"), "w") as f:
        json.dump(fingerprint, f)
    with pytest.raises(NNWError, match="target has 3D images .* auxiliary dataset has 2D images"):
        main(["-t", str(TARGET_ID), "-a", str(FLAT_ID), "--overwrite"])  # past the "paired with 972" check


def test_cli_prints_one_line(mm_env):
    result = subprocess.run([steps._console("nnunet_weak_modelmix_pair"), "-t", str(OTHER_ID), "-a", str(AUX_ID)],
                            env={**os.environ}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("nnunet_weak error: target plans") and "nnUNetv2_plan_and_preprocess" in last


def test_read_pairing_errors_and_environment_override(mm_env, monkeypatch, tmp_path):
    pre = mm_env["nnUNet_preprocessed"]
    target_folder = os.path.join(pre, TARGET)

    missing = tmp_path / "Dataset976_NoPair"
    missing.mkdir()
    with pytest.raises(NNWError, match="modelmix.json not found; run `nnunet_weak_modelmix_pair"):
        read_pairing(str(missing))
    (missing / MODELMIX_FILE).write_text("{")
    with pytest.raises(NNWError, match="not valid JSON"):
        read_pairing(str(missing))
    (missing / MODELMIX_FILE).write_text(json.dumps({"aux_dataset": 3, "aux_plans": "p", "target_plans": "q",
                                                     "configurations": ["2d"]}))
    with pytest.raises(NNWError, match="malformed .*'aux_dataset'.*nnunet_weak_modelmix_pair"):
        read_pairing(str(missing))

    # the same pairing named by the environment keeps the file's configurations
    monkeypatch.setenv("NNW_MODELMIX_AUX", str(AUX_ID))
    monkeypatch.setenv("NNW_MODELMIX_AUX_PLANS", AUX_PLANS)
    pairing = read_pairing(target_folder)
    assert (pairing["aux_dataset"], pairing["aux_plans"]) == (AUX, AUX_PLANS)
    assert pairing["configurations"] == ["2d", "2d_lite"] and pairing["source"].startswith("environment")

    # another dataset without these plans
    monkeypatch.setenv("NNW_MODELMIX_AUX", OTHER)
    with pytest.raises(NNWError, match=f"auxiliary plans .*{OTHER}/{AUX_PLANS}.json not found"):
        read_pairing(target_folder)

    monkeypatch.setenv("NNW_MODELMIX_AUX_PLANS", "plans.json")
    with pytest.raises(NNWError, match="NNW_MODELMIX_AUX_PLANS"):
        read_pairing(target_folder)

    # the environment alone, without modelmix.json: default plans name, configurations found from the data
    monkeypatch.delenv("NNW_MODELMIX_AUX_PLANS")
    monkeypatch.setenv("NNW_MODELMIX_AUX", str(AUX_ID))
    pairing_file = os.path.join(target_folder, MODELMIX_FILE)
    aside = str(tmp_path / "aside.json")
    shutil.move(pairing_file, aside)
    try:
        pairing = read_pairing(target_folder)
    finally:
        shutil.move(aside, pairing_file)
    assert (pairing["aux_dataset"], pairing["aux_plans"], pairing["target_plans"]) == (AUX, AUX_PLANS,
                                                                                         "nnUNetPlans")
    assert pairing["configurations"] == ["2d", "2d_lite"] and pairing["source"] == "environment (NNW_MODELMIX_AUX)"


def test_fix_moved_plans_pads_and_cuts_channels():
    def plans(n):
        return {"dataset_name": "Dataset999_B", "foreground_intensity_properties_per_channel": {"0": {"mean": 9}},
                "configurations": {
                    "3d_fullres": {"data_identifier": "nnUNetPlans_mm001_3d_fullres",
                                   "normalization_schemes": ["CTNormalization"] * n, "use_mask_for_norm": [True] * n},
                    "3d_lite": {"inherits_from": "3d_fullres", "batch_size": 2},
                    "odd": {"data_identifier": "custom", "normalization_schemes": ["CTNormalization"] * n,
                            "use_mask_for_norm": [False] * n}}}

    def aux(n):
        dataset_json = {"channel_names": {str(i): ["CT", "T2", "noNorm"][i] for i in range(n)}}
        fingerprint = {"median_relative_size_after_cropping": 0.5,
                       "foreground_intensity_properties_per_channel": {str(i): {"mean": i} for i in range(n)}}
        return dataset_json, fingerprint

    wider = plans(1)
    warnings = fix_moved_plans(wider, "nnUNetPlans_mm001", *aux(3))
    config = wider["configurations"]["3d_fullres"]
    assert config["normalization_schemes"] == ["CTNormalization", "ZScoreNormalization", "NoNormalization"]
    assert config["use_mask_for_norm"] == [True, True, False]  # nnU-Net's rule for B's extra channels
    assert wider["foreground_intensity_properties_per_channel"] == {"0": {"mean": 0}, "1": {"mean": 1},
                                                                    "2": {"mean": 2}}
    assert "normalization_schemes" not in wider["configurations"]["3d_lite"]  # inherits the fixed list
    assert wider["configurations"]["odd"]["data_identifier"] == "nnUNetPlans_mm001_custom"
    assert warnings == []

    narrower = plans(2)
    fix_moved_plans(narrower, "nnUNetPlans_mm001", *aux(1))
    assert narrower["configurations"]["3d_fullres"]["normalization_schemes"] == ["CTNormalization"]
    assert narrower["configurations"]["3d_fullres"]["use_mask_for_norm"] == [True]

    dataset_json, fingerprint = aux(2)
    fingerprint["foreground_intensity_properties_per_channel"].pop("1")
    with pytest.raises(NNWError, match="fingerprint .* stale"):
        fix_moved_plans(plans(1), "nnUNetPlans_mm001", dataset_json, fingerprint)


def test_owner_configuration_and_dimensionality():
    configs = {"2d": {"data_identifier": "p_2d"}, "2d_lite": {"inherits_from": "2d"},
               "2d_tiny": {"inherits_from": "2d_lite"}, "own": {"inherits_from": "2d", "data_identifier": "p_own"},
               "loop": {"inherits_from": "loop"}, "orphan": {"inherits_from": "gone"}}
    assert [owner_configuration(configs, c) for c in ("2d", "2d_lite", "2d_tiny", "own")] == ["2d"] * 3 + ["own"]
    with pytest.raises(NNWError, match="loop"):
        owner_configuration(configs, "loop")
    with pytest.raises(NNWError, match="'gone'"):
        owner_configuration(configs, "orphan")
    assert spatial_dims_of_fingerprint({"spacings": [[999.0, 1, 1]], "shapes_after_crop": [[1, 64, 64]]}) == 2
    assert spatial_dims_of_fingerprint({"spacings": [[8.0, 1.5, 1.5]], "shapes_after_crop": [[10, 64, 64]]}) == 3
