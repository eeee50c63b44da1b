"""Shared plumbing of every weak-label trainer. Method trainers subclass this and stay thin.

What lives here, once:
- checks of the dataset's ``ignore`` label before nnU-Net parses it (one clear error line);
- padded / rotated-in border pixels as *ignore* instead of fake background (``pad_as_ignore``);
- unlabelled cases (all-ignore label maps): found once, a fixed labelled share per batch
  (``labelled_fraction``), kept out of validation;
- one ``train_step`` with the autocast (CUDA fp16, CPU bf16) / grad-scaler / clipping logic, around an overridable
  ``compute_loss(output, target, data, batch)``; ``images_per_scale`` hands the normalised input image, resized
  to every deep-supervision output, to losses that need intensities;
- a global iteration counter and ramp weights expressed as fractions of training (``ramp_weight``);
- extra checkpoint state (auxiliary networks, queues, optimisers) saved and restored with the checkpoint, so
  ``nnUNetv2_train ... --c`` resumes every trainer (``register_extra_state``).
"""
from os.path import join
from typing import Dict, Iterable, List, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from nnunetv2.paths import nnUNet_preprocessed

from nnunet_weak.data.transforms import pad_as_ignore
from nnunet_weak.data.unlabelled import MixedLabelDataLoader, nnunet_loader_class_replaced, split_labelled
from nnunet_weak.training.budget import nnUNetTrainerBudget, timed_step
from nnunet_weak.utilities import cpu_bf16
from nnunet_weak.utilities.checkpoint_io import load_checkpoint_file
from nnunet_weak.utilities.env import env_flag, env_fraction, require_env
from nnunet_weak.utilities.errors import NNWError
from nnunet_weak.utilities.labels import check_ignore_label
from nnunet_weak.utilities.ramps import sigmoid_rampup

EXTRA_STATE_KEY = "nnunet_weak_extra_state"


def _parameters(optimizer: torch.optim.Optimizer) -> List[torch.nn.Parameter]:
    return [p for group in optimizer.param_groups for p in group["params"]]


