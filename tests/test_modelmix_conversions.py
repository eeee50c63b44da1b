"""ModelMix conversions: ACDC / MSCMR few-scribble (Dataset814 / 815) and MyoPS 2020 with the ModelMix scribbles
(Dataset813), on tiny synthetic sources laid out like the public releases."""
import json
import os
import random

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from conftest import conversion_script
from nnunet_weak.annotation.few_scribbles import OFFICIAL_PICKS, PICKS_FILE, select_few_scribbles
from nnunet_weak.annotation.myops import DENSE_VALUES, SCRIBBLE_VALUES, map_label_values
from nnunet_weak.utilities.errors import NNWError
from test_conversion import SHAPE, SPACING, _dense, _scribble, _write, write_acdc, write_mscmr

pytestmark = pytest.mark.usefixtures("no_preprocessed")


def _arr(path):
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _json(path):
    with open(path) as f:
        return json.load(f)


def _listing(folder):
    return sorted(os.listdir(folder))


# ----------------------------------------------------------------------------------------------- selection
def test_selection_official_labelled_and_picks():
    train = [f"c{i:02d}" for i in range(10)]
    official = ("c03", "c07", "v1", "c01")
    sel = select_few_scribbles(train, ["v1", "v2"], official, where="the validation set of fold 0")
    order = list(train)
    random.Random(42).shuffle(order)
    expected_replacement = next(c for c in order if c not in {"c03", "c07", "c01"})
    assert sel.picks == ["c03", "c07", expected_replacement, "c01"]
    assert sel.replacements == [{"requested": "v1", "reason": "in the validation set of fold 0",
                                 "replacement": expected_replacement}]
    assert sel.unlabelled == sorted(set(train) - set(sel.picks))
    labels = np.zeros((2, 2), dtype=np.uint8)
    assert (sel.labels_for(sel.unlabelled[0], labels, 4) == 4).all()
    assert (sel.labels_for("c03", labels, 4) == 0).all() and (sel.labels_for("v2", labels, 4) == 0).all()

    assert select_few_scribbles(train, [], official, labelled=2).picks == ["c03", "c07"]
    six = select_few_scribbles(train, ["v1"], official, labelled=6).picks
    assert six[:2] == ["c03", "c07"] and len(set(six)) == 6 and set(six) <= set(train)
    missing = select_few_scribbles(train, [], ("c00", "gone"))
    assert missing.replacements[0]["reason"] == "not in the source"
    assert select_few_scribbles(train, [], official, picks=["c09", "c00"]).picks == ["c09", "c00"]
    with pytest.raises(NNWError, match="nope.*not in the dataset"):
        select_few_scribbles(train, [], official, picks=["c01", "nope"])
    with pytest.raises(NNWError, match="more than once"):
        select_few_scribbles(train, [], official, picks=["c01", "c01"])
    with pytest.raises(NNWError, match="--labelled must lie in 1..10"):
        select_few_scribbles(train, [], official, labelled=11)


# ------------------------------------------------------------------------------------------- ACDC (814)
ACDC_PATIENTS = (5, 21, 32, 43, 65, 70)


@pytest.fixture
def acdc(tmp_path):
    root = write_acdc(tmp_path / "ACDC", ACDC_PATIENTS)
    folder = root / "training" / "patient005"       # patient005's ES frame is frame13 in the real data
    for suffix in ("", "_gt", "_scribble"):
        os.rename(folder / f"patient005_frame12{suffix}.nii.gz", folder / f"patient005_frame13{suffix}.nii.gz")
    return root


def _acdc_source(acdc, case, suffix):
    return _arr(acdc / "training" / case[:10] / f"{case}{suffix}.nii.gz")


