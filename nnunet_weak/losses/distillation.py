"""Knowledge distillation at a temperature, as in PA-Seg's cross monitoring (Hinton et al. 2015).

    L = T^2 * mean_voxels sum_c q_c (log q_c - log p_c),   q = softmax(teacher / T),  p = softmax(student / T)

i.e. PyTorch's ``kl_div(log p, q, reduction="batchmean")`` on logits flattened to (voxels, C), which is how the
original averages it. The T^2 factor keeps gradient magnitudes comparable across
temperatures. Computed in float32 with autocast off; no gradient reaches the teacher.
"""
import torch
from torch import nn


class KnowledgeDistillationLoss(nn.Module):
    """T^2 KL(softmax(teacher/T) || softmax(student/T)), summed over classes, averaged over all voxels.

    Shapes: student and teacher logits (b, C, *spatial), same shape. Returns a float32 scalar >= 0, 0 when the
    two agree.
    """

    def __init__(self, temperature: float = 4.0):
        super().__init__()
        if temperature <= 0:
            raise ValueError("temperature must be positive")
        self.temperature = float(temperature)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        if student.shape != teacher.shape:
            raise ValueError(f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} logits differ")
        t = self.temperature
        with torch.autocast(device_type=student.device.type, enabled=False):
            log_p = torch.log_softmax(student.float() / t, dim=1)
            log_q = torch.log_softmax(teacher.detach().float() / t, dim=1)
            kl = (log_q.exp() * (log_q - log_p)).sum(dim=1)  # (b, *spatial)
            return kl.mean() * t * t
