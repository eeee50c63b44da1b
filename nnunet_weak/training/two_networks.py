"""Plumbing for trainers with a second network beside nnU-Net's: building it from the plans, its optimiser,
frozen snapshots, and loading full weights (segmentation layers included) from another trainer's checkpoint.

nnU-Net's ``-pretrained_weights`` deliberately skips the segmentation layers, which stage-2 methods need, hence
:func:`load_network_weights`.
"""
import copy
import os

import torch

from nnunet_weak.networks.wrappers import plain_state_dict, unwrap
from nnunet_weak.utilities.checkpoint_io import load_checkpoint_file
from nnunet_weak.utilities.errors import NNWError


def set_deep_supervision(module: torch.nn.Module, enabled: bool) -> None:
    """Switch deep supervision of a dynamic_network_architectures U-Net (what nnU-Net's trainer does for its own)."""
    unwrap(module).decoder.deep_supervision = enabled


def frozen_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A deep copy in eval mode, without gradients and without deep supervision (one logits tensor out)."""
    snapshot = copy.deepcopy(unwrap(module))
    snapshot.eval()
    for p in snapshot.parameters():
        p.requires_grad_(False)
    set_deep_supervision(snapshot, False)
    return snapshot


def refresh(snapshot: torch.nn.Module, source: torch.nn.Module) -> None:
    """Copy the current weights of ``source`` into the frozen ``snapshot``."""
    snapshot.load_state_dict(unwrap(source).state_dict())


def load_network_weights(module: torch.nn.Module, checkpoint: str, configuration: str, what: str,
                         env_variable: str) -> dict:
    """Load every weight of an nnU-Net checkpoint (``network_weights``) strictly into ``module``.

    Checks that the checkpoint exists and was trained on the same configuration; errors name the file, what it
    was for and the variable that points elsewhere. Returns the checkpoint's ``init_args``.
    """
    if not os.path.isfile(checkpoint):
        raise NNWError(f"{checkpoint} not found: {what} needs it. Train that stage first, or point "
                       f"{env_variable} at the checkpoint to start from.")
    saved = load_checkpoint_file(checkpoint, purpose=env_variable)
    if "network_weights" not in saved:
        raise NNWError(f"{checkpoint} is not an nnU-Net checkpoint (no network_weights); point {env_variable} at "
                       f"a checkpoint_final.pth.")
    trained_on = saved.get("init_args", {}).get("configuration")
    if trained_on is not None and trained_on != configuration:
        raise NNWError(f"{checkpoint} was trained with configuration {trained_on!r}, not {configuration!r}; "
                       f"{what} needs a checkpoint of the same configuration ({env_variable}).")
    weights = plain_state_dict(saved["network_weights"])
    try:
        unwrap(module).load_state_dict(weights, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise NNWError(f"{checkpoint} does not fit {what} ({first}); it was written by trainer "
                       f"{saved.get('trainer_name')!r}. Point {env_variable} at the right checkpoint.") from None
    return saved.get("init_args", {})


def optimizer_like_nnunet(trainer, module: torch.nn.Module):
    """(optimiser, scheduler) for ``module`` as ``nnUNetTrainer.configure_optimizers`` makes them for its network:
    SGD, Nesterov momentum 0.99, the trainer's lr and weight decay, poly decay over its epochs."""
    from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
    optimizer = torch.optim.SGD(module.parameters(), trainer.initial_lr, weight_decay=trainer.weight_decay,
                                momentum=0.99, nesterov=True)
    return optimizer, PolyLRScheduler(optimizer, trainer.initial_lr, trainer.num_epochs)
