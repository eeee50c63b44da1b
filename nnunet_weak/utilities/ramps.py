"""Ramp schedules. Progress is measured as a fraction of all training iterations, so a schedule written for
30 000 iterations means the same thing in a 500-iteration CPU run.

All functions map ``progress`` in [0, 1] (current iteration / total iterations) to a weight in [0, 1].
"""
import math


def _phase(progress: float, start: float, end: float) -> float:
    """Position inside [start, end] clipped to [0, 1]; a zero-length window is a step at ``start``."""
    if end <= start:
        return 1.0 if progress >= start else 0.0
    return min(1.0, max(0.0, (progress - start) / (end - start)))


def sigmoid_rampup(progress: float, start: float = 0.0, end: float = 1.0) -> float:
    """exp(-5 (1 - t)^2), the mean-teacher ramp (Laine & Aila 2017); 0 before ``start``, 1 after ``end``."""
    if progress < start:
        return 0.0
    t = _phase(progress, start, end)
    return float(math.exp(-5.0 * (1.0 - t) ** 2))


class OnsetGate:
    """The start of a ramp that waits for the network: the progress at which the running mean of a measured
    quantity (e.g. the share of foreground seeds the network already predicts) first reaches ``threshold``.

    ``update(value, progress)`` once per step; ``onset`` is None until the gate has opened. Checkpointable
    (``state_dict`` / ``load_state_dict``), so a resumed run keeps its schedule.
    """

    def __init__(self, threshold: float, window: int = 10):
        self.threshold = threshold
        self.window = window
        self.recent = []
        self.onset = None

    def update(self, value: float, progress: float) -> None:
        if self.onset is not None:
            return
        self.recent = (self.recent + [float(value)])[-self.window:]
        if len(self.recent) == self.window and sum(self.recent) / self.window >= self.threshold:
            self.onset = float(progress)

    def state_dict(self) -> dict:
        return {"onset": self.onset, "recent": list(self.recent)}

    def load_state_dict(self, state: dict) -> None:
        self.onset, self.recent = state["onset"], list(state["recent"])
