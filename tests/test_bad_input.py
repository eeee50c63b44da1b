"""Bad input as a new user gives it: nothing a user owns is lost, nothing wrong passes silently. Each test
reproduces one defect found by trying broken copies of the data and fails on the code before its fix."""
import json
import os

import numpy as np
import pytest

from conftest import conversion_script
from nnunet_weak.annotation.commands import simulate_scribbles_dataset
from nnunet_weak.annotation.nnunet_io import OUTPUTS_MANIFEST
from nnunet_weak.utilities.errors import NNWError
from test_conversion import _write, write_acdc, write_mscmr

pytestmark = pytest.mark.usefixtures("no_preprocessed")


@pytest.fixture
def acdc(tmp_path):
    return write_acdc(tmp_path / "ACDC", (1, 21, 41))


def _snapshot(folder):
    """{relative path: bytes} of every file under ``folder``."""
    out = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = f.read()
    return out


# ----------------------------------------------------------------------------------------------- data loss
def test_overwrite_keeps_files_the_conversion_never_wrote(acdc, tmp_path):
    """Defect 1: --overwrite removed imagesTs/ and labelsTs/ although 801 never writes them."""
    module = conversion_script("Dataset801_ACDCScribble")
    out = module.convert(str(acdc), str(tmp_path / "raw"), verbose=False)
    os.makedirs(os.path.join(out, "imagesTs"))
    mine = os.path.join(out, "imagesTs", "x_0000.nii.gz")
    _write(np.zeros((3, 16, 16), np.float32), mine)
    notes = os.path.join(out, "labelsTr", "my_notes.txt")
    open(notes, "w").write("mine")
    module.convert(str(acdc), str(tmp_path / "raw"), overwrite=True, verbose=False)
    assert os.path.isfile(mine) and open(notes).read() == "mine"
    written = json.load(open(os.path.join(out, OUTPUTS_MANIFEST)))["files"]
    assert "dataset.json" in written and "imagesTs/x_0000.nii.gz" not in written and len(written) == 2 + 3 * 6


def test_overwrite_removes_what_an_earlier_conversion_wrote_and_this_one_does_not(tmp_path):
    source, test = write_mscmr(tmp_path, with_test=True)
    module = conversion_script("Dataset803_MSCMRScribble")
    out = module.convert(str(source), str(tmp_path / "raw"), test=str(test), verbose=False)
    _write(np.zeros((3, 16, 16), np.int16), os.path.join(out, "imagesTs", "user_0000.nii.gz"))
    module.convert(str(source), str(tmp_path / "raw"), overwrite=True, verbose=False)   # no --test this time
    assert os.listdir(os.path.join(out, "imagesTs")) == ["user_0000.nii.gz"]
    assert not os.path.exists(os.path.join(out, "labelsTs"))   # emptied of our files, so removed


def test_bad_case_found_half_way_leaves_the_earlier_dataset_untouched(acdc, tmp_path):
    """Defect 2: --overwrite deleted first and validated later (20 images, 19 labels, no dataset.json)."""
    module = conversion_script("Dataset801_ACDCScribble")
    raw = tmp_path / "raw"
    out = module.convert(str(acdc), str(raw), verbose=False)
    before = _snapshot(out)
    # the last frame of the last patient is broken: everything before it would have been written already
    _write(np.zeros((2, 16, 16), np.uint8), acdc / "training" / "patient041" / "patient041_frame12_gt.nii.gz")
    with pytest.raises(NNWError, match="patient041_frame12_gt.nii.gz"):
        module.convert(str(acdc), str(raw), overwrite=True, verbose=False)
    assert _snapshot(out) == before
    assert os.listdir(raw) == ["Dataset801_ACDCScribble"]   # no half-written staging folder left behind


