"""Variance-minimisation (VM) loss of PA-Seg: the intensity variance inside each soft class region.

For each sample b and class c, with weights w_c(x) = p_c(x) m_c(x):

    mu_c  = sum_x w_c(x) I(x) / (sum_x w_c(x) + eps)
    Var_c = sum_x w_c(x) |I(x) - mu_c|^2 / (sum_x w_c(x) + eps)
    L     = mean_b sum_c Var_c

Conventions:

- **Inputs are logits** by default (VM runs at full patch resolution on the logits, before any
  resampling; the trainer passes ``out[0]``); ``from_logits=False`` accepts probabilities. All arithmetic is
  float32 with autocast switched off.
- **Sum over classes, mean over the batch** as in the paper, background included.
- **eps = 1e-6** in both denominators: a class absent from the patch has sum_x w_c ~ 0 and then adds
  ~0, with finite gradients, instead of NaN.
- **Background mask** on class ``background_class`` only; the other classes use every
  valid voxel:
  ``"min"`` (default, the original rule) drops the voxels at the patch minimum, x <= min(x) + 1e-5, computed per
  sample and per channel; with several channels a voxel is dropped when it is at the minimum in every channel.
  ``"zero"`` drops voxels that are exactly 0 in every channel (nnU-Net data with ``use_mask_for_norm``: outside
  the mask the normalised image is 0, and so is nnU-Net's padding). ``"none"`` keeps every voxel.
- **Multi-channel images** (the original has one channel): |I - mu_c|^2 is the squared Euclidean distance over
  the selected channels, i.e. the per-channel variances are summed, like the intensity term of the CRF kernel.
  ``channels`` selects the channels (None = all).
- An optional ``mask`` of valid voxels (for example padding) multiplies every class's weights.
- ``reference_classes``: the sum over C classes is scaled by reference_classes / C, so that a multi-class
  dataset gets the weight the original tuned for its 2 classes (PA-Seg's trainer passes 2). A count of the
  classes *present* would jump whenever a class enters or leaves a patch; a class absent from the patch already
  adds ~0, so the constant scale changes nothing but the overall weight.
"""
from typing import Optional, Sequence

import torch
from torch import nn

_BACKGROUND_MASKS = ("min", "zero", "none")


class VarianceMinimisationLoss(nn.Module):
    """Sum over classes of the prediction-weighted intensity variance, averaged over the batch.

    Args:
        eps: added to the soft class sizes in the denominators.
        background_mask: "min", "zero" or "none"; which voxels the background class ignores.
        background_class: index of the class the background mask applies to (None: no class is masked).
        channels: image channels used; None = all.
        min_margin: tolerance of the "min" rule.
        from_logits: the first input holds logits (softmax taken here); False = probabilities.
        reference_classes: scale the class sum by reference_classes / C (None: no scaling).

    Shapes:
        logits: (b, C, *spatial), any float dtype; image: (b, c, *spatial), same spatial shape (no gradient flows
        into it); mask: optional (b, 1, *spatial) or (b, *spatial), nonzero = valid.
    Returns:
        float32 scalar >= 0.
    """

    def __init__(self, eps: float = 1e-6, background_mask: str = "min", background_class: Optional[int] = 0,
                 channels: Optional[Sequence[int]] = None, min_margin: float = 1e-5, from_logits: bool = True,
                 reference_classes: Optional[int] = None):
        super().__init__()
        if background_mask not in _BACKGROUND_MASKS:
            raise ValueError(f"background_mask must be one of {_BACKGROUND_MASKS}, got {background_mask!r}")
        if eps <= 0:
            raise ValueError("eps must be positive")
        self.eps = float(eps)
        self.background_mask = background_mask
        self.background_class = background_class
        self.channels = None if channels is None else [int(c) for c in channels]
        self.min_margin = float(min_margin)
        self.from_logits = bool(from_logits)
        if reference_classes is not None and reference_classes < 1:
            raise ValueError("reference_classes must be >= 1")
        self.reference_classes = reference_classes

    def forward(self, logits: torch.Tensor, image: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        with torch.autocast(device_type=logits.device.type, enabled=False):
            return self._loss(logits.float(), image.detach().float(), mask)

    def _background_keep(self, image: torch.Tensor) -> Optional[torch.Tensor]:
        """(b, N) float, 1 where the background class may use the voxel; None when nothing is dropped."""
        if self.background_mask == "none" or self.background_class is None:
            return None
        if self.background_mask == "zero":
            dropped = (image == 0).all(dim=1)
        else:
            lowest = image.amin(dim=2, keepdim=True)
            dropped = (image <= lowest + self.min_margin).all(dim=1)
        return (~dropped).float()

    def _loss(self, logits: torch.Tensor, image: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        if logits.ndim < 3:
            raise ValueError(f"logits must be (b, C, *spatial), got {tuple(logits.shape)}")
        if image.ndim != logits.ndim or image.shape[0] != logits.shape[0] or image.shape[2:] != logits.shape[2:]:
            raise ValueError(f"image {tuple(image.shape)} does not match logits {tuple(logits.shape)}: "
                             f"same batch and spatial shape expected")
        if self.channels is not None:
            image = image[:, self.channels]
        b, n_classes = logits.shape[:2]
        probs = torch.softmax(logits, dim=1) if self.from_logits else logits
        probs = probs.reshape(b, n_classes, -1)
        image = image.reshape(b, image.shape[1], -1)

        weights = probs
        if mask is not None:
            if mask.ndim == logits.ndim - 1:
                mask = mask.unsqueeze(1)
            if mask.shape[0] != b or mask.shape[1] != 1 or mask.shape[2:] != logits.shape[2:]:
                raise ValueError(f"mask {tuple(mask.shape)} does not match logits {tuple(logits.shape)}")
            weights = weights * (mask.detach().reshape(b, 1, -1) != 0).float()
        keep_bg = self._background_keep(image)
        if keep_bg is not None:
            per_class = torch.ones(b, n_classes, image.shape[2], device=probs.device)
            per_class[:, self.background_class] = keep_bg
            weights = weights * per_class

        size = weights.sum(dim=2) + self.eps  # (b, C)
        spread = weights.new_zeros(b, n_classes)
        for k in range(image.shape[1]):  # one channel at a time keeps memory at (b, C, N)
            x = image[:, k:k + 1]  # (b, 1, N)
            mean = (weights * x).sum(dim=2, keepdim=True) / size.unsqueeze(2)  # (b, C, 1)
            spread = spread + (weights * (x - mean) ** 2).sum(dim=2)
        loss = (spread / size).sum(dim=1).mean()
        return loss if self.reference_classes is None else loss * (self.reference_classes / n_classes)
