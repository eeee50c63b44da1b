"""PCLMix (Lei et al. 2024): a CNN decoder and a Swin decoder on one
encoder, pixel contrast against a class memory queue, and a cross-decoder CutMix, from scribbles.

Per step, with x the batch, s its scribbles (ignore = unlabelled) and t the fraction of training done:

    (z_c, z_t, e) = net.forward_train(x)          nnU-Net's U-Net (deep supervision), Swin decoder, embeddings
    p = (softmax z_c + softmax z_t) / 2;  H = -sum p ln(p + 1e-6)
    c = argmax p where H <= (0.75 + 0.25 r(t)) ln 2, else -1;  c = s where s is labelled
    L_sup = pCE_DS(z_c, s) + 0.4 pCE(z_t, s)
    L_ctr = InfoNCE(e, c, argmax z_c; queue)      once t > 1/60; then the queue takes this step's class means
    mix:   box from one permutation, surroundings from another (coin flip which one carries the box); the
           pseudo label of permutation a is argmax z_c, of b argmax z_t (cross-decoder); scribbles mixed too
    (z_c^m, z_t^m) = net.forward_train(x_m)      one mixed pass
    L_mix = pCE_DS(z_c^m, s_m) + 0.4 pCE(z_t^m, s_m);  L_pl = CE(z_c^m, y_m) + 0.4 CE(z_t^m, y_m)
    L_het = MSE(z_c, z_t) + MSE(z_c^m, z_t^m)     on logits, both sides trained
    L = L_sup + L_mix + L_pl + 0.1 t^0.9 L_ctr + r(t / 1.26) L_het

r is the sigmoid ramp exp(-5 (1 - t)^2). Losses other than the deep-supervised pCE use the full-resolution
outputs; softmax, entropy, CE, MSE and InfoNCE run in float32. nnU-Net's optimiser, schedule, augmentation and
length are kept; only the main U-Net is used at inference (``forward`` = nnU-Net's network).

Variants: ``_noContrast`` (no L_ctr), ``_noMix`` (no mixed pass: no L_mix, L_pl, mixed MSE), ``_legacyContrast``
(the released code's contrast, see ``nnunet_weak.losses.pixel_contrast``), ``_partialDice`` (nnU-Net's masked
Dice + CE for the main decoder), ``_bnProjection`` (BatchNorm in the projection head, as the original).
"""
import math

import torch

from nnunet_weak.data.cutmix import dynamic_mix
from nnunet_weak.losses.partial_ce import PartialCrossEntropy
from nnunet_weak.losses.pixel_contrast import MemoryQueue, PixelContrast
from nnunet_weak.networks.pclmix_net import build_pclmix_network
from nnunet_weak.training.loss_factory import dice_ce_loss, full_resolution, with_deep_supervision
from nnunet_weak.training.weak_base import nnUNetTrainerWeakBase
from nnunet_weak.utilities import cpu_bf16
from nnunet_weak.utilities.class_map import class_map
from nnunet_weak.utilities.errors import NNWError


def _float_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.mean((a.float() - b.float()) ** 2)


