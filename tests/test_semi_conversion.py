"""Semi-supervised conversions: ACDC 10 % / 20 % (Dataset805/806) and Left Atrium in the UA-MT h5 layout
(Dataset807), on small synthetic sources laid out like the originals."""
import json
import os
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import conversion_script
from nnunet_weak.annotation.la_semi import convert_la_semi, read_h5_case, read_case_list
from nnunet_weak.annotation.nnunet_io import acdc_fold_patients, acdc_patient
from nnunet_weak.annotation.semi_acdc import (acdc_labelled_patients, acdc_semi_splits,
                                             labelled_fraction_per_fold)
from nnunet_weak.utilities.errors import NNWError
from test_conversion import FRAMES, _dense, write_acdc

SYNTH_PATIENTS = list(range(1, 11)) + list(range(21, 31))   # two fold blocks of 10 patients




def _arr(path):
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


pytestmark = pytest.mark.usefixtures("no_preprocessed")


@pytest.fixture
def acdc(tmp_path):
    return write_acdc(tmp_path / "ACDC", SYNTH_PATIENTS)


# ------------------------------------------------------------------------------------------------------ ACDC
@pytest.mark.parametrize("fraction,per_block", [(0.1, 2), (0.2, 4)])
def test_labelled_patients_per_block(fraction, per_block):
    labelled = acdc_labelled_patients(range(1, 101), fraction)
    assert labelled == sorted(labelled) and len(labelled) == 5 * per_block
    for fold in range(5):
        assert len([p for p in labelled if p in acdc_fold_patients(fold)]) == per_block
    assert acdc_labelled_patients(range(1, 101), fraction) == labelled               # fixed by the seed
    assert acdc_labelled_patients(range(1, 101), fraction, seed=1) != labelled


def test_ten_percent_is_subset_of_twenty_percent():
    assert set(acdc_labelled_patients(range(1, 101), 0.1)) < set(acdc_labelled_patients(range(1, 101), 0.2))
    with pytest.raises(NNWError, match="fraction"):
        acdc_labelled_patients(range(1, 101), 0.0)


@pytest.mark.parametrize("fraction", [0.1, 0.2])
def test_semi_splits_validate_on_labelled_patients_and_keep_the_fraction(fraction):
    cases = [f"patient{p:03d}_frame{f}" for p in range(1, 101) for f in FRAMES]
    labelled = acdc_labelled_patients(range(1, 101), fraction)
    splits = acdc_semi_splits(cases, labelled)
    assert len(splits) == 5
    for fold, split in enumerate(splits):
        block = acdc_fold_patients(fold)
        val_patients = {acdc_patient(c) for c in split["val"]}
        assert val_patients == {p for p in labelled if p in block}                  # every val patient labelled
        assert len(split["val"]) == 2 * len(val_patients)                           # both frames
        train_patients = {acdc_patient(c) for c in split["train"]}
        assert train_patients == set(range(1, 101)) - set(block)                    # same blocks as Dataset801
        assert not train_patients & val_patients
    assert labelled_fraction_per_fold(splits, labelled) == {k: pytest.approx(fraction) for k in range(5)}


def test_dataset805_conversion(acdc, tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "pre"))
    folder = conversion_script("Dataset805_ACDCSemi10").main([str(acdc), str(raw)])
    assert os.path.basename(folder) == "Dataset805_ACDCSemi10"
    with open(os.path.join(folder, "dataset.json")) as f:
        meta = json.load(f)
    labelled = meta["labelled_patients"]
    # 10 patients per block present: round(0.1 * 10) = 1 labelled per block, from each block
    assert len(labelled) == 2 and any(p <= 10 for p in labelled) and any(21 <= p <= 30 for p in labelled)
    assert labelled == acdc_labelled_patients(SYNTH_PATIENTS, 0.1)
    assert meta["labels"]["ignore"] == 4 and meta["numTraining"] == 2 * len(SYNTH_PATIENTS)
    for p in SYNTH_PATIENTS:
        for frame in FRAMES:
            case = f"patient{p:03d}_frame{frame}"
            label = _arr(os.path.join(folder, "labelsTr", f"{case}.nii.gz"))
            dense = _arr(os.path.join(folder, "labelsTr_dense", f"{case}.nii.gz"))
            assert np.array_equal(dense, _dense(p + int(frame)))
            if p in labelled:
                assert np.array_equal(label, dense)
            else:
                assert (label == 4).all()                                           # all-ignore
    with open(os.path.join(folder, "splits_final.json")) as f:
        splits = json.load(f)
    with open(tmp_path / "pre" / "Dataset805_ACDCSemi10" / "splits_final.json") as f:
        assert json.load(f) == splits
    assert splits == acdc_semi_splits([f"patient{p:03d}_frame{f}" for p in SYNTH_PATIENTS for f in FRAMES], labelled)
    for fold in (0, 1):                                                             # blocks present
        assert splits[fold]["val"] and all(acdc_patient(c) in labelled for c in splits[fold]["val"])
    with pytest.raises(NNWError, match="--overwrite"):
        conversion_script("Dataset805_ACDCSemi10").main([str(acdc), str(raw)])


