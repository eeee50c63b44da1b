import json
import os

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import conversion_script
from nnunet_weak.annotation.commands import simulate_scribbles_dataset
from nnunet_weak.utilities.errors import NNWError

SHAPE = (3, 16, 16)  # z, y, x
SPACING = (1.5, 1.5, 10.0)
ORIGIN = (1.0, 2.0, 3.0)
PATIENTS = (1, 21, 41)
FRAMES = ("01", "12")




pytestmark = pytest.mark.usefixtures("no_preprocessed")


def _write(array, path, spacing=SPACING, origin=ORIGIN):
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    sitk.WriteImage(img, str(path))


def _dense(seed):
    seg = np.zeros(SHAPE, dtype=np.uint8)
    seg[:, 4:12, 4:12] = 2
    seg[:, 6:10, 6:10] = 3
    seg[1:, 5:11, 1:4] = 1
    seg[0, 0, seed % 16] = 1
    return seg


def _scribble(dense):
    scr = np.full(SHAPE, 4, dtype=np.uint8)
    scr[:, 0, :] = dense[:, 0, :]
    scr[:, 8, 5:11] = dense[:, 8, 5:11]
    return scr


def _read(path):
    return sitk.ReadImage(str(path))


def _arr(path):
    return sitk.GetArrayFromImage(_read(path))


def write_acdc(root, patients, gt_spacing=SPACING, gt_origin=ORIGIN):
    """A synthetic ACDC release under ``root``: image, _gt and _scribble per frame of every patient."""
    for p in patients:
        folder = root / "training" / f"patient{p:03d}"
        folder.mkdir(parents=True)
        for frame in FRAMES:
            stem = folder / f"patient{p:03d}_frame{frame}"
            _write(np.random.default_rng(p).random(SHAPE).astype(np.float32), f"{stem}.nii.gz")
            dense = _dense(p + int(frame))
            _write(dense, f"{stem}_gt.nii.gz", spacing=gt_spacing, origin=gt_origin)
            _write(_scribble(dense).astype(np.uint16), f"{stem}_scribble.nii.gz")
    return root


@pytest.fixture
def acdc(tmp_path):
    # label geometry slightly off, as in some real ACDC gt files: must be replaced by the image's
    return write_acdc(tmp_path / "ACDC", PATIENTS, gt_spacing=(1.5001, 1.5, 10.0), gt_origin=(1.01, 2.0, 3.0))


def write_mscmr(tmp_path, with_test=False, train=(1, 2), val=(3,)):
    """A synthetic MSCMRseg release (train/ scribbles, val/ dense, optional test folder): (root, test or None)."""
    root = tmp_path / "MSCMRseg"
    rng = np.random.default_rng(0)
    for part, subjects, suffix in (("train", train, "_scribble"), ("val", val, "_manual")):
        (root / part / "images").mkdir(parents=True)
        (root / part / "labels").mkdir(parents=True)
        for k in subjects:
            _write(rng.integers(0, 500, SHAPE).astype(np.int16), root / part / "images" / f"subject{k}_DE.nii.gz")
            dense = _dense(k)
            _write(_scribble(dense) if part == "train" else dense,
                   root / part / "labels" / f"subject{k}_DE{suffix}.nii.gz")
    test = None
    if with_test:
        test = tmp_path / "mscmr_test"
        (test / "images").mkdir(parents=True)
        (test / "labels").mkdir(parents=True)
        _write(rng.integers(0, 500, SHAPE).astype(np.int16), test / "images" / "subject9_DE.nii.gz")
        _write(_dense(9), test / "labels" / "subject9_DE_manual.nii.gz")
    return root, test


def _cases():
    return sorted(f"patient{p:03d}_frame{f}" for p in PATIENTS for f in FRAMES)


def _listing(folder):
    return sorted(os.listdir(folder))