def test_dataset814_fold0_picks_replacement_and_labels(acdc, tmp_path, monkeypatch, capsys):
    pre = tmp_path / "pre"
    monkeypatch.setenv("nnUNet_preprocessed", str(pre))
    raw = tmp_path / "raw"
    folder = conversion_script("Dataset814_ACDCFewScribble").main([str(acdc), str(raw)])
    assert folder == str(raw / "Dataset814_ACDCFewScribble")
    cases = sorted(os.listdir(os.path.join(folder, "labelsTr")))
    cases = [c[:-7] for c in cases]
    val = ["patient005_frame01", "patient005_frame13"]
    train = [c for c in cases if c not in val]

    record = _json(os.path.join(folder, PICKS_FILE))
    order = list(train)
    random.Random(42).shuffle(order)
    kept = [p for p in OFFICIAL_PICKS["ACDC"] if p in train]
    replacement = next(c for c in order if c not in kept)
    assert record["requested"] == list(OFFICIAL_PICKS["ACDC"])
    assert record["picks"] == ["patient065_frame01", "patient043_frame01", "patient070_frame01", replacement,
                               "patient032_frame12"]
    assert record["replacements"] == [{"requested": "patient005_frame13", "reason": "in the validation set of fold 0",
                                       "replacement": replacement}]
    assert record["acdc_fold"] == 0 and record["shuffle_seed"] == 42 and record["val_cases"] == val
    assert record["unlabelled_cases"] == sorted(set(train) - set(record["picks"]))
    out = capsys.readouterr().out
    assert "replaced patient005_frame13" in out and replacement in out

    meta = _json(os.path.join(folder, "dataset.json"))
    assert meta["labels"] == {"background": 0, "RV": 1, "MYO": 2, "LV": 3, "ignore": 4}
    assert meta["labelled_cases"] == record["picks"] and meta["numTraining"] == len(cases) == 12
    splits = _json(os.path.join(folder, "splits_final.json"))
    assert splits == [{"train": train, "val": val}]
    assert _json(pre / "Dataset814_ACDCFewScribble" / "splits_final.json") == splits

    for case in cases:
        label = _arr(os.path.join(folder, "labelsTr", f"{case}.nii.gz"))
        np.testing.assert_array_equal(_arr(os.path.join(folder, "labelsTr_dense", f"{case}.nii.gz")),
                                      _acdc_source(acdc, case, "_gt"))
        if case in record["picks"] or case in val:
            np.testing.assert_array_equal(label, _acdc_source(acdc, case, "_scribble"))
        else:
            assert (label == 4).all()
    assert _listing(os.path.join(folder, "imagesTr")) == [f"{c}_0000.nii.gz" for c in cases]

    with pytest.raises(NNWError, match="Dataset814_ACDCFewScribble.*--overwrite"):
        conversion_script("Dataset814_ACDCFewScribble").main([str(acdc), str(raw)])


def test_dataset814_options(acdc, tmp_path):
    script = conversion_script("Dataset814_ACDCFewScribble")
    raw = tmp_path / "raw"
    folder = script.main([str(acdc), str(raw), "--fold", "1", "--picks", "patient005_frame13,patient021_frame01"])
    record = _json(os.path.join(folder, PICKS_FILE))
    # fold 1 validates patients 021-040: the second pick is replaced, the first is a training volume now
    assert record["picks"][0] == "patient005_frame13" and record["method"] == "--picks"
    assert record["replacements"][0]["requested"] == "patient021_frame01" and record["acdc_fold"] == 1
    assert _json(os.path.join(folder, "splits_final.json"))[0]["val"] == [
        f"patient{p:03d}_frame{f}" for p in (21, 32) for f in ("01", "12")]
    folder = script.main([str(acdc), str(raw), "--labelled", "2", "--overwrite"])
    assert _json(os.path.join(folder, PICKS_FILE))["picks"] == ["patient065_frame01", "patient043_frame01"]
    assert _json(os.path.join(folder, "dataset.json"))["labelled_cases"] == ["patient065_frame01", "patient043_frame01"]
    with pytest.raises(NNWError, match="--fold must be 0..4"):
        script.convert(str(acdc), str(tmp_path / "raw2"), fold=5)
    with pytest.raises(NNWError, match="patient099_frame01"):
        script.convert(str(acdc), str(tmp_path / "raw2"), picks=["patient099_frame01"])
    assert not (tmp_path / "raw2").exists()                  # refused before writing anything
    with pytest.raises(SystemExit):                           # --labelled and --picks exclude each other
        script.main([str(acdc), str(tmp_path / "raw2"), "--labelled", "2", "--picks", "patient021_frame01"])


# ------------------------------------------------------------------------------------------ MSCMR (815)
MSCMR_TRAIN = (13, 14, 15, 18, 19, 2, 20)
MSCMR_VAL = (1, 8)


@pytest.fixture
def mscmr(tmp_path):
    return write_mscmr(tmp_path, train=MSCMR_TRAIN, val=MSCMR_VAL)[0]