def test_preprocessed_splits_written_by_a_conversion_are_replaced_with_overwrite(tmp_path):
    from nnunet_weak.annotation.semi_acdc import acdc_labelled_patients, convert_acdc_semi
    source = write_acdc(tmp_path / "ACDC", (1, 2, 3, 21))
    other_seed = next(s for s in range(1, 20)
                      if acdc_labelled_patients((1, 2, 3, 21), 0.5, s) != acdc_labelled_patients((1, 2, 3, 21), 0.5, 0))
    pre = str(tmp_path / "pre")
    name, raw = "Dataset805_ACDCSemi10", str(tmp_path / "raw")
    convert_acdc_semi(str(source), raw, name, 0.5, seed=0, verbose=False, preprocessed=pre)
    splits = tmp_path / "pre" / name / "splits_final.json"
    first = json.loads(splits.read_text())
    with pytest.raises(NNWError, match="--overwrite"):
        convert_acdc_semi(str(source), raw, name, 0.5, seed=other_seed, verbose=False, preprocessed=pre)
    convert_acdc_semi(str(source), raw, name, 0.5, seed=other_seed, overwrite=True, verbose=False, preprocessed=pre)
    assert json.loads(splits.read_text()) != first
    assert json.loads(splits.read_text()) == json.loads((tmp_path / "raw" / name / "splits_final.json").read_text())


def test_simulate_scribbles_refuses_a_target_that_links_to_the_source(acdc, tmp_path):
    """Defect 3: normpath let a symlink to the source pass, and --overwrite deleted the source's files."""
    dense = conversion_script("Dataset802_ACDCDense").convert(str(acdc), str(tmp_path / "raw"), verbose=False)
    before = _snapshot(dense)
    link = tmp_path / "raw" / "Dataset809_Link"
    os.symlink(dense, link)
    with pytest.raises(NNWError, match="is the source dataset"):
        simulate_scribbles_dataset(dense, str(link), overwrite=True, verbose=False)
    assert _snapshot(dense) == before


def test_simulate_scribbles_warns_about_images_without_labels(acdc, tmp_path, capsys):
    """Defect 9: an image without a label file was skipped without a word."""
    dense = conversion_script("Dataset802_ACDCDense").convert(str(acdc), str(tmp_path / "raw"), verbose=False)
    _write(np.zeros((3, 16, 16), np.float32), os.path.join(dense, "imagesTr", "extra_case_0000.nii.gz"))
    simulate_scribbles_dataset(dense, str(tmp_path / "raw" / "Dataset808_Sim"),
                                                             verbose=False)
    err = capsys.readouterr().err
    assert "1 image(s)" in err and "extra_case" in err and "no label file" in err


# ------------------------------------------------------------------------------------------------ checkpoints
def test_checkpoint_written_once_atomically_with_extra_state(use_env, monkeypatch, tmp_path):
    """Defect 4: the checkpoint was written, read back and written again; a kill in between left a file --c
    refused or could not read. Now a failed write leaves the previous checkpoint as it was."""
    import io
    import torch
    from nnunetv2.run.run_training import get_trainer_from_args
    from nnunet_weak.training.weak_base import EXTRA_STATE_KEY

    trainer = get_trainer_from_args("981", "2d", 0, "nnUNetTrainerPCE", device=torch.device("cpu"))
    trainer.initialize()
    trainer.register_extra_state("probe", torch.nn.Linear(2, 2))
    path = str(tmp_path / "checkpoint_latest.pth")
    trainer.save_checkpoint(path)
    saved = torch.load(path, map_location="cpu", weights_only=False)
    assert set(saved[EXTRA_STATE_KEY]) == {"probe"} and "network_weights" in saved
    before = open(path, "rb").read()

    real_save = torch.save

    def dies_half_way(obj, f, *args, **kwargs):
        if isinstance(f, io.BytesIO):
            return real_save(obj, f, *args, **kwargs)
        handle = open(f, "wb") if isinstance(f, str) else f
        handle.write(b"partial")
        raise KeyboardInterrupt("killed while saving")
    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        trainer.save_checkpoint(path)
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["checkpoint_latest.pth"]