def test_dataset806_labels_a_superset(acdc, tmp_path):
    raw = tmp_path / "raw"
    ten = conversion_script("Dataset805_ACDCSemi10").main([str(acdc), str(raw)])
    # the benchmark harness calls convert(); the command line calls main()
    twenty = conversion_script("Dataset806_ACDCSemi20").convert(str(acdc), str(raw), verbose=False)
    read = lambda folder: json.load(open(os.path.join(folder, "dataset.json")))["labelled_patients"]  # noqa: E731
    assert len(read(twenty)) == 4 and set(read(ten)) < set(read(twenty))


# ---------------------------------------------------------------------------------------------------- LA
LA_SHAPE = (12, 10, 6)   # x, y, z as in the h5 files


def _la_case(seed):
    rng = np.random.default_rng(seed)
    image = rng.standard_normal(LA_SHAPE).astype(np.float32)
    label = np.zeros(LA_SHAPE, dtype=np.uint8)
    label[3:8, 2:6, 1 + seed % 3:5] = 1
    return image, label


def _la_root(tmp_path, writer, n_train=10, n_test=3):
    root = tmp_path / "data"
    train = [f"CASE{i:02d}TR" for i in range(n_train)]
    test = [f"CASE{i:02d}TS" for i in range(n_test)]
    for i, case in enumerate(train + test):
        folder = root / "2018LA_Seg_Training Set" / case
        folder.mkdir(parents=True)
        writer(str(folder / "mri_norm2.h5"), *_la_case(i))
    (root / "train.list").write_text("\n".join(train) + "\n")
    # some forks list paths; both must work
    (root / "test.list").write_text("\n".join(f"../data/2018LA_Seg_Training Set/{c}/mri_norm2.h5" for c in test))
    return root, train, test


def _npy_writer(path, image, label):
    with open(path, "wb") as f:              # not h5: read back by an injected reader
        np.save(f, image)
        np.save(f, label)


def _npy_reader(path):
    with open(path, "rb") as f:
        return np.load(f), np.load(f)


def _check_la_dataset(folder, train, test, n_labelled):
    meta = json.load(open(os.path.join(folder, "dataset.json")))
    assert meta["labels"] == {"background": 0, "left_atrium": 1, "ignore": 2}
    assert meta["channel_names"] == {"0": "MRI"} and meta["numTraining"] == len(train)
    assert meta["labelled_cases"] == train[:n_labelled]
    for i, case in enumerate(train + test):
        image, label = _la_case(i)
        sub = "Tr" if case in train else "Ts"
        img = sitk.ReadImage(os.path.join(folder, f"images{sub}", f"{case}_0000.nii.gz"))
        assert img.GetSize() == LA_SHAPE and np.allclose(img.GetSpacing(), (0.625,) * 3)
        assert np.allclose(sitk.GetArrayFromImage(img), image.transpose(2, 1, 0))
        written = _arr(os.path.join(folder, f"labels{sub}", f"{case}.nii.gz"))
        if case in test or case in train[:n_labelled]:
            assert np.array_equal(written, label.transpose(2, 1, 0))
        else:
            assert (written == 2).all()
        if case in train:
            assert np.array_equal(_arr(os.path.join(folder, "labelsTr_dense", f"{case}.nii.gz")),
                                  label.transpose(2, 1, 0))
        else:
            assert not os.path.exists(os.path.join(folder, "labelsTr", f"{case}.nii.gz"))
    splits = json.load(open(os.path.join(folder, "splits_final.json")))
    assert splits == [{"train": sorted(train), "val": sorted(train[:n_labelled])}]


def test_la_conversion_layout_with_injected_reader(tmp_path):
    root, train, test = _la_root(tmp_path, _npy_writer)
    assert read_case_list(str(root / "test.list")) == test
    folder = convert_la_semi(str(root), str(tmp_path / "raw"), fraction=0.2, dataset_id=807, reader=_npy_reader,
                             verbose=False)
    assert os.path.basename(folder) == "Dataset807_LASemi2"
    _check_la_dataset(folder, train, test, 2)
    # UA-MT's settings name their own datasets; other counts need an id
    with pytest.raises(NNWError, match="--dataset-id"):
        convert_la_semi(str(tmp_path), str(tmp_path / "raw"), n_labelled=3, reader=_npy_reader)
    with pytest.raises(NNWError, match="exactly one"):
        convert_la_semi(str(root), str(tmp_path / "raw"), n_labelled=2, fraction=0.2, reader=_npy_reader)


def test_la_reader_names_missing_h5py(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)      # import h5py -> ImportError
    with pytest.raises(NNWError, match="pip install h5py"):
        read_h5_case(str(tmp_path / "mri_norm2.h5"))


def test_la_conversion_from_h5(tmp_path):
    h5py = pytest.importorskip("h5py")

    def writer(path, image, label):
        with h5py.File(path, "w") as f:
            f.create_dataset("image", data=image)
            f.create_dataset("label", data=label)

    root, train, test = _la_root(tmp_path, writer, n_train=10, n_test=2)
    script = conversion_script("Dataset807_LASemi")
    folder = script.main([str(tmp_path), str(tmp_path / "raw"), "--labelled", "8"])   # ROOT/data is found too
    assert os.path.basename(folder) == "Dataset807_LASemi8"
    _check_la_dataset(folder, train, test, 8)
