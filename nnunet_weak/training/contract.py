"""The network-building contract every trainer must keep, as a reusable check (used by the tests).

``nnUNetv2_predict`` rebuilds the network with ``build_network_architecture(..., enable_deep_supervision=False)``
from the model folder's plans, loads ``network_weights`` with ``strict=True`` and calls ``network(x)`` expecting
one logits tensor. A trainer that adds auxiliary decoders, heads or a second network must keep all of that
true: this check saves a checkpoint the way training does, rebuilds through nnU-Net's own predictor and
compares the outputs with the trainer's network in inference mode. On the CPU fast path the rebuilt network must
also compute in bf16 (``cpu_bf16.install_inference_hooks``), as the trainer's does.
"""
import os

import torch
from batchgenerators.utilities.file_and_folder_operations import save_json

from nnunet_weak.utilities import cpu_bf16
from nnunet_weak.utilities.checkpoint_io import load_checkpoint_file


def check_inference_contract(trainer, seed: int = 0, atol: float = 1e-5) -> dict:
    """Run the contract on an initialised trainer; raises AssertionError on a violation.

    Returns a dict with the checkpoint path, the number of tensors in the state dict and the output shape.
    """
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    if not trainer.was_initialized:
        trainer.initialize()
    os.makedirs(trainer.output_folder, exist_ok=True)
    save_json(trainer.plans_manager.plans, os.path.join(trainer.output_folder_base, "plans.json"), sort_keys=False)
    save_json(trainer.dataset_json, os.path.join(trainer.output_folder_base, "dataset.json"), sort_keys=False)
    if trainer.inference_allowed_mirroring_axes is None:
        trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    checkpoint = os.path.join(trainer.output_folder, "checkpoint_final.pth")
    trainer.save_checkpoint(checkpoint)

    predictor = nnUNetPredictor(device=torch.device("cpu"), perform_everything_on_device=False,
                                use_mirroring=False, verbose=False)
    # strict load happens in here (nnU-Net calls network.load_state_dict(weights) with strict=True)
    predictor.initialize_from_trained_model_folder(trainer.output_folder_base, (trainer.fold,), "checkpoint_final.pth")
    rebuilt = predictor.network
    suspended = getattr(trainer, "cpu_bf16_suspended", False)
    if (getattr(trainer, "cpu_bf16", False) or suspended) and not torch.cuda.is_available():
        assert cpu_bf16.has_inference_hooks(rebuilt), \
            "nnUNetv2_predict -device cpu would run this network in fp32: build_network_architecture must return " \
            "cpu_bf16.install_inference_hooks(network)"
    if suspended:  # the trainer's network runs in fp32 (cpu_bf16_refused): compare in the same precision
        cpu_bf16.suspend_inference_hooks(rebuilt)
    saved = load_checkpoint_file(checkpoint)["network_weights"]
    assert set(saved) == set(rebuilt.state_dict()), "saved network_weights and the rebuilt network differ in keys"

    patch = trainer.configuration_manager.patch_size
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(1, trainer.num_input_channels, *patch, generator=generator)
    trainer.set_deep_supervision_enabled(False)
    trainer.network.eval()
    rebuilt.eval()
    try:
        with torch.no_grad():
            expected = trainer.network(x)
            got = rebuilt(x)
    finally:
        trainer.set_deep_supervision_enabled(trainer.enable_deep_supervision)
    assert isinstance(got, torch.Tensor), f"inference network returned {type(got).__name__}, not one tensor"
    n_heads = trainer.label_manager.num_segmentation_heads
    assert tuple(got.shape) == (1, n_heads, *patch), f"output shape {tuple(got.shape)}"
    assert torch.allclose(expected, got, atol=atol), "rebuilt network computes something else than the trainer's"
    return {"checkpoint": checkpoint, "n_tensors": len(saved), "output_shape": tuple(got.shape)}