# ------------------------------------------------------------------------------------------------- evaluator
@pytest.fixture
def dense_pair(tmp_path):
    """(pred folder, ref folder, dataset.json) of two cases whose prediction equals the dense reference."""
    import SimpleITK as sitk
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    pred.mkdir()
    ref.mkdir()
    for k in range(2):
        seg = np.zeros((4, 12, 12), np.uint8)
        seg[1:3, 2:8, 2:8] = 1
        seg[1:3, 4:6, 4:6] = 2
        for folder in (pred, ref):
            image = sitk.GetImageFromArray(seg)
            image.SetSpacing((1.0, 1.0, 5.0))
            sitk.WriteImage(image, str(folder / f"case_{k}.nii.gz"))
    dj = tmp_path / "dataset.json"
    dj.write_text(json.dumps({"labels": {"background": 0, "a": 1, "b": 2, "ignore": 3}, "file_ending": ".nii.gz"}))
    return str(pred), str(ref), str(dj)


def test_evaluator_refuses_weak_labels_as_reference(dense_pair):
    """Defect 5: a perfect prediction scored Dice 0.26 against scribbles, without a word."""
    import SimpleITK as sitk
    from nnunet_weak.evaluation.evaluate_dense import main
    pred, ref, dj = dense_pair
    path = os.path.join(ref, "case_1.nii.gz")
    scribbled = sitk.GetArrayFromImage(sitk.ReadImage(path))
    scribbled[:, 6:, :] = 3          # not annotated
    image = sitk.GetImageFromArray(scribbled)
    image.SetSpacing((1.0, 1.0, 5.0))
    sitk.WriteImage(image, path)
    with pytest.raises(NNWError, match=r"case_1.nii.gz holds the ignore label 3.*labelsTr_dense"):
        main(["-pred", pred, "-ref", ref, "-djfile", dj])


def test_evaluator_refuses_missing_predictions_unless_allowed(dense_pair, capsys):
    """Defect 6: a missing prediction was dropped from the mean silently (7 of 8 cases scored)."""
    from nnunet_weak.evaluation.evaluate_dense import main
    pred, ref, dj = dense_pair
    os.remove(os.path.join(pred, "case_1.nii.gz"))
    with pytest.raises(NNWError, match="no prediction for 1 of 2 reference.*--allow-missing"):
        main(["-pred", pred, "-ref", ref, "-djfile", dj])
    assert main(["-pred", pred, "-ref", ref, "-djfile", dj, "--allow-missing"]) == 0
    assert "1 reference(s)" in capsys.readouterr().out


def test_evaluator_compares_geometry_not_only_shape(dense_pair):
    """Defect 10: a prediction shifted by 30 mm scored the same."""
    import SimpleITK as sitk
    from nnunet_weak.evaluation.evaluate_dense import main
    pred, ref, dj = dense_pair
    path = os.path.join(pred, "case_0.nii.gz")
    image = sitk.ReadImage(path)
    image.SetOrigin((30.0, 0.0, 0.0))
    sitk.WriteImage(image, path)
    with pytest.raises(NNWError, match="case_0.nii.gz lies elsewhere than its reference"):
        main(["-pred", pred, "-ref", ref, "-djfile", dj])


def test_evaluator_output_under_a_file_fails_before_evaluating(dense_pair, tmp_path, monkeypatch):
    """Defect 11: `-o` below a file crashed with a traceback after the evaluation had run."""
    from nnunet_weak.evaluation import evaluate_dense
    pred, ref, dj = dense_pair
    blocker = tmp_path / "results"
    blocker.write_text("a file")
    monkeypatch.setattr(evaluate_dense, "_evaluate_case", lambda *a: pytest.fail("evaluated before checking -o"))
    with pytest.raises(NNWError, match="is a file, not a folder"):
        evaluate_dense.main(["-pred", pred, "-ref", ref, "-djfile", dj, "-o", str(blocker / "eval")])