class nnUNetTrainerWeakBase(nnUNetTrainerBudget):
    """nnU-Net+pL with the weak-label plumbing switched on; the base of all method trainers.

    Class attributes a subclass may change:
        pad_as_ignore: border pixels become ignore (env ``NNW_PAD_AS_IGNORE`` overrides).
        labelled_fraction: share of each batch from labelled cases when unlabelled cases exist; None keeps
            nnU-Net's uniform case sampling (env ``NNW_LABELLED_FRACTION`` overrides).
        foreground_share_of_labelled: with a labelled share, nnU-Net's forced-foreground share applies to the
            labelled samples, not to the whole batch (for trainers whose batch grows by unlabelled samples).
    """

    pad_as_ignore = True
    labelled_fraction = None
    foreground_share_of_labelled = False

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        require_env("nnUNet_preprocessed", "to find the preprocessed dataset")
        dataset_json_path = join(nnUNet_preprocessed, plans.get("dataset_name", "<dataset>"), "dataset.json")
        check_ignore_label(dataset_json, dataset_json_path, required=True)
        super().__init__(plans, configuration, fold, dataset_json, device)

        # experiment overrides of the recipe: the output folder's trainer name no longer identifies it, so they are
        # logged and kept in the fold's debug.json (recipe_from_env); shipped recipes are named trainer variants
        flag, fraction = env_flag("NNW_PAD_AS_IGNORE"), env_fraction("NNW_LABELLED_FRACTION")
        self.recipe_from_env = {k: v for k, v in (("pad_as_ignore", flag), ("labelled_fraction", fraction))
                                if v is not None}
        for attribute, value in self.recipe_from_env.items():
            setattr(self, attribute, value)
        if self.recipe_from_env:
            self.print_to_log_file(f"nnunet_weak: recipe overridden from the environment: {self.recipe_from_env}")

        self.unlabelled_keys = None  # set of case ids, found once in do_split
        self._split = None
        self._extra_state: Dict[str, object] = {}
        self._iter_in_epoch = 0

    # ------------------------------------------------------------------ data
    def get_training_transforms(self, *args, **kwargs):
        # an instance method on purpose: nnU-Net calls it through self, and we need the trainer's settings
        pipeline = super().get_training_transforms(*args, **kwargs)
        if self.pad_as_ignore and self.label_manager.has_ignore_label:
            pad_as_ignore(pipeline, self.label_manager.ignore_label)
        return pipeline

    def get_validation_transforms(self, *args, **kwargs):
        pipeline = super().get_validation_transforms(*args, **kwargs)
        if self.pad_as_ignore and self.label_manager.has_ignore_label:
            pad_as_ignore(pipeline, self.label_manager.ignore_label)
        return pipeline

    def _find_unlabelled(self, keys: Iterable[str]) -> set:
        if self.unlabelled_keys is None:
            dataset = self.dataset_class(self.preprocessed_dataset_folder, list(keys))
            _, unlabelled = split_labelled(dataset, keys)
            self.unlabelled_keys = set(unlabelled)
            if unlabelled:
                self.print_to_log_file(f"nnunet_weak: {len(unlabelled)} unlabelled (all-ignore) cases")
        return self.unlabelled_keys

    def do_split(self):
        # once per trainer: trainers that need the unlabelled cases before nnU-Net builds its loaders (which
        # splits again) get the same answer without reading and logging the split twice
        if self._split is None:
            self._split = self._checked_split()
        return self._split

    def _checked_split(self):
        tr_keys, val_keys = super().do_split()
        unlabelled = self._find_unlabelled(list(tr_keys) + list(val_keys))
        if tr_keys and all(k in unlabelled for k in tr_keys):
            raise NNWError(f"no annotated training case in fold {self.fold} of {self.plans_manager.dataset_name}: "
                           f"all {len(tr_keys)} training label maps are entirely ignore "
                           f"({self.label_manager.ignore_label}), so there is nothing to learn from. Annotate some "
                           f"cases, or fix the 'train' list of fold {self.fold} in "
                           f"{join(self.preprocessed_dataset_folder_base, 'splits_final.json')}.")
        kept = [k for k in val_keys if k not in unlabelled]
        if len(kept) < len(val_keys):
            self.print_to_log_file(f"nnunet_weak: {len(val_keys) - len(kept)} unlabelled cases removed from "
                                   f"validation (nothing to validate against)")
            if not kept:
                raise NNWError(f"fold {self.fold} of {self.plans_manager.dataset_name} has only unlabelled "
                               f"validation cases; put labelled cases in its 'val' list in "
                               f"{join(self.preprocessed_dataset_folder_base, 'splits_final.json')}.")
        return tr_keys, kept

    def get_tr_and_val_datasets(self):
        dataset_tr, dataset_val = super().get_tr_and_val_datasets()
        self._dataset_tr = dataset_tr
        return dataset_tr, dataset_val

    def get_dataloaders(self):
        with nnunet_loader_class_replaced(self._make_loader):
            return super().get_dataloaders()

    def _make_loader(self, stock_loader_class, data, *args, **kwargs):
        """The training loader draws ``labelled_fraction`` of each batch from labelled cases when the training set
        holds unlabelled ones; every other loader is nnU-Net's."""
        unlabelled = [k for k in data.identifiers if k in (self.unlabelled_keys or ())]
        if data is getattr(self, "_dataset_tr", None) and unlabelled and self.labelled_fraction is not None:
            labelled = [k for k in data.identifiers if k not in self.unlabelled_keys]
            return MixedLabelDataLoader(data, *args, labelled_keys=labelled, unlabelled_keys=unlabelled,
                                        labelled_fraction=self.labelled_fraction,
                                        foreground_share_of_labelled=self.foreground_share_of_labelled, **kwargs)
        return stock_loader_class(data, *args, **kwargs)

    def refuse_multi_gpu(self, reason: str) -> None:
        """Stop with one line under DDP, for trainers whose extra networks or passes DDP does not see."""
        if self.is_ddp:
            raise NNWError(f"{type(self).__name__} does not support multi-GPU (DDP) training: {reason}. "
                           f"Train on one GPU.")

    def labelled_mask(self, keys) -> torch.Tensor:
        """(b,) bool tensor on the device: True where the batch entry comes from a labelled case."""
        unlabelled = self.unlabelled_keys or set()
        return torch.tensor([k not in unlabelled for k in keys], dtype=torch.bool, device=self.device)

    # ------------------------------------------------------------------ schedule
    @property
    def total_iterations(self) -> int:
        return self.num_epochs * self.num_iterations_per_epoch

    @property
    def global_iteration(self) -> int:
        return self.current_epoch * self.num_iterations_per_epoch + self._iter_in_epoch

    @property
    def progress(self) -> float:
        """Fraction of training done, in [0, 1]."""
        return min(1.0, self.global_iteration / max(1, self.total_iterations))

    def ramp_weight(self, start: float = 0.0, end: float = 1.0) -> float:
        """Sigmoid ramp-up value at the current progress; ``start``/``end`` are fractions of all iterations."""
        return sigmoid_rampup(self.progress, start, end)

    def on_train_epoch_start(self):
        self._iter_in_epoch = 0
        super().on_train_epoch_start()

    # ------------------------------------------------------------------ step
    def autocast(self):
        """nnU-Net's autocast on CUDA; bf16 autocast on the CPU fast path (``cpu_bf16``); nothing elsewhere (MPS
        rejects autocast). Losses inside compute in float32."""
        return cpu_bf16.autocast(self.device, self.cpu_bf16)

    def optimizers(self) -> List[torch.optim.Optimizer]:
        """Optimisers stepped after every loss; a trainer with a second network adds its own (each one's
        parameters are gradient-clipped on their own, as if the networks were trained apart)."""
        return [self.optimizer]

    @staticmethod
    def images_per_scale(data: torch.Tensor, outputs: Union[torch.Tensor, List[torch.Tensor]]) -> List[torch.Tensor]:
        """The normalised network input resized to each output's grid, in float32, without gradients.

        data: (b, c, *spatial); outputs: one tensor (b, C, *spatial_k) or the deep-supervision list.
        Returns a list of (b, c, *spatial_k), the first the input itself when the grid matches.
        """
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        data = data.detach().float()
        images = []
        for o in outputs:
            size = tuple(o.shape[2:])
            images.append(data if tuple(data.shape[2:]) == size else F.interpolate(data, size=size, mode="area"))
        return images

    def network_forward(self, data: torch.Tensor):
        """The training forward pass whose result ``compute_loss`` receives as ``output``; nnU-Net's
        ``self.network(data)`` by default. Override for networks with training-only outputs (auxiliary decoders,
        embeddings) so that they come from the same encoder pass."""
        return self.network(data)

    def compute_loss(self, output, target, data: torch.Tensor, batch: dict) -> Tuple[torch.Tensor, dict]:
        """Loss of one step: (scalar tensor, dict of extra numpy/float values to log). Override this."""
        return self.loss(output, target), {}

    def batch_to_device(self, batch: dict):
        """(data, target) of a loader batch on the device; target stays a list under deep supervision."""
        target = batch["target"]
        target = [t.to(self.device, non_blocking=True) for t in target] if isinstance(target, list) \
            else target.to(self.device, non_blocking=True)
        return batch["data"].to(self.device, non_blocking=True), target

    @timed_step
    def train_step(self, batch: dict) -> dict:
        data, target = self.batch_to_device(batch)

        optimizers = self.optimizers()
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            output = self.network_forward(data)
            loss, logs = self.compute_loss(output, target, data, batch)
        if self.grad_scaler is not None:
            self.grad_scaler.scale(loss).backward()
            for optimizer in optimizers:
                self.grad_scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(_parameters(optimizer), 12)
            for optimizer in optimizers:
                self.grad_scaler.step(optimizer)
            self.grad_scaler.update()
        else:
            loss.backward()
            for optimizer in optimizers:
                torch.nn.utils.clip_grad_norm_(_parameters(optimizer), 12)
                optimizer.step()
        self._iter_in_epoch += 1
        out = {"loss": loss.detach().cpu().numpy()}
        out.update({k: np.asarray(float(v)) for k, v in logs.items()})
        return out

    def on_train_epoch_end(self, train_outputs: List[dict]):
        super().on_train_epoch_end(train_outputs)
        extra = sorted(k for k in train_outputs[0] if k != "loss") if train_outputs else []
        if extra:
            means = {k: round(float(np.mean([o[k] for o in train_outputs])), 4) for k in extra}
            self.print_to_log_file(f"loss terms: {means}")

    # ------------------------------------------------------------------ checkpoints
    def register_extra_state(self, name: str, obj) -> None:
        """Save ``obj.state_dict()`` with every checkpoint and restore it with ``load_state_dict`` on load."""
        if not (hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict")):
            raise TypeError(f"extra state {name!r} needs state_dict() and load_state_dict()")
        self._extra_state[name] = obj

    def checkpoint_extras(self) -> dict:
        if not self._extra_state:
            return {}
        return {EXTRA_STATE_KEY: {name: obj.state_dict() for name, obj in self._extra_state.items()}}

    def load_checkpoint(self, filename_or_checkpoint: Union[dict, str]) -> None:
        if not isinstance(filename_or_checkpoint, str):
            raise NNWError("nnunet_weak trainers load checkpoints from a file path, not a dict "
                           "(nnU-Net 2.8.1's dict branch is broken); pass the .pth path.")
        super().load_checkpoint(filename_or_checkpoint)
        if not self._extra_state:
            return
        checkpoint = load_checkpoint_file(filename_or_checkpoint, map_location=self.device)
        saved = checkpoint.get(EXTRA_STATE_KEY, {})
        missing = [name for name in self._extra_state if name not in saved]
        if missing:
            raise NNWError(f"{filename_or_checkpoint} lacks the extra training state {missing} of "
                           f"{type(self).__name__}; it was written by another trainer. Start without --c.")
        for name, obj in self._extra_state.items():
            obj.load_state_dict(saved[name])