def test_dataset815_official_picks(mscmr, tmp_path, capsys):
    raw = tmp_path / "raw"
    folder = conversion_script("Dataset815_MSCMRFewScribble").main([str(mscmr), str(raw)])
    assert folder == str(raw / "Dataset815_MSCMRFewScribble")
    picks = ["subject13_DE", "subject14_DE", "subject15_DE", "subject18_DE", "subject19_DE"]
    record = _json(os.path.join(folder, PICKS_FILE))
    assert record["picks"] == picks and record["replacements"] == []
    assert record["unlabelled_cases"] == ["subject20_DE", "subject2_DE"]
    assert "subject13_DE" in capsys.readouterr().out
    for k in MSCMR_TRAIN:
        label = _arr(os.path.join(folder, "labelsTr", f"subject{k}_DE.nii.gz"))
        if f"subject{k}_DE" in picks:
            np.testing.assert_array_equal(label, _scribble(_dense(k)))
        else:
            assert (label == 4).all()
    for k in MSCMR_VAL:
        for sub in ("labelsTr", "labelsTr_dense"):
            np.testing.assert_array_equal(_arr(os.path.join(folder, sub, f"subject{k}_DE.nii.gz")), _dense(k))
    assert _listing(os.path.join(folder, "labelsTr_dense")) == ["subject1_DE.nii.gz", "subject8_DE.nii.gz"]
    meta = _json(os.path.join(folder, "dataset.json"))
    assert meta["name"] == "Dataset815_MSCMRFewScribble" and meta["labelled_cases"] == picks
    assert meta["labels"] == {"background": 0, "RV": 1, "MYO": 2, "LV": 3, "ignore": 4}
    assert meta["numTraining"] == len(MSCMR_TRAIN) + len(MSCMR_VAL)
    assert _json(os.path.join(folder, "splits_final.json")) == [
        {"train": sorted(f"subject{k}_DE" for k in MSCMR_TRAIN), "val": ["subject1_DE", "subject8_DE"]}]
    with pytest.raises(NNWError, match="Dataset815_MSCMRFewScribble.*--overwrite"):
        conversion_script("Dataset815_MSCMRFewScribble").main([str(mscmr), str(raw)])


def test_dataset815_pick_in_validation_is_replaced(mscmr, tmp_path):
    folder = conversion_script("Dataset815_MSCMRFewScribble").convert(
        str(mscmr), str(tmp_path / "raw"), picks=["subject1_DE", "subject2_DE"], verbose=False)
    record = _json(os.path.join(folder, PICKS_FILE))
    assert record["replacements"][0]["requested"] == "subject1_DE"
    replacement = record["replacements"][0]["replacement"]
    assert record["picks"] == [replacement, "subject2_DE"] and replacement != "subject2_DE"
    np.testing.assert_array_equal(_arr(os.path.join(folder, "labelsTr", "subject1_DE.nii.gz")), _dense(1))
    assert not (_arr(os.path.join(folder, "labelsTr", f"{replacement}.nii.gz")) == 4).all()


# ------------------------------------------------------------------------------------------ MyoPS (813)
MYOPS_SCRIBBLED = (102, 103, 104, 105, 107, 108)
MYOPS_DENSE = (101, 106)


def _myops_design(subject, scribble):
    """Integer label map in MyoPS values (z, y, x)."""
    seg = np.zeros(SHAPE, dtype=np.int64)
    if scribble:                        # 0 = unannotated
        seg[:, 0, :] = 3000
        seg[:, 8, 4:7] = 200
        seg[:, 8, 7:9] = 500
        seg[1, 5, 5:8] = 1220
        seg[2, 6, 5:8] = 2221
    else:
        seg[:, 2:14, 2:14] = 200
        seg[:, 5:11, 5:11] = 500
        seg[:, 2:5, 12:15] = 600
        seg[1, 2, 2:6] = 1220
        seg[2, 3, 2:6] = 2221
    seg[0, 15, subject % 16] = 3000 if scribble else 200
    return seg


def _expected(design, scribble):
    mapping = SCRIBBLE_VALUES if scribble else DENSE_VALUES
    out = np.zeros(design.shape, dtype=np.uint8)
    for value, label in mapping.items():
        out[design == value] = label
    return out


