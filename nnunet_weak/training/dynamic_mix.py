"""``nnUNetTrainerDynamicMix``: nnU-Net+pL plus PCLMix's dynamic mix, on nnU-Net's own single-decoder U-Net.

PCLMix's measured gain came from its dynamic mix, while its cost (about 4x nnU-Net) comes from the Swin decoder
and the pixel contrast. This trainer keeps only the mix. Per step, with x the batch and s its scribbles:

    z = net(x)                                   nnU-Net's U-Net, deep-supervision outputs z[0] (full res), z[1]..
    L_sup = pL(z, s)                             nnU-Net's masked Dice + CE over every deep-supervision head
    y_a = argmax z[0],  y_b = argmax z[k]        pseudo labels (no gradient): the full-resolution head, and the
                                                 head ``pseudo_head_b`` (0: the same head; 1: the next coarser
                                                 one, upsampled - a second opinion like PCLMix's second decoder)
    (x_m, s_m, y_m) = dynamic_mix(x, s, y_a, y_b)  one box per sample, two permutations (``cutmix.dynamic_mix``)
    L = L_sup + pL(net(x_m), s_m) + CE(net(x_m)[0], y_m)

Network, sampler, augmentation, padding (background, as nnU-Net) and the supervised loss are nnU-Net+pL's, so
``nnUNetTrainerBudget`` on the same dataset is this trainer's matched control: the two differ only in the mix.
Predictions come from the unchanged U-Net, so ``nnUNetv2_predict`` needs nothing special.
"""
import torch
import torch.nn.functional as F

from nnunet_weak.data.cutmix import dynamic_mix
from nnunet_weak.losses.partial_ce import PartialCrossEntropy
from nnunet_weak.training.loss_factory import full_resolution
from nnunet_weak.training.weak_base import nnUNetTrainerWeakBase
from nnunet_weak.utilities.class_map import class_map
from nnunet_weak.utilities.errors import NNWError


class nnUNetTrainerDynamicMix(nnUNetTrainerWeakBase):
    pad_as_ignore = False     # nnU-Net's padding rule: the control is the stock trainer
    mix_area = 0.2
    pseudo_weight = 1.0
    pseudo_head_b = 0         # deep-supervision head giving permutation b's pseudo labels

    def initialize(self):
        if self.was_initialized:
            return
        super().initialize()
        if self.batch_size < 2:
            raise NNWError(f"{type(self).__name__} mixes samples of a batch and needs a batch size of at least 2; "
                           f"the plans give {self.batch_size} for {self.configuration_name!r}. Raise batch_size "
                           f"in the plans.")
        if len(self.configuration_manager.patch_size) != 2:
            raise NNWError(f"{type(self).__name__} supports 2D configurations only (its box mix is 2D); "
                           f"{self.configuration_name!r} has a 3D patch. Train a 2d configuration.")
        if self.pseudo_head_b > 0 and not self.enable_deep_supervision:
            raise NNWError(f"{type(self).__name__} takes pseudo labels from deep-supervision head "
                           f"{self.pseudo_head_b}; keep deep supervision on.")
        self.dense_ce = PartialCrossEntropy(None)

    def pseudo_labels(self, output) -> tuple:
        """(b, H, W) pseudo labels of the two sources from the clean pass's outputs, without gradient."""
        heads = output if isinstance(output, (list, tuple)) else [output]
        full = heads[0].detach()
        label_a = class_map(full)
        if self.pseudo_head_b == 0:
            return label_a, label_a
        coarse = F.interpolate(heads[self.pseudo_head_b].detach().float(), size=tuple(full.shape[2:]),
                               mode="bilinear", align_corners=False)
        return label_a, class_map(coarse)

    def compute_loss(self, output, target, data, batch):
        sup = self.loss(output, target)
        with torch.no_grad():
            label_a, label_b = self.pseudo_labels(output)
            data_m, target_m, pseudo_m = dynamic_mix(data, target, label_a, label_b, self.mix_area)
        output_m = self.network(data_m)
        logits_m = full_resolution(output_m)
        mix_sup = self.loss(output_m, target_m)
        pseudo = self.dense_ce(logits_m, pseudo_m)
        loss = sup + mix_sup + self.pseudo_weight * pseudo
        return loss, {"sup": sup.detach(), "mix": mix_sup.detach(), "pl": pseudo.detach()}


class nnUNetTrainerDynamicMix_dsHead(nnUNetTrainerDynamicMix):
    """Variant: permutation b's pseudo labels come from the next coarser deep-supervision head (upsampled), so
    the mixed image carries two opinions, as PCLMix's two decoders give it."""
    pseudo_head_b = 1
