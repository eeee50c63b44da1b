"""PA-Seg conversions (Dataset811 VS, Dataset812 BraTS) on tiny synthetic files laid out like the originals."""
import json
import os

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import conversion_script
from nnunet_weak.annotation.paseg_conversion import (VS_CROP_SIZE, crop_window, gt_centred_window, hashed_split,
                                                     read_split_csv)
from nnunet_weak.annotation.points import points_to_volume, read_points_json
from nnunet_weak.utilities.errors import NNWError

SHAPE = (12, 24, 24)                 # z, y, x
VS_SPACING = (0.6, 0.6, 1.5)         # x, y, z (anisotropic like the T2 scans)
ORIGIN = (-5.0, 3.0, 7.0)
VS_SPLIT = [("vs_gk_1", "training"), ("vs_gk_2", "training"), ("vs_gk_3", "training"), ("vs_gk_4", "validation"),
            ("vs_gk_5", "inference")]
BRATS = {"HGG": ["BraTS19_TCIA01_1_1", "BraTS19_CBICA_AAA_1"],
         "LGG": ["BraTS19_TCIA10_2_1", "BraTS19_2013_3_1", "BraTS19_TMC_4_1"]}




pytestmark = pytest.mark.usefixtures("no_preprocessed")


def _write(array, path, spacing=VS_SPACING, origin=ORIGIN):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    sitk.WriteImage(img, str(path))


def _arr(path):
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _blob(centre, radii):
    zz, yy, xx = np.indices(SHAPE)
    return sum(((g - c) / r) ** 2 for g, c, r in zip((zz, yy, xx), centre, radii)) <= 1.0


def _image(mask, rng, brain=None):
    """Smooth MR-like intensities: tumour 300, tissue 100 (small noise); 0 outside ``brain`` (BraTS)."""
    img = np.where(mask, 300.0, 100.0) + rng.normal(0, 0.2, SHAPE)
    if brain is not None:
        img[~brain] = 0.0
    return img.astype(np.float32)


@pytest.fixture
def vs(tmp_path):
    root = tmp_path / "VS"
    rng = np.random.default_rng(0)
    for i, (case, _) in enumerate(VS_SPLIT):
        mask = _blob((5 + i % 2, 11 + i, 12 - i), (3, 5, 4))
        _write(_image(mask, rng).astype(np.int16), root / "image" / f"{case}_T2.nii.gz")
        _write(mask.astype(np.uint8), root / "label" / f"{case}_Label.nii.gz")
    (root / "split_VS.csv").write_text("".join(f"{c},{p}\n" for c, p in VS_SPLIT))
    return root


@pytest.fixture
def brats(tmp_path):
    release = tmp_path / "BraTS2019" / "MICCAI_BraTS_2019_Data_Training"
    rng = np.random.default_rng(1)
    brain = _blob((6, 12, 12), (6, 11, 11))
    for grade, cases in BRATS.items():
        for j, case in enumerate(cases):
            seg = np.zeros(SHAPE, dtype=np.uint8)
            core = _blob((6, 8 + j, 9), (3, 4, 4))
            seg[core] = 2
            seg[core & _blob((6, 8 + j, 9), (2, 2, 2))] = 4
            if j == 1:  # a second, separate tumour: its own 7 points (values 3 / 4 in a point volume)
                seg[_blob((6, 16, 16), (2, 3, 3))] = 1
            _write(_image(seg > 0, rng, brain), release / grade / case / f"{case}_flair.nii.gz", (1.0, 1.0, 1.0))
            _write(seg, release / grade / case / f"{case}_seg.nii.gz", (1.0, 1.0, 1.0))
    return release