def _write_scaled_label(design, path, float64=False):
    """uint16 with a scale factor (as nibabel writes float data into uint16), or float64 with rounding noise:
    both load as non-integers, like the real ModelMix files."""
    data = design.transpose(2, 1, 0).astype(np.float64)         # (x, y, z)
    if float64:
        data = data + 1e-4
    img = nib.Nifti1Image(data, np.diag([-SPACING[0], -SPACING[1], SPACING[2], 1.0]))
    img.set_data_dtype(np.float64 if float64 else np.uint16)
    nib.save(img, str(path))


def _channel(subject, k):
    return np.random.default_rng(subject * 10 + k).random(SHAPE).astype(np.float32)


def _write_myops_subject(folder, case, subject, de_spacing=SPACING):
    for k, channel in enumerate(("C0", "DE", "T2")):
        _write(_channel(subject, k), folder / f"{case}_{channel}.nii.gz", spacing=de_spacing if k == 1 else SPACING)


@pytest.fixture
def myops(tmp_path):
    root = tmp_path / "MyoPS"
    images, labels, test = root / "train25", root / "MyoPS_scribbles", tmp_path / "test20"
    for folder in (images, labels, test):
        folder.mkdir(parents=True)
    for subject in MYOPS_SCRIBBLED + MYOPS_DENSE:
        scribble = subject in MYOPS_SCRIBBLED
        _write_myops_subject(images, f"myops_training_{subject}", subject)
        _write_scaled_label(_myops_design(subject, scribble), labels / f"myops_training_{subject}_gd.nii.gz",
                            float64=subject == 107)
    _write_myops_subject(test, "myops_test_201", 201)
    return root, test


def _myops_case(subject):
    return f"myops_training_{subject}"


def test_myops_label_files_load_non_integer(myops):
    root, _ = myops
    raw = _arr(root / "MyoPS_scribbles" / "myops_training_102_gd.nii.gz")
    assert not np.all(np.mod(raw, 1) == 0)                     # e.g. 499.977: rounding is required
    np.testing.assert_array_equal(np.rint(raw), _myops_design(102, True))


def test_dataset813_conversion(myops, tmp_path):
    root, test = myops
    raw = tmp_path / "raw"
    script = conversion_script("Dataset813_MyoPSScribble")
    folder = script.main([str(root), str(raw), "--test", str(test)])
    assert folder == str(raw / "Dataset813_MyoPSScribble")
    subjects = sorted(MYOPS_SCRIBBLED + MYOPS_DENSE)
    assert _listing(os.path.join(folder, "imagesTr")) == sorted(
        f"{_myops_case(s)}_{k:04d}.nii.gz" for s in subjects for k in range(3))
    assert _listing(os.path.join(folder, "imagesTs")) == [f"myops_test_201_{k:04d}.nii.gz" for k in range(3)]
    for s in subjects:
        for k in range(3):                                      # _0000 = C0, _0001 = DE, _0002 = T2
            np.testing.assert_array_equal(_arr(os.path.join(folder, "imagesTr", f"{_myops_case(s)}_{k:04d}.nii.gz")),
                                          _channel(s, k))
        label = sitk.ReadImage(os.path.join(folder, "labelsTr", f"{_myops_case(s)}.nii.gz"))
        scribble = s in MYOPS_SCRIBBLED
        np.testing.assert_array_equal(sitk.GetArrayFromImage(label), _expected(_myops_design(s, scribble), scribble))
        assert label.GetSpacing() == pytest.approx(SPACING) and label.GetOrigin() == pytest.approx((1.0, 2.0, 3.0))
    dense = _arr(os.path.join(folder, "labelsTr", "myops_training_101.nii.gz"))
    assert set(np.unique(dense)) == {0, 1, 2, 3, 4}                 # RV (600) merged into background
    scr = _arr(os.path.join(folder, "labelsTr", "myops_training_102.nii.gz"))
    assert set(np.unique(scr)) == {0, 1, 2, 3, 4, 5} and (scr == 5).mean() > 0.5
    assert _listing(os.path.join(folder, "labelsTr_dense")) == ["myops_training_101.nii.gz",
                                                                "myops_training_106.nii.gz"]
    meta = _json(os.path.join(folder, "dataset.json"))
    assert meta["labels"] == {"background": 0, "myo": 1, "LV": 2, "edema": 3, "scar": 4, "ignore": 5}
    assert meta["channel_names"] == {"0": "C0", "1": "DE", "2": "T2"} and meta["numTraining"] == 8
    assert meta["dense_cases"] == ["myops_training_101", "myops_training_106"]
    assert _json(os.path.join(folder, "splits_final.json")) == [
        {"train": [_myops_case(s) for s in sorted(MYOPS_SCRIBBLED)], "val": [_myops_case(s) for s in MYOPS_DENSE]}]
    assert not os.path.exists(os.path.join(folder, PICKS_FILE))

    with pytest.raises(NNWError, match="Dataset813_MyoPSScribble.*--overwrite"):
        script.main([str(root), str(raw)])

    # few-scribble setting: the 5 official picks keep their scribbles, 108 becomes unlabelled
    folder = script.main([str(root / "train25"), str(raw), "--scribbles", str(root / "MyoPS_scribbles"),
                          "--labelled", "5", "--overwrite"])
    record = _json(os.path.join(folder, PICKS_FILE))
    assert record["picks"] == list(OFFICIAL_PICKS["MyoPS"]) and record["unlabelled_cases"] == ["myops_training_108"]
    assert (_arr(os.path.join(folder, "labelsTr", "myops_training_108.nii.gz")) == 5).all()
    np.testing.assert_array_equal(_arr(os.path.join(folder, "labelsTr", "myops_training_107.nii.gz")),
                                  _expected(_myops_design(107, True), True))
    np.testing.assert_array_equal(_arr(os.path.join(folder, "labelsTr", "myops_training_101.nii.gz")),
                                  _expected(_myops_design(101, False), False))
    assert not os.path.exists(os.path.join(folder, "imagesTs"))
    # back to the default: the stale picks record goes
    folder = script.main([str(root), str(raw), "--overwrite"])
    assert not os.path.exists(os.path.join(folder, PICKS_FILE))


