"""When a trainer whose network has data-dependent parts (kMaX's clustering, DKUXNet) uses ``torch.compile``."""
import os


def explicit_compile(parent_decision) -> bool:
    """torch.compile only when ``nnUNet_compile`` is set (nnU-Net compiles by default on CUDA; these networks'
    forward recompiles for every data-dependent branch). ``parent_decision``: nnU-Net's ``_do_i_compile``."""
    return "nnUNet_compile" in os.environ and parent_decision()
