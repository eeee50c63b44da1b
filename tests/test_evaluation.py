"""Dense evaluation: metrics checked against hand-computed values, folder evaluation and CLI on tiny NIfTIs."""
import json
import math
import os

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_weak.evaluation.evaluate_dense import evaluate_folder, main
from nnunet_weak.evaluation.metrics import case_metrics, dice, surface_distances
from nnunet_weak.utilities.errors import NNWError


# ----------------------------------------------------------------------------------------------------- metrics
def test_dice_known_masks():
    pred = np.zeros((4, 4), bool)
    ref = np.zeros((4, 4), bool)
    pred[0, :4] = True  # 4 pixels
    ref[0, 1:4] = True
    ref[1, 1:4] = True  # 6 pixels, 3 shared with pred
    assert dice(pred, ref) == pytest.approx(2 * 3 / 10)
    assert dice(np.zeros((3, 3), bool), np.zeros((3, 3), bool)) == 1.0
    assert dice(pred, np.zeros_like(ref)) == 0.0


def test_parallel_slabs_anisotropic():
    # one-voxel-thick slabs are all surface; every voxel is 3 slices = 3 * 2.0 mm from the other slab
    pred = np.zeros((8, 5, 6), bool)
    ref = np.zeros_like(pred)
    pred[2] = True
    ref[5] = True
    hd95, assd = surface_distances(pred, ref, (2.0, 1.0, 1.0))
    assert hd95 == pytest.approx(6.0)
    assert assd == pytest.approx(6.0)


def test_cube_shift_anisotropic():
    # 3x3x3 cubes, pred shifted by one voxel along axis 0 (2 mm). Surfaces: 26 voxels (all but the centre).
    # pred->ref: 16 voxels at 0, 1 (pred voxel at the ref centre) at 1 mm in-plane, 9 (top face) at 2 mm;
    # ref->pred is the mirror image. Pooled 52 distances: 32 x 0, 2 x 1, 18 x 2 -> 95th percentile 2.0.
    ref = np.zeros((9, 9, 9), bool)
    ref[2:5, 2:5, 2:5] = True
    pred = np.roll(ref, 1, axis=0)
    hd95, assd = surface_distances(pred, ref, (2.0, 1.0, 1.0))
    assert hd95 == pytest.approx(2.0)
    assert assd == pytest.approx((1 + 9 * 2) / 26)


def test_hd95_pools_both_directions_like_medpy():
    # pred: a 20-pixel row, ref: its first pixel; x spacing 0.5 mm. pred->ref = 0, 0.5, ..., 9.5; ref->pred = 0.
    # Pooled (medpy): 21 values, 95th percentile at index 19 of sorted -> 9.0 (the directed-max rule gives 9.025).
    pred = np.zeros((3, 20), bool)
    ref = np.zeros_like(pred)
    pred[1, :] = True
    ref[1, 0] = True
    hd95, assd = surface_distances(pred, ref, (1.0, 0.5))
    assert hd95 == pytest.approx(9.0)
    assert assd == pytest.approx((np.arange(20).mean() * 0.5 + 0.0) / 2)


def test_surface_distances_empty_rules():
    empty = np.zeros((4, 4), bool)
    full = np.ones((4, 4), bool)
    assert surface_distances(empty, empty, (1.0, 1.0)) == (0.0, 0.0)
    assert all(math.isnan(v) for v in surface_distances(empty, full, (1.0, 1.0)))
    assert all(math.isnan(v) for v in surface_distances(full, empty, (1.0, 1.0)))
    with pytest.raises(ValueError):
        surface_distances(full, full, (1.0,))


def test_case_metrics_empty_rules():
    ref = np.zeros((6, 6), np.uint8)
    pred = np.zeros_like(ref)
    ref[1:3, 1:3] = 1
    pred[1:3, 1:3] = 1
    ref[4, 4] = 2  # class 2 missed by the prediction
    pred[0, 5] = 3  # class 3 predicted but absent from the reference
    res = case_metrics(pred, ref, {"A": 1, "B": 2, "C": 3, "D": 4}, (1.0, 1.0))
    assert res["A"] == {"dice": 1.0, "hd95": 0.0, "assd": 0.0, "pred_empty": False, "ref_empty": False}
    assert res["B"]["dice"] == 0.0 and math.isnan(res["B"]["hd95"]) and math.isnan(res["B"]["assd"])
    assert res["B"]["pred_empty"] and not res["B"]["ref_empty"]
    assert res["C"]["dice"] == 0.0 and math.isnan(res["C"]["hd95"]) and math.isnan(res["C"]["assd"])
    assert res["C"]["ref_empty"] and not res["C"]["pred_empty"]
    assert res["D"] == {"dice": 1.0, "hd95": 0.0, "assd": 0.0, "pred_empty": False, "ref_empty": False}


