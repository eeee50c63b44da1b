"""benchmarks/gpu_check.py on the CPU (--tiny): every trainer's steps, the CLI round trips, the report, and the
nibabel stand-in for SimpleITK that the GPU machine runs with (forced here, so CI runs the GPU machine's IO)."""
import importlib.util
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "benchmarks", "gpu_check.py")
_spec = importlib.util.spec_from_file_location("sitk_standin", os.path.join(REPO, "benchmarks", "sitk_standin",
                                                                             "SimpleITK.py"))
standin = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(standin)
_gspec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
gpu_check = importlib.util.module_from_spec(_gspec)
_gspec.loader.exec_module(gpu_check)

DIRECTION = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]).ravel()


def run_check(*args):
    return subprocess.run([sys.executable, SCRIPT, "--device", "cpu", "--tiny", "--sitk-standin", *args],
                          capture_output=True, text=True)


@pytest.mark.parametrize("writer,reader", [("standin", "real"), ("real", "standin")])
def test_standin_files_read_the_same_with_real_simpleitk(tmp_path, writer, reader):
    modules = {"standin": standin, "real": sitk}
    w, r = modules[writer], modules[reader]
    array = np.random.default_rng(0).random((5, 7, 9)).astype(np.float32)
    image = w.GetImageFromArray(array)
    image.SetSpacing((1.5, 1.25, 8.0))
    image.SetOrigin((3.0, -4.0, 5.0))
    image.SetDirection(DIRECTION)
    path = str(tmp_path / "x.nii.gz")
    w.WriteImage(image, path, True)
    back = r.ReadImage(path)
    assert np.array_equal(r.GetArrayFromImage(back), array)
    assert np.allclose(back.GetSpacing(), (1.5, 1.25, 8.0))
    assert np.allclose(back.GetOrigin(), (3.0, -4.0, 5.0))
    assert np.allclose(back.GetDirection(), DIRECTION)

    labels = (np.arange(6 * 8).reshape(6, 8) % 4).astype(np.uint8)      # 2D, as nnU-Net writes 2D segmentations
    flat = w.GetImageFromArray(labels)
    flat.SetSpacing((0.5, 0.75))
    w.WriteImage(flat, str(tmp_path / "y.nii.gz"))
    back = r.ReadImage(str(tmp_path / "y.nii.gz"))
    assert back.GetDimension() == 2 and np.array_equal(r.GetArrayFromImage(back), labels)
    assert np.allclose(back.GetSpacing(), (0.5, 0.75))


def test_standin_names_itself_where_it_cannot_serve(tmp_path):
    with pytest.raises(NotImplementedError, match="NIfTI only"):
        standin.ReadImage(str(tmp_path / "x.mha"))
    with pytest.raises(AttributeError, match="stand-in.*ImageFileReader"):
        standin.ImageFileReader
    with pytest.raises(NotImplementedError, match="stand-in"):
        standin.GetImageFromArray(np.zeros((2, 3, 4, 5)))


@pytest.fixture(scope="module")
def tiny_check(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("gpu_check"))
    result = run_check("--out", out)
    with open(os.path.join(out, "gpu_check.json")) as f:
        report = json.load(f)
    return out, result, report


def test_every_trainer_steps_with_finite_losses(tiny_check):
    out, result, report = tiny_check
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    expected = gpu_check.parse_trainers([t for t, _ in gpu_check.TRAINERS])
    assert [(r["trainer"], r["configuration"]) for r in report["steps"]] == expected
    assert {c for _, c in expected} == {"2d", "3d_fullres"}
    for r in report["steps"]:
        assert r["status"] == "ok", r
        assert r["finite"] and all(math.isfinite(v) for v in r["losses"]) and len(r["losses"]) == 2
        assert r["step_s"] > 0 and r["inference_s"] > 0 and r["batch_size"] >= 1
    budget = {r["configuration"]: r for r in report["steps"] if r["trainer"] == "nnUNetTrainerBudget"}
    assert all(r["step_ratio"] == 1.0 for r in budget.values())
    pclmix = next(r for r in report["steps"] if r["trainer"] == "nnUNetTrainerPCLMix")
    assert pclmix["step_ratio"] == pytest.approx(pclmix["step_s"] / budget["2d"]["step_s"])
    assert report["environment"]["sitk_standin"] is True


