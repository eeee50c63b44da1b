"""The class map of per-class scores (pseudo labels, predicted classes), computed fast on CPUs."""
import torch


def class_map(scores: torch.Tensor, keepdim: bool = False) -> torch.Tensor:
    """(b, C, *spatial) scores -> (b, *spatial) int64 index of the highest channel, (b, 1, *spatial) with
    ``keepdim``; ties go to the lowest index. Equals ``scores.argmax(1, keepdim)``.

    On the CPU the reduction runs over a channels-last copy: PyTorch reduces a strided dimension of a few
    elements on a slow path, about ten times slower than the innermost one (a tenth of a PCLMix step went
    there). Other devices call ``argmax(1)`` unchanged."""
    if scores.device.type != "cpu":
        return scores.argmax(1, keepdim=keepdim)
    labels = scores.movedim(1, -1).contiguous().argmax(-1)
    return labels.unsqueeze(1) if keepdim else labels