# ------------------------------------------------------------------------------------------- folder evaluation
SITK_SPACING = (0.7, 0.8, 2.5)  # x, y, z -> numpy axis order (z, y, x) = (2.5, 0.8, 0.7)
CLASSES = {"LV": 1, "RV": 2}
# case_b LV: ref 3x3x3 box, pred the same box without its last x column (18 voxels, all surface).
# pred->ref: 17 x 0, the pred voxel at the ref centre 0.7 mm; ref->pred: 17 x 0, the 9 voxels of the last
# column 0.7 mm. Pooled 44 values, 10 of them 0.7 -> HD95 0.7.
CASE_B_LV_ASSD = (0.7 / 18 + 9 * 0.7 / 26) / 2


def _write(array: np.ndarray, path: str, spacing=SITK_SPACING) -> None:
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing(spacing)
    sitk.WriteImage(image, path)


@pytest.fixture()
def folders(tmp_path):
    """Two 3D cases (z, y, x) = (6, 8, 8). case_a: LV exact, RV slabs 2 slices (5 mm) apart. case_b: LV 0.8 Dice,
    RV missed."""
    pred_dir, ref_dir = tmp_path / "pred", tmp_path / "ref"
    pred_dir.mkdir()
    ref_dir.mkdir()
    box = np.zeros((6, 8, 8), np.uint8)
    box[1:4, 1:4, 1:4] = 1

    ref_a, pred_a = box.copy(), box.copy()
    ref_a[1, 5:8, :] = 2
    pred_a[3, 5:8, :] = 2
    ref_b, pred_b = box.copy(), box.copy()
    pred_b[1:4, 1:4, 3] = 0
    ref_b[4, 5:7, 5:7] = 2

    for name, pred, ref in (("case_a", pred_a, ref_a), ("case_b", pred_b, ref_b)):
        _write(pred, str(pred_dir / f"{name}.nii.gz"))
        _write(ref, str(ref_dir / f"{name}.nii.gz"))
    return str(pred_dir), str(ref_dir), tmp_path


def _check_expected(res: dict) -> None:
    a, b = res["per_case"]["case_a"], res["per_case"]["case_b"]
    assert a["LV"]["dice"] == 1.0 and a["LV"]["hd95"] == 0.0 and a["LV"]["assd"] == 0.0
    assert a["RV"]["dice"] == 0.0
    assert a["RV"]["hd95"] == pytest.approx(5.0) and a["RV"]["assd"] == pytest.approx(5.0)
    assert b["LV"]["dice"] == pytest.approx(0.8)
    assert b["LV"]["hd95"] == pytest.approx(0.7) and b["LV"]["assd"] == pytest.approx(CASE_B_LV_ASSD)
    assert b["RV"]["pred_empty"] and math.isnan(b["RV"]["hd95"])

    assert res["n_cases"] == 2
    assert res["mean"]["LV"]["dice"] == pytest.approx(0.9)
    assert res["mean"]["LV"]["hd95"] == pytest.approx(0.35)
    assert res["mean"]["LV"]["assd"] == pytest.approx(CASE_B_LV_ASSD / 2)
    assert res["mean"]["RV"] == pytest.approx({"dice": 0.0, "hd95": 5.0, "assd": 5.0})  # missed case excluded
    assert res["mean_over_classes"]["dice"] == pytest.approx(0.45)
    assert res["mean_over_classes"]["hd95"] == pytest.approx((0.35 + 5.0) / 2)
    assert res["empty_predictions"] == {"LV": 0, "RV": 1}
    assert res["empty_references"] == {"LV": 0, "RV": 0}


def test_evaluate_folder_numbers_and_outputs(folders):
    pred_dir, ref_dir, tmp = folders
    out_json, out_md = str(tmp / "out" / "eval.json"), str(tmp / "out" / "eval.md")
    res = evaluate_folder(pred_dir, ref_dir, CLASSES, output_json=out_json, output_md=out_md)
    _check_expected(res)

    with open(out_json) as f:
        saved = json.load(f)
    assert saved["per_case"]["case_b"]["RV"]["hd95"] is None  # NaN written as null
    assert saved["mean"]["RV"]["hd95"] == pytest.approx(5.0)
    assert saved["conventions"] == res["conventions"]
    with open(out_md) as f:
        md = f.read()
    assert "| case_a |" in md and "| case_b |" in md and "| **mean** |" in md and "Dice LV" in md

    with pytest.raises(NNWError, match="--overwrite"):
        evaluate_folder(pred_dir, ref_dir, CLASSES, output_json=out_json, output_md=out_md)
    _check_expected(evaluate_folder(pred_dir, ref_dir, CLASSES, output_json=out_json, output_md=out_md,
                                    overwrite=True))