# ------------------------------------------------------------------------------------------------- training
def test_training_fold_without_annotated_case_is_named(use_env):
    """Defect 8: a fold whose training cases are all unlabelled trained to exit 0 with loss 0."""
    import torch
    from conftest import TINY_NAME, UNLABELLED
    from nnunetv2.run.run_training import get_trainer_from_args
    env, _ = use_env
    path = os.path.join(env["nnUNet_preprocessed"], TINY_NAME, "splits_final.json")
    original = open(path).read()
    splits = json.loads(original)
    try:
        with open(path, "w") as f:
            json.dump(splits + [{"train": UNLABELLED, "val": ["tiny_000"]}], f)
        for name in ("nnUNetTrainerPCE", "nnUNetTrainerLabelledOnly"):
            trainer = get_trainer_from_args("981", "2d", 1, name, device=torch.device("cpu"))
            with pytest.raises(NNWError, match="no annotated training case in fold 1"):
                trainer.do_split()
    finally:
        with open(path, "w") as f:
            f.write(original)


def test_dense_conversions_do_not_need_scribble_files(tmp_path):
    """Defect 13: 802/805/806 demanded _scribble files, which the official ACDC release does not have."""
    source = write_acdc(tmp_path / "ACDC", (1, 21, 41))
    for path in source.glob("training/*/*_scribble.nii.gz"):
        path.unlink()
    for name in ("Dataset802_ACDCDense", "Dataset805_ACDCSemi10"):
        out = conversion_script(name).convert(str(source), str(tmp_path / "raw"), verbose=False)
        assert len(os.listdir(os.path.join(out, "labelsTr"))) == 6
    with pytest.raises(NNWError, match="_scribble.nii.gz is missing"):
        conversion_script("Dataset801_ACDCScribble").convert(str(source), str(tmp_path / "raw"), verbose=False)


def test_timing_written_every_epoch_so_a_killed_run_keeps_it(use_env):
    """Defect 14: the timing file was written at the end of training only, so after a kill and --c it held the
    resumed epochs alone."""
    import torch
    from nnunetv2.run.run_training import get_trainer_from_args
    from nnunet_weak.utilities.timing_file import TIMING_FILE
    trainer = get_trainer_from_args("981", "2d", 0, "nnUNetTrainerBudget", device=torch.device("cpu"))
    trainer.initialize()
    os.makedirs(trainer.output_folder, exist_ok=True)
    path = os.path.join(trainer.output_folder, TIMING_FILE)
    if os.path.exists(path):
        os.remove(path)
    trainer.on_train_epoch_start()
    trainer.on_train_epoch_end([{"loss": np.array(1.0)}])
    record = json.load(open(path))
    assert len(record["epochs"]) == 1 and len(record["loader_wait"]) == 1 and record["precision"]


def test_environment_line_quotes_paths(monkeypatch, capsys):
    """Defect 14: nnunet_weak_env printed a path with a quote unescaped (the shell's eval broke)."""
    import shlex
    from nnunet_weak import env as env_command
    monkeypatch.setenv("NNW_NO_AUTOEXT", "0")
    monkeypatch.setenv("nnUNet_extTrainer", "/data/it's here")
    env_command.main([])
    line = capsys.readouterr().out.strip()
    assert line.startswith("export nnUNet_extTrainer=")
    assert "/data/it's here" in shlex.split(line[len("export "):])[0]


def test_evaluator_output_folder_gets_named_files(dense_pair, tmp_path):
    """Defect 14: `-o dir/` wrote hidden dir/.json and dir/.md."""
    from nnunet_weak.evaluation.evaluate_dense import main
    pred, ref, dj = dense_pair
    folder = tmp_path / "results"
    main(["-pred", pred, "-ref", ref, "-djfile", dj, "-o", str(folder) + os.sep])
    assert sorted(os.listdir(folder)) == ["dense_eval.json", "dense_eval.md"]


def test_second_folder_with_the_same_dataset_id_is_refused(acdc, tmp_path):
    """Defect 14: a second Dataset801_* was written beside an existing one (nnU-Net fails later)."""
    raw = tmp_path / "raw"
    (raw / "Dataset801_Mine").mkdir(parents=True)
    with pytest.raises(NNWError, match="Dataset801_Mine already uses dataset id 801"):
        conversion_script("Dataset801_ACDCScribble").convert(str(acdc), str(raw), verbose=False)