class nnUNetTrainerPCLMix(nnUNetTrainerWeakBase):
    aux_weight = 0.4            # lambda_t: the Swin decoder's supervised terms
    contrast_weight = 0.1       # lambda_ctr; times t^0.9
    contrast_power = 0.9
    contrast_start = 1 / 60     # fraction of training (the original's 1000 of 60 000 iterations)
    legacy_contrast = False
    hetero_weight = 1.0         # lambda_het; times the sigmoid ramp over hetero_ramp_length
    hetero_ramp_length = 1.26   # the original ramps over 600 "epochs" of its ~476: 1.26 x training
    uncertainty_base = 0.75     # threshold (base + (1 - base) r(t)) ln 2 nats
    use_mix = True
    mix_area = 0.2
    queue_size = 500
    temperature = 0.07
    partial_dice = False        # True: nnU-Net's masked Dice + CE instead of pCE for the main decoder
    projection_norm = "plans"   # the projection head's norm: the plans' (InstanceNorm) or "batch" (original)
    cpu_bf16_refused = ("bf16 training lowered its Dice on ACDC (README, CPU fast path), so it trains in float32; "
                        "prediction keeps the fast path")

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        if len(self.configuration_manager.patch_size) != 2:
            raise NNWError(f"PCLMix supports 2D configurations only; {configuration!r} has a "
                           f"{len(self.configuration_manager.patch_size)}D patch. Train a 2d configuration.")
        self.contrast = PixelContrast(self.temperature, legacy=self.legacy_contrast)
        self.queue = None

    # ------------------------------------------------------------------ network
    @classmethod
    def build_network_architecture(cls, plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True):
        return cpu_bf16.install_inference_hooks(build_pclmix_network(
            plans_manager, configuration_manager, num_input_channels, num_output_channels, enable_deep_supervision,
            projection_norm=cls.projection_norm))

    def _do_i_compile(self):
        # forward_train bypasses a compiled forward, and the anchor sampler has data-dependent shapes
        return False

    def initialize(self):
        if self.was_initialized:
            return
        super().initialize()
        self.refuse_multi_gpu("its second forward pass and auxiliary outputs bypass DDP's gradient hooks")
        if self.batch_size < 2:
            raise NNWError(f"PCLMix mixes samples of a batch and needs a batch size of at least 2; the plans "
                           f"give {self.batch_size} for {self.configuration_name!r}. Raise batch_size in the plans.")
        self.aux_ce = PartialCrossEntropy(self.label_manager.ignore_label)
        self.dense_ce = PartialCrossEntropy(None)
        self.queue = MemoryQueue(self.label_manager.num_segmentation_heads, self.queue_size, device=self.device)
        self.register_extra_state("memory_queue", self.queue)

    def _build_loss(self):
        ignore = self.label_manager.ignore_label
        if self.partial_dice:
            return dice_ce_loss(self, ignore_label=ignore)
        return with_deep_supervision(self, PartialCrossEntropy(ignore_label=ignore))

    def network_forward(self, data: torch.Tensor):
        # (main output, aux logits, embedding or None), one encoder pass
        return self.network.forward_train(data, with_embedding=self.contrast_weight > 0)

    # ------------------------------------------------------------------ loss
    def certainty_threshold(self) -> float:
        base = self.uncertainty_base
        return (base + (1.0 - base) * self.ramp_weight(0.0, 1.0)) * math.log(2.0)

    def compute_loss(self, output, target, data, batch):
        main, aux, embedding = output
        logits = full_resolution(main)      # (b, C, H, W)
        scribble = full_resolution(target)  # (b, 1, H, W)
        ignore = self.label_manager.ignore_label
        t = self.progress

        with torch.no_grad():
            p_cnn = torch.softmax(logits.float(), 1)
            p_aux = torch.softmax(aux.float(), 1)
            p_mean = (p_cnn + p_aux) / 2
            entropy = -(p_mean * torch.log(p_mean + 1e-6)).sum(1)
            certain = torch.where(entropy > self.certainty_threshold(), -1, class_map(p_mean))
            labelled = scribble[:, 0] != ignore
            certain = torch.where(labelled, scribble[:, 0].long(), certain)

        sup = self.loss(main, target) + self.aux_weight * self.aux_ce(aux, scribble)
        het = _float_mse(logits, aux)
        logs = {"sup": sup.detach(), "certain_fraction": (certain >= 0).float().mean()}

        w_ctr = 0.0
        ctr = torch.zeros((), device=logits.device)
        if self.contrast_weight > 0 and t > self.contrast_start:
            w_ctr = self.contrast_weight * t ** self.contrast_power
            ctr = self.contrast(embedding, certain, class_map(logits.detach()), self.queue)
        loss = sup + w_ctr * ctr

        if self.use_mix:
            mixed_loss, mixed_het, mix_logs = self.mixed_terms(data, target, p_cnn, p_aux)
            loss = loss + mixed_loss
            het = het + mixed_het
            logs.update(mix_logs)

        w_het = self.hetero_weight * self.ramp_weight(0.0, self.hetero_ramp_length)
        loss = loss + w_het * het
        logs.update({"ctr": ctr.detach(), "het": het.detach(), "w_ctr": w_ctr, "w_het": w_het})
        return loss, logs

    def mixed_terms(self, data, target, p_cnn, p_aux):
        """(L_mix + L_pl, mixed logit MSE, logs) of one mixed batch; p_cnn / p_aux are the clean pass's
        probabilities (no gradient)."""
        with torch.no_grad():
            data_m, target_m, pseudo_m = dynamic_mix(data, target, class_map(p_cnn), class_map(p_aux),
                                                     self.mix_area)  # cross-decoder pseudo labels
        scribble_m = full_resolution(target_m)

        main_m, aux_m, _ = self.network.forward_train(data_m, with_embedding=False)
        logits_m = full_resolution(main_m)
        mix_sup = self.loss(main_m, target_m) + self.aux_weight * self.aux_ce(aux_m, scribble_m)
        pseudo = self.dense_ce(logits_m, pseudo_m) + self.aux_weight * self.dense_ce(aux_m, pseudo_m)
        return mix_sup + pseudo, _float_mse(logits_m, aux_m), {"mix": mix_sup.detach(), "pl": pseudo.detach()}


class nnUNetTrainerPCLMix_noContrast(nnUNetTrainerPCLMix):
    """Ablation: without the pixel-contrast term (the queue stays at its initial state)."""
    contrast_weight = 0.0


class nnUNetTrainerPCLMix_noMix(nnUNetTrainerPCLMix):
    """Ablation: without the dynamic mix: no mixed forward pass, hence no L_mix, L_pl or mixed logit MSE."""
    use_mix = False


class nnUNetTrainerPCLMix_legacyContrast(nnUNetTrainerPCLMix):
    """The released code's contrast term (background-only anchors on ACDC-sized grids), for reproduction."""
    legacy_contrast = True


class nnUNetTrainerPCLMix_partialDice(nnUNetTrainerPCLMix):
    """nnU-Net's masked Dice + CE (nnU-Net+pL's loss) instead of pCE for the main decoder's supervised terms."""
    partial_dice = True


class nnUNetTrainerPCLMix_bnProjection(nnUNetTrainerPCLMix):
    """The original's BatchNorm in the projection head instead of the plans' InstanceNorm."""
    projection_norm = "batch"