def test_evaluate_folder_parallel_matches(folders):
    pred_dir, ref_dir, _ = folders
    _check_expected(evaluate_folder(pred_dir, ref_dir, CLASSES, num_processes=2))


def test_evaluate_folder_unmatched_and_mismatched_files(folders):
    pred_dir, ref_dir, _ = folders
    os.remove(os.path.join(ref_dir, "case_b.nii.gz"))
    with pytest.raises(NNWError, match="case_b.nii.gz"):
        evaluate_folder(pred_dir, ref_dir, CLASSES)

    _write(np.zeros((6, 8, 8), np.uint8), os.path.join(ref_dir, "case_b.nii.gz"))
    _write(np.zeros((6, 8, 8), np.uint8), os.path.join(ref_dir, "case_c.nii.gz"))
    # a reference without prediction would silently leave the mean: refused unless allowed, then listed
    with pytest.raises(NNWError, match="no prediction for 1 of 3 reference.*case_c.nii.gz.*--allow-missing"):
        evaluate_folder(pred_dir, ref_dir, CLASSES)
    allowed = evaluate_folder(pred_dir, ref_dir, CLASSES, allow_missing=True)
    assert allowed["n_cases"] == 2 and allowed["missing_predictions"] == ["case_c"]

    os.remove(os.path.join(ref_dir, "case_c.nii.gz"))
    _write(np.zeros((5, 8, 8), np.uint8), os.path.join(ref_dir, "case_b.nii.gz"))
    with pytest.raises(NNWError, match="case_b.nii.gz.*shape"):
        evaluate_folder(pred_dir, ref_dir, CLASSES)

    _write(np.zeros((6, 8, 8), np.uint8), os.path.join(ref_dir, "case_b.nii.gz"), spacing=(1.0, 1.0, 1.0))
    with pytest.raises(NNWError, match="case_b.nii.gz.*spacing"):
        evaluate_folder(pred_dir, ref_dir, CLASSES)


# ------------------------------------------------------------------------------------------------------- CLI
def test_cli_with_label_list(folders, capsys):
    pred_dir, ref_dir, tmp = folders
    prefix = str(tmp / "cli")
    assert main(["-pred", pred_dir, "-ref", ref_dir, "-l", "LV:1", "RV:2", "-o", prefix]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| case | Dice LV | Dice RV | mean Dice |")
    assert lines[-1].startswith("mean Dice 0.4500 | mean HD95 ") and lines[-1].endswith(" mm")
    assert float(lines[-1].split()[-2]) == pytest.approx(2.675, abs=0.006)
    with open(prefix + ".json") as f:
        saved = json.load(f)
    assert saved["per_case"]["case_b"]["LV"]["dice"] == pytest.approx(0.8)
    assert saved["empty_predictions"] == {"LV": 0, "RV": 1}
    assert os.path.isfile(prefix + ".md")
    with pytest.raises(NNWError, match="--overwrite"):
        main(["-pred", pred_dir, "-ref", ref_dir, "-l", "LV:1", "RV:2", "-o", prefix])
    with pytest.raises(NNWError, match="NAME:VALUE"):
        main(["-pred", pred_dir, "-ref", ref_dir, "-l", "LV=1", "-o", prefix, "--overwrite"])


def test_cli_with_dataset_json_default_prefix(folders, capsys):
    pred_dir, ref_dir, tmp = folders
    dj = tmp / "dataset.json"
    dj.write_text(json.dumps({"labels": {"background": 0, "LV": 1, "RV": 2, "ignore": 3},
                              "file_ending": ".nii.gz"}))
    assert main(["-pred", pred_dir, "-ref", ref_dir, "-djfile", str(dj)]) == 0
    with open(os.path.join(pred_dir, "dense_eval.json")) as f:
        saved = json.load(f)
    assert set(saved["mean"]) == {"LV", "RV"}
    assert saved["mean_over_classes"]["dice"] == pytest.approx(0.45)
    assert os.path.isfile(os.path.join(pred_dir, "dense_eval.md"))
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("mean Dice 0.4500")
