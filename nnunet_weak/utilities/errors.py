"""One exception type for bad user input, printed as a single line instead of a traceback.

Raise :class:`NNWError` with a message that names the offending file or variable and the fix. When such an
error reaches the top of a command (ours, or ``nnUNetv2_train`` running one of our trainers), the hook below
prints ``nnunet_weak error: <message>`` (the interpreter then exits with status 1). Any other exception keeps Python's normal
traceback.
"""
import sys


class NNWError(Exception):
    """User-facing configuration or input error."""


_previous_hook = sys.excepthook


def _excepthook(exc_type, exc, tb):
    if issubclass(exc_type, NNWError):
        sys.stderr.write(f"nnunet_weak error: {exc}\n")
        sys.stderr.flush()
        # sys.exit is not possible from inside an excepthook; the interpreter exits with 1 after returning,
        # which is what scripts see. Keep the message as the last thing printed.
        return
    _previous_hook(exc_type, exc, tb)


def install_excepthook() -> None:
    if sys.excepthook is not _excepthook:
        sys.excepthook = _excepthook


install_excepthook()