def test_conversion_into_a_raw_folder_that_is_a_file_is_named(acdc, tmp_path):
    """Defect 11: a conversion whose nnUNet_raw is a file ended in a traceback from os.makedirs."""
    raw = tmp_path / "raw"
    raw.write_text("not a folder")
    with pytest.raises(NNWError, match=r"raw is not a folder; point the conversion at an nnUNet_raw folder"):
        conversion_script("Dataset801_ACDCScribble").convert(str(acdc), str(raw), verbose=False)
    assert raw.read_text() == "not a folder"


def test_budget_refuses_a_bad_pad_as_ignore_value(use_env, monkeypatch):
    """Defect 14: nnUNetTrainerBudget ignored a bad NNW_PAD_AS_IGNORE (the weak trainers refused it)."""
    import torch
    from nnunetv2.run.run_training import get_trainer_from_args
    monkeypatch.setenv("NNW_PAD_AS_IGNORE", "maybe")
    with pytest.raises(NNWError, match="NNW_PAD_AS_IGNORE='maybe' is invalid"):
        get_trainer_from_args("981", "2d", 0, "nnUNetTrainerBudget", device=torch.device("cpu"))


def test_budget_names_the_missing_results_variable(use_env, monkeypatch):
    """Defect 11: nnUNetTrainerBudget with nnUNet_results unset died with a TypeError in makedirs."""
    import torch
    from nnunetv2.run.run_training import get_trainer_from_args
    monkeypatch.delenv("nnUNet_results")
    with pytest.raises(NNWError, match="nnUNet_results is not set"):
        get_trainer_from_args("981", "2d", 0, "nnUNetTrainerBudget", device=torch.device("cpu"))


def test_truncated_checkpoint_is_named_on_resume(use_env, tmp_path):
    """Defect 11: a truncated checkpoint given to --c ended in torch's traceback."""
    import torch
    from nnunetv2.run.run_training import get_trainer_from_args
    trainer = get_trainer_from_args("981", "2d", 0, "nnUNetTrainerPCE", device=torch.device("cpu"))
    trainer.initialize()
    path = str(tmp_path / "checkpoint_latest.pth")
    trainer.save_checkpoint(path)
    content = open(path, "rb").read()
    open(path, "wb").write(content[:len(content) // 2])
    with pytest.raises(NNWError, match=r"checkpoint_latest.pth is not a readable checkpoint.*Delete it"):
        trainer.load_checkpoint(path)


# ------------------------------------------------------------------------------------- raw label maps (7)
def _raw_copy(raw, tmp_path):
    """A copy of the tiny raw dataset under ``tmp_path/raw/<name>`` (the session's own copy stays intact)."""
    import shutil
    target = tmp_path / "raw" / os.path.basename(raw)
    shutil.copytree(raw, target)
    return target


def _rewrite_label(path, change, dtype=None):
    import SimpleITK as sitk
    image = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(image).astype(dtype or np.float32)
    array = change(array)
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    sitk.WriteImage(out, str(path))


def _trainer_on_copy(use_env, tmp_path, monkeypatch, trainer, label=None, change=None):
    """(trainer, raw copy): ``trainer`` on the tiny dataset whose raw folder is a copy, with ``change`` applied to
    the label map ``label`` of that copy."""
    import torch
    from nnunetv2.run.run_training import get_trainer_from_args
    env, raw = use_env
    copy = _raw_copy(raw, tmp_path)
    if change is not None:
        _rewrite_label(copy / "labelsTr" / label, change)
    monkeypatch.setenv("nnUNet_raw", str(copy.parent))
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))
    return get_trainer_from_args("981", "2d", 0, trainer, device=torch.device("cpu")), copy


def _set_nan(a):
    a[0, 0, 0] = np.nan
    return a


def _set_fraction(a):
    a[0, 0, 0] = 2.5
    return a


def _set_undeclared(a):
    a[0, 0, 0] = 7
    return a


