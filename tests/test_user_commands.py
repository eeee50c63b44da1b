"""The installed weak-label tools on a user's own dense dataset: sparse slices, semi-supervised and few-label
subsets, the ignore-value rewrite, simulated points and scribbles; what each writes, and the refusals."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_weak.annotation import commands
from nnunet_weak.utilities.errors import NNWError

SHAPE = (6, 24, 24)
CASES = [f"case_{i:03d}" for i in range(5)]


def _write(array, path, spacing=(1.0, 1.0, 2.0)):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    sitk.WriteImage(image, path)


def _read(path):
    return sitk.GetArrayFromImage(sitk.ReadImage(path))


def _labels(i):
    z, y, x = np.mgrid[:SHAPE[0], :SHAPE[1], :SHAPE[2]]
    lab = np.zeros(SHAPE, np.uint8)
    lab[(((y - 8 - i % 3) / 5.0) ** 2 + ((x - 8) / 5.0) ** 2 <= 1) & (z >= 1) & (z <= 4)] = 1
    lab[(((y - 16) / 4.0) ** 2 + ((x - 16 - i % 2) / 4.0) ** 2 <= 1) & (z >= 1) & (z <= 4)] = 2
    return lab


@pytest.fixture
def dense(tmp_path):
    """A dense 3D dataset of 5 cases: two blobs (classes 1 and 2) brighter than the background."""
    folder = tmp_path / "raw" / "Dataset950_Dense"
    for sub in ("imagesTr", "labelsTr"):
        (folder / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, case in enumerate(CASES):
        lab = _labels(i)
        image = (100.0 * lab + rng.normal(0, 5, SHAPE)).astype(np.float32)
        _write(image, str(folder / "imagesTr" / f"{case}_0000.nii.gz"))
        _write(lab, str(folder / "labelsTr" / f"{case}.nii.gz"))
    (folder / "dataset.json").write_text(json.dumps({"channel_names": {"0": "MRI"}, "file_ending": ".nii.gz",
                                                     "labels": {"background": 0, "a": 1, "b": 2},
                                                     "numTraining": 5}))
    return folder


def test_sparse_slices_keep_every_kth_slice_and_the_dense_reference(dense, tmp_path, capsys):
    target = tmp_path / "raw" / "Dataset951_Sparse"
    assert commands.sparse_slices_main([str(dense), str(target), "--every", "2", "--offset", "1"]) == 0
    dj = json.loads((target / "dataset.json").read_text())
    assert dj["labels"] == {"background": 0, "a": 1, "b": 2, "ignore": 3}
    for i, case in enumerate(CASES):
        sparse = _read(str(target / "labelsTr" / f"{case}.nii.gz"))
        np.testing.assert_array_equal(sparse[1::2], _labels(i)[1::2])
        assert (sparse[0::2] == 3).all()
        np.testing.assert_array_equal(_read(str(target / "labelsTr_dense" / f"{case}.nii.gz")), _labels(i))
    assert "share of each class's voxels labelled" in capsys.readouterr().out
    with pytest.raises(NNWError, match="--overwrite"):
        commands.sparse_slices_main([str(dense), str(target), "--every", "2"])
    with pytest.raises(NNWError, match="offset"):
        commands.sparse_slices_main([str(dense), str(tmp_path / "x"), "--every", "2", "--offset", "2"])
    with pytest.raises(NNWError, match="dense labels"):         # a weak dataset is no source of sparse slices
        commands.sparse_slices_main([str(target), str(tmp_path / "y"), "--every", "2"])


def test_semi_and_few_label_subsets_validate_on_labelled_cases(dense, tmp_path, monkeypatch):
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    monkeypatch.delenv("nnUNet_preprocessed", raising=False)
    assert commands.make_semi_main(["950", "Dataset952_Semi", "--count", "2", "--seed", "3"]) == 0
    target = tmp_path / "raw" / "Dataset952_Semi"
    labelled = json.loads((target / "labelled_cases.json").read_text())["labelled"]
    assert len(labelled) == 2
    for i, case in enumerate(CASES):
        lab = _read(str(target / "labelsTr" / f"{case}.nii.gz"))
        assert np.array_equal(lab, _labels(i)) if case in labelled else (lab == 3).all()
    splits = json.loads((target / "splits_final.json").read_text())
    for fold in splits:
        assert fold["val"] and set(fold["val"]) <= set(labelled)
        assert sorted(fold["train"] + fold["val"]) == CASES
    # few labels of a weak dataset: the ignore label and the dense reference come from the source
    commands.sparse_slices_main([str(dense), str(tmp_path / "raw" / "Dataset953_Sparse"), "--every", "3"])
    assert commands.make_few_main(["953", "Dataset954_Few", "--cases", "case_001,case_004"]) == 0
    few = tmp_path / "raw" / "Dataset954_Few"
    assert json.loads((few / "dataset.json").read_text())["labels"]["ignore"] == 3
    assert (_read(str(few / "labelsTr" / "case_000.nii.gz")) == 3).all()
    np.testing.assert_array_equal(_read(str(few / "labelsTr_dense" / "case_000.nii.gz")), _labels(0))
    with pytest.raises(NNWError, match="exactly one"):
        commands.make_semi_main(["950", str(tmp_path / "z"), "--count", "2", "--fraction", "0.5"])
    with pytest.raises(NNWError, match="case_999"):
        commands.make_few_main(["950", str(tmp_path / "z"), "--cases", "case_999"])
    with pytest.raises(NNWError, match="dense labels"):
        commands.make_semi_main(["953", str(tmp_path / "z"), "--count", "2"])
    with pytest.raises(NNWError, match="not found"):
        commands.make_semi_main(["999", str(tmp_path / "z"), "--count", "2"])


def test_add_ignore_rewrites_a_not_annotated_value_or_a_mask(dense, tmp_path):
    # a tool that writes 0 = not annotated, 1 = background, 2 / 3 = the classes
    source = tmp_path / "raw" / "Dataset955_Tool"
    commands.sparse_slices_main([str(dense), str(source), "--every", "1"])   # a copy to edit
    for i, case in enumerate(CASES):
        lab = _labels(i) + 1
        lab[:, :4] = 0
        _write(lab, str(source / "labelsTr" / f"{case}.nii.gz"))
    dj = json.loads((source / "dataset.json").read_text())
    dj["labels"] = {"unannotated": 0, "background": 1, "a": 2, "b": 3}
    (source / "dataset.json").write_text(json.dumps(dj))
    target = tmp_path / "raw" / "Dataset956_Ignore"
    assert commands.add_ignore_main([str(source), str(target), "--value", "0"]) == 0
    assert json.loads((target / "dataset.json").read_text())["labels"] == {"background": 0, "a": 1, "b": 2,
                                                                           "ignore": 3}
    lab = _read(str(target / "labelsTr" / "case_000.nii.gz"))
    assert (lab[:, :4] == 3).all()
    np.testing.assert_array_equal(lab[:, 4:], _labels(0)[:, 4:])
    assert not (target / "labelsTr_dense").exists() or not os.listdir(target / "labelsTr_dense")
    # a separate annotation mask per case
    masks = tmp_path / "masks"
    masks.mkdir()
    for case in CASES:
        m = np.zeros(SHAPE, np.uint8)
        m[:, :, 12:] = 1
        _write(m, str(masks / f"{case}.nii.gz"))
    masked = tmp_path / "raw" / "Dataset957_Masked"
    assert commands.add_ignore_main([str(dense), str(masked), "--mask-folder", str(masks)]) == 0
    lab = _read(str(masked / "labelsTr" / "case_000.nii.gz"))
    assert (lab[:, :, :12] == 3).all() and np.array_equal(lab[:, :, 12:], _labels(0)[:, :, 12:])
    with pytest.raises(NNWError, match="exactly one"):
        commands.add_ignore_main([str(dense), str(tmp_path / "q")])


def test_simulated_points_and_scribbles(dense, tmp_path, capsys):
    target = tmp_path / "raw" / "Dataset958_Points"
    assert commands.simulate_points_main([str(dense), str(target)]) == 0
    quality = json.loads((target / "seed_quality.json").read_text())
    assert set(quality["classes"]) == {"background", "a", "b"} and quality["metadata"]["recipe"] == "competing"
    assert quality["classes"]["a"]["micro"]["precision"] > 0.9                # bright blobs: clean seeds
    for case in CASES:
        points = json.loads((target / "points" / f"{case}.json").read_text())["points"]
        lab = _read(str(target / "labelsTr" / f"{case}.nii.gz"))
        assert len(points) == 14 and set(np.unique(lab)) <= {0, 1, 2, 3}
        for p in points:
            if p["kind"] == "foreground":
                assert lab[tuple(p["voxel"])] == p["label"]
    scribbled = tmp_path / "raw" / "Dataset959_Scribbles"
    assert commands.simulate_scribbles_main([str(dense), str(scribbled), "--seed", "1"]) == 0
    lab = _read(str(scribbled / "labelsTr" / "case_000.nii.gz"))
    assert 0 < (lab != 3).mean() < 0.5 and np.array_equal(lab[lab != 3], _labels(0)[lab != 3])


def test_installed_command_reports_one_line(dense, tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "nnunet_weak_make_semi")
    assert os.path.exists(exe), "the console script is not installed"
    done = subprocess.run([exe, str(dense), str(tmp_path / "t"), "--count", "1", "--fraction", "0.2"],
                          capture_output=True, text=True)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().startswith("nnunet_weak error:") and "exactly one" in done.stderr