def test_acdc_scribble_conversion(acdc, tmp_path):
    pre = tmp_path / "pre"
    raw = tmp_path / "raw"
    out = conversion_script("Dataset801_ACDCScribble").convert(str(acdc), str(raw), verbose=False,
                                                               preprocessed=str(pre))
    assert out == str(raw / "Dataset801_ACDCScribble")
    cases = _cases()
    assert _listing(raw / "Dataset801_ACDCScribble" / "imagesTr") == [f"{c}_0000.nii.gz" for c in cases]
    for sub in ("labelsTr", "labelsTr_dense"):
        assert _listing(os.path.join(out, sub)) == [f"{c}.nii.gz" for c in cases]

    dj = json.load(open(os.path.join(out, "dataset.json")))
    assert dj["channel_names"] == {"0": "MRI"}
    assert dj["labels"] == {"background": 0, "RV": 1, "MYO": 2, "LV": 3, "ignore": 4}
    assert dj["file_ending"] == ".nii.gz" and dj["numTraining"] == 6

    for c in cases:
        p = int(c[7:10])
        frame = c[-2:]
        image = _read(os.path.join(out, "imagesTr", f"{c}_0000.nii.gz"))
        src = _read(acdc / "training" / c[:10] / f"{c}.nii.gz")
        np.testing.assert_array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(src))
        dense = _dense(p + int(frame))
        label = _read(os.path.join(out, "labelsTr", f"{c}.nii.gz"))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(label), _scribble(dense))
        np.testing.assert_array_equal(_arr(os.path.join(out, "labelsTr_dense", f"{c}.nii.gz")), dense)
        for lab in (label, _read(os.path.join(out, "labelsTr_dense", f"{c}.nii.gz"))):
            assert lab.GetSpacing() == pytest.approx(image.GetSpacing())
            assert lab.GetOrigin() == pytest.approx(image.GetOrigin())
            assert lab.GetDirection() == pytest.approx(image.GetDirection())

    splits = json.load(open(os.path.join(out, "splits_final.json")))
    assert len(splits) == 5
    for fold, patient in enumerate(PATIENTS):
        expected_val = [f"patient{patient:03d}_frame{f}" for f in FRAMES]
        assert splits[fold]["val"] == expected_val
        assert sorted(splits[fold]["train"]) == sorted(set(cases) - set(expected_val))
    assert splits[3]["val"] == [] and splits[4]["val"] == []
    assert json.load(open(pre / "Dataset801_ACDCScribble" / "splits_final.json")) == splits


def test_acdc_dense_conversion(acdc, tmp_path):
    raw = tmp_path / "raw"
    module = conversion_script("Dataset802_ACDCDense")
    module.main([str(acdc / "training"), str(raw)])  # the training folder itself is accepted as SOURCE too
    out = raw / "Dataset802_ACDCDense"
    dj = json.load(open(out / "dataset.json"))
    assert dj["labels"] == {"background": 0, "RV": 1, "MYO": 2, "LV": 3}
    for c in _cases():
        dense = _dense(int(c[7:10]) + int(c[-2:]))
        np.testing.assert_array_equal(_arr(out / "labelsTr" / f"{c}.nii.gz"), dense)
        np.testing.assert_array_equal(_arr(out / "labelsTr_dense" / f"{c}.nii.gz"), dense)
        assert _read(out / "labelsTr" / f"{c}.nii.gz").GetSpacing() == pytest.approx(SPACING)
    assert json.load(open(out / "splits_final.json"))[1]["val"] == ["patient021_frame01", "patient021_frame12"]


def test_conversion_function_reads_no_environment(acdc, tmp_path, monkeypatch):
    """The preprocessed folder is an argument: the command line passes $nnUNet_preprocessed, a library call given
    none writes nothing outside the raw dataset, whatever the environment says."""
    pre = tmp_path / "pre"
    monkeypatch.setenv("nnUNet_preprocessed", str(pre))
    conversion_script("Dataset801_ACDCScribble").convert(str(acdc), str(tmp_path / "raw"), verbose=False)
    assert not pre.exists()
    conversion_script("Dataset801_ACDCScribble").main([str(acdc), str(tmp_path / "raw2")])
    assert (pre / "Dataset801_ACDCScribble" / "splits_final.json").is_file()


def test_refuses_overwrite_and_preprocessed_conflict(acdc, tmp_path):
    module = conversion_script("Dataset801_ACDCScribble")
    raw = tmp_path / "raw"
    out = module.convert(str(acdc), str(raw), verbose=False)
    with pytest.raises(NNWError, match=r"Dataset801_ACDCScribble.*--overwrite"):
        module.convert(str(acdc), str(raw), verbose=False)
    module.convert(str(acdc), str(raw), overwrite=True, verbose=False)

    # splits in $nnUNet_preprocessed that no conversion wrote are the user's: refused, with or without --overwrite
    pre = tmp_path / "pre"
    (pre / "Dataset801_ACDCScribble").mkdir(parents=True)
    custom = json.dumps([{"train": ["a"], "val": []}])
    (pre / "Dataset801_ACDCScribble" / "splits_final.json").write_text(custom)
    fresh = tmp_path / "raw2"
    for overwrite in (False, True):
        with pytest.raises(NNWError, match=r"splits_final.json holds splits this conversion did not write"):
            module.convert(str(acdc), str(fresh), overwrite=overwrite, verbose=False, preprocessed=str(pre))
    assert not (fresh / "Dataset801_ACDCScribble").exists()  # refused before writing anything
    assert (pre / "Dataset801_ACDCScribble" / "splits_final.json").read_text() == custom