@pytest.mark.parametrize("change, message", [
    (_set_nan, "tiny_003.nii.gz holds NaN values"),
    (_set_fraction, r"tiny_003.nii.gz holds non-integer values \(e.g. 2.5\)"),
    (_set_undeclared, r"tiny_003.nii.gz holds label value\(s\) \[7\] that dataset.json's 'labels' does not declare"),
])
def test_trainer_refuses_bad_raw_label_values_at_start(use_env, tmp_path, monkeypatch, change, message):
    """Defect 7: NaN labels became annotation, 2.5 became 2 and undeclared values failed deep in the loss;
    preprocessing hides all three, so the trainer checks the raw label maps before its loaders start."""
    trainer, _ = _trainer_on_copy(use_env, tmp_path, monkeypatch, "nnUNetTrainerPCE", "tiny_003.nii.gz", change)
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    monkeypatch.setattr(nnUNetTrainer, "on_train_start",
                        lambda self: pytest.fail("training started before the label check"))
    with pytest.raises(NNWError, match=message + r".*--verify_dataset_integrity"):
        trainer.on_train_start()


def test_trainer_refuses_a_label_with_another_spacing(use_env, tmp_path, monkeypatch):
    """Defect 7: a label map whose spacing differs from its image's reached training."""
    import SimpleITK as sitk
    trainer, copy = _trainer_on_copy(use_env, tmp_path, monkeypatch, "nnUNetTrainerBudget")
    path = str(copy / "labelsTr" / "tiny_002.nii.gz")
    image = sitk.ReadImage(path)
    image.SetSpacing((3.0, 3.0, 8.0))
    sitk.WriteImage(image, path)
    with pytest.raises(NNWError, match=r"tiny_002.nii.gz has spacing \(8.0, 3.0, 3.0\) but its image has"):
        trainer.verify_raw_labels()


def test_label_check_reads_only_changed_cases(use_env, tmp_path, monkeypatch):
    """The check runs at every start (each fold, each --c); unchanged cases are not read again, and a case
    broken after a passing check is still found."""
    from nnunet_weak.data import label_integrity
    trainer, copy = _trainer_on_copy(use_env, tmp_path, monkeypatch, "nnUNetTrainerBudget")
    reads = []
    original = label_integrity.case_problem
    monkeypatch.setattr(label_integrity, "case_problem", lambda *a: reads.append(a[1]) or original(*a))
    trainer.verify_raw_labels()
    n_cases = len(os.listdir(copy / "labelsTr"))
    assert len(reads) == n_cases
    trainer.verify_raw_labels()
    assert len(reads) == n_cases
    os.utime(copy / "labelsTr" / "tiny_004.nii.gz", ns=(1, 1))  # looks changed
    _rewrite_label(copy / "labelsTr" / "tiny_004.nii.gz", _set_undeclared)
    with pytest.raises(NNWError, match=r"tiny_004.nii.gz holds label value\(s\) \[7\]"):
        trainer.verify_raw_labels()
    assert reads[-1].endswith("tiny_004.nii.gz") and len(reads) == n_cases + 1


def test_label_check_can_be_switched_off_and_skips_without_raw_data(use_env, tmp_path, monkeypatch):
    trainer, _ = _trainer_on_copy(use_env, tmp_path, monkeypatch, "nnUNetTrainerBudget", "tiny_003.nii.gz",
                                  _set_nan)
    monkeypatch.setenv("NNW_LABEL_CHECK", "0")
    trainer.verify_raw_labels()
    monkeypatch.delenv("NNW_LABEL_CHECK")
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "elsewhere"))
    trainer.verify_raw_labels()
    log = open(trainer.log_file).read()
    assert "raw label check off (NNW_LABEL_CHECK=0)" in log and "raw label check skipped" in log


# ---------------------------------------------------------------------------------------------- untrusted files
class _RunsCode:
    """Unpickling this calls a function: what a crafted checkpoint could do with weights_only=False."""
    def __reduce__(self):
        return (os.makedirs, (os.environ["NNW_TEST_MARKER"],))


