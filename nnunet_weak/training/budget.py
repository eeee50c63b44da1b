"""Training length without code edits, and the stock trainer that honours it.

``nnUNetTrainerBudget`` is nnU-Net's own ``nnUNetTrainer`` with the epoch and iteration counts read from
``NNW_NUM_EPOCHS``, ``NNW_ITERS_PER_EPOCH`` and ``NNW_VAL_ITERS_PER_EPOCH`` (and how often ``checkpoint_latest.pth``
is saved from ``NNW_SAVE_EVERY``), the final validation skippable with
``NNW_SKIP_FINAL_VALIDATION=1`` (on scribble labels its Dice counts scribble pixels only, and the benchmarks
predict the validation cases with ``nnUNetv2_predict`` anyway), and the wall time of each epoch's
training phase written to ``fold_X/nnunet_weak_timing.json`` (for the benchmarks' seconds per iteration).
On the CPU ``NNW_NUM_THREADS`` replaces the thread count ``nnUNetv2_train -device cpu`` sets (all cores), so two
trainings can share a machine without oversubscribing it.
With ``NNW_CPU_BF16=1`` on a CPU with native bf16 arithmetic a 2D network computes under bf16 autocast and the
loss in float32 (the CPU fast path, ``nnunet_weak.utilities.cpu_bf16``); the timing file also records the
precision and how long each epoch waited for the data loader.
Nothing else differs: on a dataset with an ``ignore`` label it is the "nnU-Net+pL" baseline (masked Dice + CE
with deep supervision). Every nnunet_weak trainer derives from it, so the same variables shorten all of them.
"""
import copy
import functools
import io
import json
import os
import time
from typing import Optional

import torch
from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.default_n_proc_DA import get_allowed_n_proc_DA
from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets

from nnunet_weak.data.label_integrity import CACHE_NAME, check_raw_dataset
from nnunet_weak.networks.wrappers import unwrap

from nnunet_weak.training.loss_factory import float32_loss
from nnunet_weak.utilities import cpu_bf16
from nnunet_weak.utilities.checkpoint_io import require_complete_checkpoint
from nnunet_weak.utilities.env import env_flag, env_int, require_env
from nnunet_weak.utilities.seeding import seed_everything
from nnunet_weak.utilities.timing_file import TIMING_FILE

LENGTH_VARIABLES = {
    "NNW_NUM_EPOCHS": ("num_epochs", 1),
    "NNW_ITERS_PER_EPOCH": ("num_iterations_per_epoch", 1),
    "NNW_VAL_ITERS_PER_EPOCH": ("num_val_iterations_per_epoch", 1),
    # nnU-Net saves checkpoint_latest.pth every 50 epochs: a shortened run of fewer epochs has nothing to resume
    # from after a kill unless this is lowered
    "NNW_SAVE_EVERY": ("save_every", 1),
}


def apply_training_length(trainer) -> dict:
    """Override the trainer's schedule knobs from the environment; returns what was changed."""
    changed = {}
    for variable, (attribute, minimum) in LENGTH_VARIABLES.items():
        value = env_int(variable, minimum)
        if value is not None:
            setattr(trainer, attribute, value)
            changed[attribute] = value
    return changed


def timed_step(train_step):
    """Decorate a ``train_step``: the time since the previous step ended (or the epoch started) is time spent
    waiting for the data loader, summed per epoch into ``trainer._loader_wait``."""
    @functools.wraps(train_step)
    def timed(self, batch):
        self._loader_wait += time.perf_counter() - self._step_end
        try:
            return train_step(self, batch)
        finally:
            self._step_end = time.perf_counter()
    return timed