def test_round_trips_resume_predict_and_evaluate(tiny_check):
    out, _, report = tiny_check
    rows = {r["trainer"]: r for r in report["round_trips"]}
    assert set(rows) == set(gpu_check.ROUND_TRIPS)
    for trainer, r in rows.items():
        assert r["status"] == "ok" and r["epochs_after_resume"] == 2, r
        assert set(r["dice"]) == set(gpu_check.CLASSES) and 0.0 <= r["mean_dice"] <= 1.0
        predictions = os.listdir(os.path.join(out, "work", "predictions", trainer))
        assert sorted(p for p in predictions if p.endswith(".nii.gz")) == ["gpu_008.nii.gz", "gpu_009.nii.gz"]
        assert r["compile"] is False                     # the CPU never compiles (nnU-Net's rule)
    text = open(os.path.join(out, "gpu_check.md")).read()
    for trainer, _ in gpu_check.TRAINERS:
        assert f"| {trainer} |" in text


def test_a_failing_trainer_gets_its_error_and_the_check_goes_on(tiny_check):
    out, _, _ = tiny_check
    again = os.path.join(out, "again")
    result = run_check("--out", again, "--workdir", os.path.join(out, "work"), "--round-trips",
                       "--trainers", "nnUNetTrainerNoSuchThing:2d", "nnUNetTrainerBudget:2d")
    assert result.returncode == 1
    rows = json.load(open(os.path.join(again, "gpu_check.json")))["steps"]
    assert rows[0]["status"] == "failed" and "nnUNetTrainerNoSuchThing" in rows[0]["error"]
    assert "\n" not in rows[0]["error"]
    assert rows[1]["status"] == "ok"
    assert "failed: RuntimeError" in open(os.path.join(again, "gpu_check.md")).read()
    # the earlier preparation was reused, not redone
    log = os.path.join(again, "gpu_check.log")
    assert not os.path.exists(log) or "nnUNetv2_plan_and_preprocess" not in open(log).read()


def test_deadline_skips_and_says_so(tiny_check):
    out, _, _ = tiny_check
    late = os.path.join(out, "late")
    result = run_check("--out", late, "--workdir", os.path.join(out, "work"), "--deadline-s", "0",
                       "--trainers", "nnUNetTrainerBudget:2d")
    assert result.returncode == 0
    report = json.load(open(os.path.join(late, "gpu_check.json")))
    assert [r["status"] for r in report["steps"] + report["round_trips"]] == ["not run"] * 3


def test_a_workdir_it_did_not_write_is_refused_and_kept(tmp_path):
    own = tmp_path / "mine"
    own.mkdir()
    (own / "keep.txt").write_text("user data")
    result = run_check("--out", str(tmp_path / "out"), "--workdir", str(own))
    assert result.returncode != 0
    assert "did not write" in result.stderr + result.stdout and "--workdir" in result.stderr + result.stdout
    assert os.listdir(own) == ["keep.txt"] and (own / "keep.txt").read_text() == "user data"


def test_configurations_limit_what_is_planned_and_checked(tmp_path):
    out = tmp_path / "out"
    result = run_check("--out", str(out), "--configurations", "2d", "--round-trips", "--compile",
                       "--trainers", "nnUNetTrainerDKUXNet", "nnUNetTrainerBudget")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.load(open(out / "gpu_check.json"))
    assert [(r["trainer"], r["configuration"]) for r in report["steps"]] == [("nnUNetTrainerBudget", "2d")]
    assert report["steps"][0]["compiled"] is False          # nnU-Net never compiles on the CPU, even when asked
    preprocessed = os.listdir(out / "work" / "nnUNet_preprocessed" / gpu_check.TARGET)
    assert "nnUNetPlans_2d" in preprocessed and "nnUNetPlans_3d_fullres" not in preprocessed