def _crafted_checkpoint(path, marker):
    import torch
    os.environ["NNW_TEST_MARKER"] = str(marker)
    try:
        torch.save({"network_weights": {}, "init_args": {"configuration": "2d"}, "payload": _RunsCode()}, str(path))
    finally:
        del os.environ["NNW_TEST_MARKER"]


def test_user_given_checkpoints_do_not_run_code(tmp_path, monkeypatch):
    """Untrusted files: modelmix_export --checkpoint and the SCM stage-1 checkpoints were read with
    torch.load(weights_only=False), which runs what the file names."""
    import torch
    from nnunet_weak.training.modelmix_export import export_aux
    from nnunet_weak.training.two_networks import load_network_weights
    marker = tmp_path / "code_ran"
    path = tmp_path / "checkpoint_final.pth"
    _crafted_checkpoint(path, marker)
    monkeypatch.setenv("NNW_TEST_MARKER", str(marker))
    with pytest.raises(NNWError, match=r"checkpoint_final.pth \(--checkpoint\) holds objects beyond tensors"):
        export_aux(str(path))
    with pytest.raises(NNWError, match=r"\(NNW_SCM_PRIMARY_CHECKPOINT\) holds objects beyond tensors"):
        load_network_weights(torch.nn.Linear(1, 1), str(path), "2d", "PA-Seg SCM", "NNW_SCM_PRIMARY_CHECKPOINT")
    assert not marker.exists()


def test_checkpoints_of_our_trainers_load_without_running_code(use_env):
    """The allow-list covers what nnU-Net and our extra state store (NumPy scalars in the logger, optimiser
    states, the ModelMix pairing record)."""
    import torch
    from nnunetv2.run.run_training import get_trainer_from_args
    from nnunet_weak.utilities.checkpoint_io import load_checkpoint_file
    trainer = get_trainer_from_args("981", "2d", 0, "nnUNetTrainerPCLMix", device=torch.device("cpu"))
    trainer.initialize()
    trainer.logger.log("mean_fg_dice", np.float64(0.5), 0)   # what nnU-Net's logger holds after an epoch
    os.makedirs(trainer.output_folder, exist_ok=True)
    path = os.path.join(trainer.output_folder, "checkpoint_test.pth")
    trainer.save_checkpoint(path)
    checkpoint = load_checkpoint_file(path)
    assert checkpoint["trainer_name"] == "nnUNetTrainerPCLMix" and "nnunet_weak_extra_state" in checkpoint
    trainer.load_checkpoint(path)
    os.remove(path)


def test_truncated_checkpoint_is_named_by_nnunet_predict(use_env, tmp_path):
    """Defect 11: a truncated checkpoint given to nnUNetv2_predict ended in torch's traceback."""
    import shutil
    import subprocess
    import sys
    from conftest import TINY_NAME
    env, raw = use_env
    model = tmp_path / "model folder"
    (model / "fold_0").mkdir(parents=True)
    preprocessed = os.path.join(env["nnUNet_preprocessed"], TINY_NAME)
    shutil.copy(os.path.join(preprocessed, "nnUNetPlans.json"), model / "plans.json")
    shutil.copy(os.path.join(preprocessed, "dataset.json"), model / "dataset.json")
    checkpoint = model / "fold_0" / "checkpoint_final.pth"
    checkpoint.write_bytes(b"PK\x03\x04" + b"\0" * 100)  # the first bytes of a zip archive, then nothing
    command = os.path.join(os.path.dirname(sys.executable), "nnUNetv2_predict_from_modelfolder")
    result = subprocess.run([command, "-i", os.path.join(raw, "imagesTs"), "-o", str(tmp_path / "pred"),
                             "-m", str(model), "-f", "0", "-device", "cpu"],
                            capture_output=True, text=True, env={**os.environ, **env}, timeout=300)
    assert result.returncode == 1
    assert f"nnunet_weak error: {checkpoint} is not a readable checkpoint" in result.stderr
    assert "Traceback" not in result.stderr