def _check_common(out, n_train, n_test, channel):
    ds = json.load(open(os.path.join(out, "dataset.json")))
    assert ds["labels"] == {"background": 0, "tumour": 1, "ignore": 2}
    assert ds["labels"]["ignore"] == max(ds["labels"].values())
    assert ds["channel_names"] == {"0": channel} and ds["numTraining"] == n_train
    tr = sorted(os.listdir(os.path.join(out, "imagesTr")))
    assert len(tr) == n_train and all(f.endswith("_0000.nii.gz") for f in tr)
    cases = [f[:-len("_0000.nii.gz")] for f in tr]
    for folder in ("labelsTr", "labelsTr_dense"):
        assert sorted(os.listdir(os.path.join(out, folder))) == [f"{c}.nii.gz" for c in cases]
    assert sorted(os.listdir(os.path.join(out, "points"))) == [f"{c}.json" for c in cases]
    assert len(os.listdir(os.path.join(out, "imagesTs"))) == n_test == len(os.listdir(os.path.join(out, "labelsTs")))
    tp = seeds = 0
    for c in cases:
        lab = _arr(os.path.join(out, "labelsTr", f"{c}.nii.gz"))
        gt = _arr(os.path.join(out, "labelsTr_dense", f"{c}.nii.gz"))
        assert set(np.unique(lab)) == {0, 1, 2} and set(np.unique(gt)) == {0, 1}
        tp, seeds = tp + np.count_nonzero((lab == 1) & (gt == 1)), seeds + np.count_nonzero(lab == 1)
    assert tp / seeds > 0.9  # expanded seeds lie inside the tumour
    quality = json.load(open(os.path.join(out, "seed_quality.json")))
    assert quality["cases"] == n_train and quality["classes"]["tumour"]["micro"]["precision"] > 0.9
    assert os.path.isfile(os.path.join(out, "seed_quality.csv"))
    return cases


def test_vs_conversion_full_volume(vs, tmp_path):
    module = conversion_script("Dataset811_VSPoints")
    module.main([str(vs), str(tmp_path / "raw")])
    out = tmp_path / "raw" / "Dataset811_VSPoints"
    _check_common(str(out), 4, 1, "T2")
    assert json.load(open(out / "splits_final.json")) == [
        {"train": [c for c, p in VS_SPLIT if p == "training"], "val": [c for c, p in VS_SPLIT if p == "validation"]}]
    assert os.listdir(out / "imagesTs") == ["vs_gk_5_0000.nii.gz"]
    img = sitk.ReadImage(str(out / "imagesTr" / "vs_gk_1_0000.nii.gz"))
    assert img.GetSize() == SHAPE[::-1] and np.allclose(img.GetSpacing(), VS_SPACING)
    assert np.allclose(img.GetOrigin(), ORIGIN)
    np.testing.assert_array_equal(_arr(out / "labelsTs" / "vs_gk_5.nii.gz"),
                                  _arr(vs / "label" / "vs_gk_5_Label.nii.gz"))
    assert len(read_points_json(str(out / "points" / "vs_gk_2.json"))) == 7


