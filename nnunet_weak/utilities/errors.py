"""One exception type for bad user input, printed as a single line instead of a traceback.

Raise :class:`NNWError` with a message that names the offending file or variable and the fix. The start-up hook
(``nnunet_weak._autoext``, run by ``nnunet_weak.pth`` in every interpreter of the environment) installs
:func:`install_excepthook`: when such an error reaches the top of a program (ours, or ``nnUNetv2_train`` running
one of our trainers), it prints ``nnunet_weak error: <message>`` and the interpreter exits with status 1. In
nnU-Net's own commands (``nnUNetv2_*``) a checkpoint torch cannot open (truncated by a copy or a killed run) is
reported the same way, naming the file. Every other exception keeps Python's normal traceback.
"""
import os
import sys


class NNWError(Exception):
    """User-facing configuration or input error."""


_UNREADABLE_ZIP = "PytorchStreamReader failed reading zip archive"


def unreadable_checkpoint(exc, tb):
    """The file ``torch.load`` was reading when ``exc`` (torch's unreadable-zip error) was raised, or None."""
    if not isinstance(exc, RuntimeError) or _UNREADABLE_ZIP not in str(exc):
        return None
    path = None
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "load" and "torch" in frame.f_code.co_filename:
            candidate = frame.f_locals.get("f")
            if isinstance(candidate, (str, os.PathLike)):
                path = os.fspath(candidate)
        tb = tb.tb_next
    return path


def _in_nnunet_command() -> bool:
    return os.path.basename(sys.argv[0] if sys.argv else "").startswith("nnUNetv2_")


def _excepthook(exc_type, exc, tb, previous=sys.__excepthook__):
    if issubclass(exc_type, NNWError):
        message = str(exc)
    else:
        path = unreadable_checkpoint(exc, tb) if _in_nnunet_command() else None
        if path is None:
            return previous(exc_type, exc, tb)
        message = (f"{path} is not a readable checkpoint (truncated, e.g. by an interrupted copy or a run killed "
                   f"while saving). Copy or train it again; nnunet_weak trainers save checkpoints atomically, so "
                   f"its fold's other checkpoint_*.pth may be intact.")
    # sys.exit is not possible from inside an excepthook; the interpreter exits with 1 after returning. Keep the
    # message as the last thing printed.
    sys.stderr.write(f"nnunet_weak error: {message}\n")
    sys.stderr.flush()


def install_excepthook() -> None:
    """Make :func:`_excepthook` the interpreter's hook, chaining to the one it replaces; a hook someone else
    installed (an IDE, a debugger) is left alone."""
    if sys.excepthook is sys.__excepthook__:
        sys.excepthook = _excepthook