class nnUNetTrainerBudget(nnUNetTrainer):
    # A trainer's own default length (None: nnU-Net's 1000 epochs). Resolved once, in this order: nnU-Net's
    # defaults, this class attribute, then the NNW_* length variables.
    default_num_epochs: Optional[int] = None
    # Why this trainer trains in float32 even with NNW_CPU_BF16=1 (None: it takes the CPU fast path). Prediction
    # keeps the fast path: the network nnUNetv2_predict builds is hooked as usual.
    cpu_bf16_refused: Optional[str] = None

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        require_env("nnUNet_results", "to write the trained model")  # nnU-Net would fail in makedirs(None)
        seed = env_int("NNW_SEED", 0)
        if seed is not None:  # before nnU-Net's __init__: nothing random happens earlier
            seed_everything(seed)
        super().__init__(plans, configuration, fold, dataset_json, device)
        if seed is not None:
            self.print_to_log_file(f"nnunet_weak: random generators seeded with NNW_SEED={seed}")
        if self.default_num_epochs is not None:
            self.num_epochs = self.default_num_epochs
        changed = apply_training_length(self)
        self.length_from_env = changed  # recorded in the fold's debug.json
        if changed:
            self.print_to_log_file(f"nnunet_weak: training length from the environment: {changed}")
        self._train_phase_seconds, self._loader_wait_seconds = [], []
        self._loader_wait = self._step_end = 0.0
        threads = env_int("NNW_NUM_THREADS", 1)
        if threads is not None and self.device.type == "cpu":
            torch.set_num_threads(threads)
            self.print_to_log_file(f"nnunet_weak: {threads} CPU thread(s) (NNW_NUM_THREADS)")
        if type(self) is nnUNetTrainerBudget and env_flag("NNW_PAD_AS_IGNORE") is not None:  # also checks it
            self.print_to_log_file("nnunet_weak: NNW_PAD_AS_IGNORE does not apply to nnUNetTrainerBudget (stock "
                                   "nnU-Net padding); the weak trainers read it")
        dims = len(self.configuration_manager.patch_size)
        self.cpu_bf16 = self.device.type == "cpu" and cpu_bf16.cpu_bf16_enabled(dims)
        self.cpu_bf16_suspended = self.cpu_bf16 and self.cpu_bf16_refused is not None
        if self.cpu_bf16_suspended:
            self.cpu_bf16 = False
        if self.device.type == "cpu":
            self.print_to_log_file(f"nnunet_weak: CPU fast path off for {type(self).__name__}: "
                                   f"{self.cpu_bf16_refused}" if self.cpu_bf16_suspended else
                                   f"nnunet_weak: {cpu_bf16.describe(dims)}")
            if get_allowed_n_proc_DA() > 0:
                self.print_to_log_file("nnunet_weak: on the CPU, nnUNet_n_proc_DA=0 (augmentation in this process) "
                                       "is faster: worker processes compete with the training threads for the "
                                       "cores (see the README, CPU fast path)")

    @staticmethod
    def build_network_architecture(plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True):
        network = nnUNetTrainer.build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                                           num_output_channels, enable_deep_supervision)
        return cpu_bf16.install_inference_hooks(network)

    def initialize(self):
        first = not self.was_initialized
        super().initialize()
        if first and self.cpu_bf16:
            # the network computes in bf16 and returns float32; the loss stays float32
            cpu_bf16.install_inference_hooks(unwrap(self.network), on_cpu=True)
            self.loss = float32_loss(self.loss)
        if first and self.cpu_bf16_suspended:
            cpu_bf16.suspend_inference_hooks(unwrap(self.network))  # installed by the builder for prediction

    @property
    def precision(self) -> str:
        """What the training forward passes compute in, for logs and the timing file."""
        if self.device.type == "cuda":
            return "fp16 autocast (CUDA)"
        return "bf16 autocast (CPU)" if self.cpu_bf16 else "fp32"

    train_step = timed_step(nnUNetTrainer.train_step)

    def load_checkpoint(self, filename_or_checkpoint) -> None:
        if isinstance(filename_or_checkpoint, str) and os.path.isfile(filename_or_checkpoint):
            require_complete_checkpoint(filename_or_checkpoint, "Delete it: --c then resumes from the next of "
                                        "checkpoint_final / checkpoint_latest / checkpoint_best.pth that exists, "
                                        "or start without --c.")
        super().load_checkpoint(filename_or_checkpoint)

    def checkpoint_extras(self) -> dict:
        """Entries added to nnU-Net's checkpoint dict (trainers with extra training state override this)."""
        return {}

    def save_checkpoint(self, filename: str) -> None:
        """nnU-Net's checkpoint plus ``checkpoint_extras``, written once and atomically (a temporary file beside
        it, then renamed): a run killed while saving leaves the previous checkpoint, never a partial one that
        ``--c`` cannot read."""
        if self.local_rank != 0 or self.disable_checkpointing:
            super().save_checkpoint(filename)
            return
        buffer = io.BytesIO()
        super().save_checkpoint(buffer)   # nnU-Net builds its dict; torch.save writes it to memory
        extras = self.checkpoint_extras()
        partial = f"{filename}.partial"
        try:
            with open(partial, "wb") as f:
                if extras:
                    checkpoint = torch.load(io.BytesIO(buffer.getvalue()), map_location="cpu", weights_only=False)
                    torch.save({**checkpoint, **extras}, f)
                else:
                    f.write(buffer.getvalue())
                f.flush()
                os.fsync(f.fileno())
            os.replace(partial, filename)
        finally:
            if os.path.exists(partial):
                os.remove(partial)

    def perform_actual_validation(self, save_probabilities: bool = False):
        if env_flag("NNW_SKIP_FINAL_VALIDATION"):
            self.print_to_log_file("nnunet_weak: final validation skipped (NNW_SKIP_FINAL_VALIDATION=1)")
            return
        super().perform_actual_validation(save_probabilities)

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        self._train_phase_start = self._step_end = time.perf_counter()
        self._loader_wait = 0.0

    def on_train_epoch_end(self, train_outputs):
        # measured before nnU-Net's own bookkeeping: the time of num_iterations_per_epoch train steps,
        # data loading included
        self._train_phase_seconds.append(time.perf_counter() - self._train_phase_start)
        self._loader_wait_seconds.append(self._loader_wait)
        self._write_timing()  # every epoch: a run killed later still has its timing for --c
        super().on_train_epoch_end(train_outputs)

    def verify_raw_labels(self) -> None:
        """``--verify_dataset_integrity``'s checks on the raw dataset (NaN, non-integer or undeclared label
        values, shape / spacing mismatches), reading only cases changed since the last check; skipped with a log
        line where the raw dataset is not on this machine or ``NNW_LABEL_CHECK=0``."""
        if self.local_rank != 0:
            return
        if env_flag("NNW_LABEL_CHECK") is False:
            self.print_to_log_file("nnunet_weak: raw label check off (NNW_LABEL_CHECK=0)")
            return
        raw_root = os.environ.get("nnUNet_raw")
        folder = os.path.join(raw_root, self.plans_manager.dataset_name) if raw_root else None
        if folder is None or not os.path.isdir(folder):
            self.print_to_log_file("nnunet_weak: raw dataset not found under $nnUNet_raw; raw label check skipped")
            return
        dataset = get_filenames_of_train_images_and_targets(folder, copy.deepcopy(self.dataset_json))
        if not dataset:
            return
        expected = list(self.label_manager.all_labels)
        if self.label_manager.has_ignore_label:
            expected.append(self.label_manager.ignore_label)
        first_image = next(iter(dataset.values()))["images"][0]
        reader_class = determine_reader_writer_from_dataset_json(self.dataset_json, first_image, verbose=False)
        read = check_raw_dataset(dataset, reader_class, expected, where=folder,
                                 cache_file=os.path.join(self.output_folder_base, CACHE_NAME))
        if read:
            self.print_to_log_file(f"nnunet_weak: raw labels of {read} case(s) checked ({folder})")

    def on_train_start(self):
        self.verify_raw_labels()  # before loaders start: a bad label map must not reach the loss
        super().on_train_start()
        # a resumed run (--c) keeps the timing of the epochs before its checkpoint, whether or not the first run
        # reached its end; a new run starts a new record
        path = os.path.join(self.output_folder, TIMING_FILE)
        if self.current_epoch > 0 and os.path.isfile(path):
            with open(path) as f:
                earlier = json.load(f)
            self._train_phase_seconds = earlier.get("epochs", [])[:self.current_epoch]
            self._loader_wait_seconds = earlier.get("loader_wait", [])[:self.current_epoch]

    def _write_timing(self) -> None:
        if self.local_rank != 0:
            return
        record = {"device": str(self.device), "precision": self.precision, "batch_size": int(self.batch_size),
                  "iterations_per_epoch": int(self.num_iterations_per_epoch),
                  "epochs": [round(s, 4) for s in self._train_phase_seconds],
                  "loader_wait": [round(s, 4) for s in self._loader_wait_seconds]}
        with open(os.path.join(self.output_folder, TIMING_FILE), "w") as f:
            json.dump(record, f, indent=1)