def _pa_seg_crop(array, mask, size):
    """PA-Seg's data/VS/image_crop.py written out: symmetric zero pad to the window, centre on the GT box, clip."""
    pad = [(max(s - n, 0) // 2, max(s - n, 0) - max(s - n, 0) // 2) for n, s in zip(array.shape, size)]
    array, mask = np.pad(array, pad), np.pad(mask, pad)
    idx = np.nonzero(mask)
    start = [min(max(0, int((i.min() + i.max()) / 2) - s // 2), n - s) for i, s, n in zip(idx, size, array.shape)]
    return array[tuple(slice(a, a + s) for a, s in zip(start, size))]


@pytest.mark.parametrize("size", [(8, 16, 30), VS_CROP_SIZE, (5, 24, 9)])
def test_gt_centred_window_reproduces_pa_seg_crop(size):
    rng = np.random.default_rng(3)
    image = rng.random(SHAPE)
    for centre in ((1, 2, 20), (6, 12, 12), (10, 22, 1)):
        mask = _blob(centre, (1, 2, 2))
        start = gt_centred_window(mask, size)
        np.testing.assert_array_equal(crop_window(image, start, size), _pa_seg_crop(image, mask, size))


def test_vs_crop_and_official_points_match_simulated(vs, tmp_path):
    module = conversion_script("Dataset811_VSPoints")
    module.main([str(vs), str(tmp_path / "sim"), "--crop-gt-centred"])
    sim = tmp_path / "sim" / "Dataset811_VSPoints"
    img = sitk.ReadImage(str(sim / "imagesTs" / "vs_gk_5_0000.nii.gz"))  # test cases are cropped too
    assert img.GetSize() == VS_CROP_SIZE[::-1]
    src = sitk.ReadImage(str(vs / "image" / "vs_gk_5_T2.nii.gz"))
    start = gt_centred_window(_arr(vs / "label" / "vs_gk_5_Label.nii.gz"), VS_CROP_SIZE)
    assert np.allclose(img.GetOrigin(), src.TransformContinuousIndexToPhysicalPoint([float(v) for v in start[::-1]]))

    # official point volumes (value 1 background, 2 foreground) on the cropped grid, from the simulated clicks
    points_dir = tmp_path / "annotation_7points"
    for case, phase in VS_SPLIT[:4]:
        volume = points_to_volume(read_points_json(str(sim / "points" / f"{case}.json")), VS_CROP_SIZE)
        assert set(np.unique(volume)) == {0, 1, 2}
        _write(volume, points_dir / f"{case}_7points.nii.gz")
    module.main([str(vs), str(tmp_path / "official"), "--crop-gt-centred", "--points", str(points_dir)])
    official = tmp_path / "official" / "Dataset811_VSPoints"
    for case, _ in VS_SPLIT[:4]:
        np.testing.assert_array_equal(_arr(official / "labelsTr" / f"{case}.nii.gz"),
                                      _arr(sim / "labelsTr" / f"{case}.nii.gz"))

    with pytest.raises(NNWError, match=r"vs_gk_1_7points\.nii\.gz.*--crop-gt-centred"):  # points on the crop grid
        module.main([str(vs), str(tmp_path / "uncropped"), "--points", str(points_dir)])
    os.remove(points_dir / "vs_gk_4_7points.nii.gz")
    with pytest.raises(NNWError, match=r"vs_gk_4_7points\.nii\.gz"):
        module.main([str(vs), str(tmp_path / "missing"), "--crop-gt-centred", "--points", str(points_dir)])
    assert not (tmp_path / "missing").exists()  # checked before writing anything


def test_brats_conversion_with_split_and_official_points(brats, tmp_path):
    module = conversion_script("Dataset812_BraTSPoints")
    split = tmp_path / "split_BraTS.csv"
    split.write_text("BraTS19_TCIA01_1_1,training\nBraTS19_TCIA10_2_1,training\nBraTS19_CBICA_AAA_1,validation\n"
                     "BraTS19_2013_3_1,inference\n")
    module.main([str(brats.parent), str(tmp_path / "sim"), "--split", str(split)])
    out = tmp_path / "sim" / "Dataset812_BraTSPoints"
    cases = _check_common(str(out), 3, 2, "FLAIR")
    assert json.load(open(out / "splits_final.json")) == [
        {"train": ["BraTS19_TCIA01_1_1", "BraTS19_TCIA10_2_1"], "val": ["BraTS19_CBICA_AAA_1"]}]
    # the unlisted case joins the listed inference case (§8.10)
    assert sorted(os.listdir(out / "imagesTs")) == ["BraTS19_2013_3_1_0000.nii.gz", "BraTS19_TMC_4_1_0000.nii.gz"]
    for c in cases:
        grade = "HGG" if c in BRATS["HGG"] else "LGG"
        raw = _arr(brats / grade / c / f"{c}_flair.nii.gz")
        lab = _arr(out / "labelsTr" / f"{c}.nii.gz")
        assert np.all(lab[raw == raw.min()] == 0)  # minimum-intensity rule
        np.testing.assert_array_equal(_arr(out / "labelsTr_dense" / f"{c}.nii.gz"),
                                      _arr(brats / grade / c / f"{c}_seg.nii.gz") > 0)
    assert len(read_points_json(str(out / "points" / "BraTS19_CBICA_AAA_1.json"))) == 14  # two tumours

    points_dir = tmp_path / "annotation_7points"
    for c in cases:
        volume = points_to_volume(read_points_json(str(out / "points" / f"{c}.json")), SHAPE)
        _write(volume, points_dir / f"{c}_7points.nii.gz", (1.0, 1.0, 1.0))
    assert set(np.unique(_arr(points_dir / "BraTS19_CBICA_AAA_1_7points.nii.gz"))) == {0, 1, 2, 3, 4}
    module.main([str(brats), str(tmp_path / "official"), "--split", str(split), "--points", str(points_dir)])
    official = tmp_path / "official" / "Dataset812_BraTSPoints"
    for c in cases:
        np.testing.assert_array_equal(_arr(official / "labelsTr" / f"{c}.nii.gz"),
                                      _arr(out / "labelsTr" / f"{c}.nii.gz"))


def test_brats_default_split_is_deterministic(brats, tmp_path):
    module = conversion_script("Dataset812_BraTSPoints")
    out = module.convert(str(brats), str(tmp_path / "raw"), verbose=False)  # the folder holding HGG/ and LGG/
    all_cases = sorted(c for cases in BRATS.values() for c in cases)
    phases = hashed_split(all_cases, 27 / 335, 64 / 335)
    assert sorted(phases) == all_cases and list(phases.values()).count("inference") == 1
    assert list(phases.values()).count("validation") == 1
    splits = json.load(open(os.path.join(out, "splits_final.json")))
    assert splits == [{"train": [c for c in all_cases if phases[c] == "training"],
                       "val": [c for c in all_cases if phases[c] == "validation"]}]
    assert os.listdir(os.path.join(out, "imagesTs")) == [f"{c}_0000.nii.gz" for c in all_cases
                                                         if phases[c] == "inference"]
    many = [f"case_{i:03d}" for i in range(335)]
    counts = list(hashed_split(many, 27 / 335, 64 / 335).values())
    assert (counts.count("training"), counts.count("validation"), counts.count("inference")) == (244, 27, 64)


def test_refuses_to_overwrite(vs, tmp_path):
    module = conversion_script("Dataset811_VSPoints")
    raw = tmp_path / "raw"
    out = module.convert(str(vs), str(raw), verbose=False)
    with pytest.raises(NNWError, match=r"Dataset811_VSPoints.*--overwrite"):
        module.main([str(vs), str(raw)])
    users = os.path.join(out, "labelsTs", "users_own.nii.gz")   # not the conversion's: --overwrite keeps it
    open(users, "w").close()
    ours = os.path.join(out, "dataset.json")
    content = open(ours).read()
    open(ours, "w").write("{}")                                   # the conversion's: --overwrite rewrites it
    module.main([str(vs), str(raw), "--overwrite"])
    assert os.path.exists(users) and open(ours).read() == content


def test_split_csv_reading_and_errors(vs, brats, tmp_path):
    good = tmp_path / "with_header.csv"
    good.write_text("name,phase\n\nvs_gk_1 , training\nvs_gk_2,testing\nvs_gk_3,val,\n")
    assert read_split_csv(str(good)) == {"vs_gk_1": "training", "vs_gk_2": "inference", "vs_gk_3": "validation"}
    vs_module, brats_module = conversion_script("Dataset811_VSPoints"), conversion_script("Dataset812_BraTSPoints")
    for name, text in (("bad_columns.csv", "vs_gk_1,training\nvs_gk_2,training,extra\n"),
                       ("bad_phase.csv", "vs_gk_1,training\nvs_gk_2,holdout\n"),
                       ("duplicate.csv", "vs_gk_1,training\nvs_gk_1,validation\n"),
                       ("no_val.csv", "vs_gk_1,training\nvs_gk_2,inference\n")):
        (tmp_path / name).write_text(text)
        with pytest.raises(NNWError, match=name):
            vs_module.convert(str(vs), str(tmp_path / "raw"), split=str(tmp_path / name), verbose=False)
    with pytest.raises(NNWError, match=r"absent\.csv"):
        brats_module.convert(str(brats), str(tmp_path / "raw"), split=str(tmp_path / "absent.csv"), verbose=False)
    (tmp_path / "unknown_case.csv").write_text("BraTS19_TCIA01_1_1,training\nBraTS19_NOPE_1,validation\n")
    with pytest.raises(NNWError, match=r"unknown_case\.csv.*BraTS19_NOPE_1"):
        brats_module.convert(str(brats), str(tmp_path / "raw"), split=str(tmp_path / "unknown_case.csv"),
                             verbose=False)
    with pytest.raises(NNWError, match="split_VS.csv"):  # default split file absent
        vs_module.convert(str(tmp_path), str(tmp_path / "raw"), verbose=False)
    assert not (tmp_path / "raw").exists()


def test_missing_source_files(vs, brats, tmp_path):
    os.remove(vs / "image" / "vs_gk_3_T2.nii.gz")
    with pytest.raises(NNWError, match=r"vs_gk_3_T2\.nii\.gz"):
        conversion_script("Dataset811_VSPoints").convert(str(vs), str(tmp_path / "raw"), verbose=False)
    os.remove(brats / "LGG" / "BraTS19_TMC_4_1" / "BraTS19_TMC_4_1_seg.nii.gz")
    module = conversion_script("Dataset812_BraTSPoints")
    with pytest.raises(NNWError, match=r"BraTS19_TMC_4_1_seg\.nii\.gz"):
        module.convert(str(brats.parent), str(tmp_path / "raw"), verbose=False)
    with pytest.raises(NNWError, match="MICCAI_BraTS_2019_Data_Training"):
        module.convert(str(tmp_path / "VS"), str(tmp_path / "raw"), verbose=False)
    assert not (tmp_path / "raw").exists()
