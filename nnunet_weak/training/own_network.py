"""Trainers that bring their own network (kMaX U-Net, DKUXNet): how nnU-Net builds it, and when it compiles.

nnU-Net rebuilds a trainer's network at prediction through the classmethod ``build_network_architecture``;
:func:`own_network` makes that classmethod from a builder and the name of the class attribute holding its
keyword arguments (so variants change the attribute only). :class:`ExplicitCompile` keeps ``torch.compile`` off
unless ``nnUNet_compile`` is set: nnU-Net compiles by default on CUDA, and these networks' data-dependent parts
(kMaX's clustering) recompile on every new branch.
"""
import os

from nnunet_weak.utilities import cpu_bf16


def own_network(builder, kwargs_attribute: str) -> classmethod:
    """``build_network_architecture`` calling ``builder(plans_manager, configuration_manager, n_in, n_out,
    enable_deep_supervision, **getattr(cls, kwargs_attribute))``, with the CPU fast path's inference hooks."""
    def build_network_architecture(cls, plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True):
        network = builder(plans_manager, configuration_manager, num_input_channels, num_output_channels,
                          enable_deep_supervision, **getattr(cls, kwargs_attribute))
        return cpu_bf16.install_inference_hooks(network)
    return classmethod(build_network_architecture)


class ExplicitCompile:
    """Mixin placed before the nnU-Net trainer base: torch.compile only when ``nnUNet_compile`` is set."""

    def _do_i_compile(self):
        return "nnUNet_compile" in os.environ and super()._do_i_compile()