def test_myops_value_mapping_errors():
    with pytest.raises(NNWError, match=r"lab.nii.gz.*600"):    # scribble files hold no RV
        map_label_values(np.array([0.0, 3000.0, 599.98]), "lab.nii.gz")
    with pytest.raises(NNWError, match=r"lab.nii.gz.*700"):
        map_label_values(np.array([0.0, 200.0, 700.0]), "lab.nii.gz")
    label = map_label_values(np.array([0.0, 2999.99, 200.000008, 499.977, 1220.004, 2221.01]), "x")
    assert label.scribble and label.array.tolist() == [5, 0, 1, 2, 3, 4]
    label = map_label_values(np.array([0.0, 600.02, 200.0, 499.977, 1220.0, 2221.0]), "x")
    assert not label.scribble and label.array.tolist() == [0, 0, 1, 2, 3, 4]


def test_myops_source_errors(myops, tmp_path):
    root, _ = myops
    script = conversion_script("Dataset813_MyoPSScribble")
    labels = root / "MyoPS_scribbles"
    bad = _myops_design(104, True)
    bad[0, 3, 3] = 700
    _write_scaled_label(bad, labels / "myops_training_104_gd.nii.gz")
    with pytest.raises(NNWError, match=r"myops_training_104_gd.nii.gz.*700"):
        script.convert(str(root), str(tmp_path / "raw"), verbose=False)
    _write_scaled_label(_myops_design(104, True), labels / "myops_training_104_gd.nii.gz")

    images = root / "train25"
    _write_myops_subject(images, "myops_training_105", 105, de_spacing=(1.0, 1.0, 10.0))
    with pytest.raises(NNWError, match=r"myops_training_105_DE.nii.gz.*myops_training_105_C0.nii.gz"):
        script.convert(str(root), str(tmp_path / "raw"), verbose=False)
    _write_myops_subject(images, "myops_training_105", 105)

    os.remove(images / "myops_training_103_T2.nii.gz")
    with pytest.raises(NNWError, match="myops_training_103_T2.nii.gz"):
        script.convert(str(root), str(tmp_path / "raw"), verbose=False)
    _write(_channel(103, 2), images / "myops_training_103_T2.nii.gz")

    os.remove(labels / "myops_training_106_gd.nii.gz")
    with pytest.raises(NNWError, match="myops_training_106_gd.nii.gz is missing"):
        script.convert(str(root), str(tmp_path / "raw"), verbose=False)
    with pytest.raises(NNWError, match="--scribbles"):
        script.convert(str(root), str(tmp_path / "raw"), scribbles=str(tmp_path / "nowhere"), verbose=False)
    assert not (tmp_path / "raw").exists()                    # every error came before anything was written