def test_missing_or_bad_source_files(acdc, tmp_path):
    module = conversion_script("Dataset801_ACDCScribble")
    missing = acdc / "training" / "patient021" / "patient021_frame12_scribble.nii.gz"
    os.remove(missing)
    with pytest.raises(NNWError, match="patient021_frame12_scribble.nii.gz"):
        module.convert(str(acdc), str(tmp_path / "raw"), verbose=False)
    with pytest.raises(NNWError, match="training"):
        module.convert(str(tmp_path), str(tmp_path / "raw"), verbose=False)

    _write(_scribble(_dense(0)), missing)
    bad = acdc / "training" / "patient041" / "patient041_frame01_gt.nii.gz"
    _write(np.zeros((2, 16, 16), dtype=np.uint8), bad)
    with pytest.raises(NNWError, match="patient041_frame01_gt.nii.gz"):
        module.convert(str(acdc), str(tmp_path / "raw3"), verbose=False)


def test_mscmr_conversion(tmp_path):
    source, test = write_mscmr(tmp_path, with_test=True)
    module = conversion_script("Dataset803_MSCMRScribble")
    raw = tmp_path / "raw"
    out = module.convert(str(source), str(raw), test=str(test), verbose=False)
    assert out == str(raw / "Dataset803_MSCMRScribble")
    cases = ["subject1_DE", "subject2_DE", "subject3_DE"]
    assert _listing(os.path.join(out, "imagesTr")) == [f"{c}_0000.nii.gz" for c in cases]
    assert _listing(os.path.join(out, "labelsTr")) == [f"{c}.nii.gz" for c in cases]
    assert _listing(os.path.join(out, "labelsTr_dense")) == ["subject3_DE.nii.gz"]
    assert _listing(os.path.join(out, "imagesTs")) == ["subject9_DE_0000.nii.gz"]
    np.testing.assert_array_equal(_arr(os.path.join(out, "labelsTs", "subject9_DE.nii.gz")), _dense(9))
    dj = json.load(open(os.path.join(out, "dataset.json")))
    assert dj["labels"]["ignore"] == 4 and dj["numTraining"] == 3 and dj["channel_names"] == {"0": "MRI"}
    np.testing.assert_array_equal(_arr(os.path.join(out, "labelsTr", "subject1_DE.nii.gz")), _scribble(_dense(1)))
    np.testing.assert_array_equal(_arr(os.path.join(out, "labelsTr", "subject3_DE.nii.gz")), _dense(3))
    np.testing.assert_array_equal(_arr(os.path.join(out, "labelsTr_dense", "subject3_DE.nii.gz")), _dense(3))
    assert _arr(os.path.join(out, "imagesTr", "subject1_DE_0000.nii.gz")).dtype == np.int16
    splits = json.load(open(os.path.join(out, "splits_final.json")))
    assert splits == [{"train": ["subject1_DE", "subject2_DE"], "val": ["subject3_DE"]}]

    with pytest.raises(NNWError, match="Dataset803_MSCMRScribble.*--overwrite"):
        module.convert(str(source), str(raw), verbose=False)
    os.remove(source / "val" / "labels" / "subject3_DE_manual.nii.gz")
    with pytest.raises(NNWError, match="subject3_DE_manual.nii.gz"):
        module.convert(str(source), str(tmp_path / "raw2"), verbose=False)


def test_simulate_dataset(acdc, tmp_path):
    raw = tmp_path / "raw"
    dense_ds = conversion_script("Dataset802_ACDCDense").convert(str(acdc), str(raw), verbose=False)
    pre = tmp_path / "pre"
    target = raw / "Dataset807_ACDCSimScribble"
    result = simulate_scribbles_dataset(dense_ds, str(target), seed=0, verbose=False, preprocessed=str(pre))
    cases = _cases()
    assert sorted(result["per_case"]) == cases
    assert 0.0 < result["mean"] < 1.0
    assert set(result["per_class"]) == {"background", "RV", "MYO", "LV"}
    dj = json.load(open(target / "dataset.json"))
    assert dj["labels"] == {"background": 0, "RV": 1, "MYO": 2, "LV": 3, "ignore": 4}
    assert dj["numTraining"] == 6
    assert _listing(target / "imagesTr") == [f"{c}_0000.nii.gz" for c in cases]
    for c in cases:
        scr = _arr(target / "labelsTr" / f"{c}.nii.gz")
        dense = _arr(target / "labelsTr_dense" / f"{c}.nii.gz")
        np.testing.assert_array_equal(dense, _dense(int(c[7:10]) + int(c[-2:])))
        m = scr != 4
        assert m.any()
        np.testing.assert_array_equal(scr[m], dense[m])
        assert _read(target / "labelsTr" / f"{c}.nii.gz").GetOrigin() == pytest.approx(ORIGIN)
    assert json.load(open(target / "splits_final.json")) == json.load(open(os.path.join(dense_ds, "splits_final.json")))
    assert (pre / "Dataset807_ACDCSimScribble" / "splits_final.json").is_file()

    again = simulate_scribbles_dataset(dense_ds, str(target), seed=0, overwrite=True, verbose=False)
    assert again["per_case"] == result["per_case"]
    with pytest.raises(NNWError, match="--overwrite"):
        simulate_scribbles_dataset(dense_ds, str(target), seed=1, verbose=False)
    scribble_ds = conversion_script("Dataset801_ACDCScribble").convert(str(acdc), str(raw), verbose=False)
    with pytest.raises(NNWError, match="ignore"):
        simulate_scribbles_dataset(scribble_ds, str(tmp_path / "x"), verbose=False)


def test_acdc_points_conversion(acdc, tmp_path):
    raw = tmp_path / "raw"
    conversion_script("Dataset804_ACDCPoints").main([str(acdc), str(raw)])
    out = raw / "Dataset804_ACDCPoints"
    dj = json.load(open(out / "dataset.json"))
    assert dj["labels"] == {"background": 0, "RV": 1, "MYO": 2, "LV": 3, "ignore": 4}
    assert _listing(out / "points") == [f"{c}.json" for c in _cases()]
    for c in _cases():
        labels = _arr(out / "labelsTr" / f"{c}.nii.gz")
        dense = _dense(int(c[7:10]) + int(c[-2:]))
        np.testing.assert_array_equal(_arr(out / "labelsTr_dense" / f"{c}.nii.gz"), dense)
        assert set(np.unique(labels)) <= {0, 1, 2, 3, 4} and 4 in labels and 0 in labels
        points = json.load(open(out / "points" / f"{c}.json"))["points"]
        for p in points:
            if p["kind"] == "foreground":  # the click itself is labelled with its class, inside the target
                assert labels[tuple(p["voxel"])] == p["label"] == dense[tuple(p["voxel"])]
        assert _read(out / "labelsTr" / f"{c}.nii.gz").GetSpacing() == pytest.approx(SPACING)
    quality = json.load(open(out / "seed_quality.json"))
    assert quality["cases"] == len(_cases()) and set(quality["classes"]) == {"background", "RV", "MYO", "LV"}
    with open(out / "seed_quality.csv") as f:
        assert len(f.read().strip().splitlines()) == 1 + 4 * len(_cases())
    with pytest.raises(NNWError, match="--overwrite"):
        conversion_script("Dataset804_ACDCPoints").main([str(acdc), str(raw)])


def test_seed_quality_counts():
    from nnunet_weak.annotation.seed_quality import SeedQualityReport
    dense = np.array([[0, 0, 1, 1, 1, 2]])
    seeds = np.array([[0, 9, 1, 1, 2, 9]])  # 9 = ignore
    report = SeedQualityReport({0: "bg", 1: "a", 2: "b"}, ignore_label=9)
    report.add("c1", seeds, dense)
    s = report.summary()
    assert s["classes"]["a"]["micro"] == {"precision": 1.0, "recall": pytest.approx(2 / 3), "dice": pytest.approx(0.8)}
    assert s["classes"]["b"]["micro"]["precision"] == 0.0 and s["classes"]["b"]["micro"]["recall"] == 0.0
    assert s["classes"]["bg"]["micro"]["recall"] == 0.5 and s["labelled_fraction"] == pytest.approx(4 / 6)
