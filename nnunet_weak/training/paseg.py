"""PA-Seg stage 1 (spec ``paseg.md`` sections 3 and 7.2): nnU-Net's partial loss plus two regularisers that
spread the sparse labels along the image.

    loss = nnU-Net's Dice + CE on the labelled voxels (deep supervision, ignore label)
           + w(t) * (1.0 * mCRF + 0.1 * VM)          on the full-resolution head, in float32

- mCRF (``MultiViewGatedCRFLoss``): neighbouring pixels of similar intensity should share a class; three
  views on a 2x-downsampled grid in 3D (1x along an axis more than twice as coarse as the finest), the image
  plane at full resolution in 2D.
- VM (``VarianceMinimisationLoss``): each soft class region should be homogeneous in intensity; background
  voxels at the patch minimum are left out (exactly-zero voxels when the plans normalise inside a mask).
- w(t) = exp(-5 (1 - t)^2) over the first 10 % of all iterations, then 1.
- Gaussian noise, blur and simulated low resolution are switched off: they destroy the intensity affinities
  (sigma 0.1) the regularisers rely on. ``nnUNetTrainerPASeg_fullAug`` keeps nnU-Net's full augmentation.

On points expanded by the geodesic distance this is PA-Seg stage 1; on scribbles it is "pCE + mCRF + VM".
``nnUNetTrainerPASegAux`` trains the same losses on a different architecture from the same plans (the stage-2
peer, see ``nnunet_weak.networks.peer``).
"""
import torch
from batchgeneratorsv2.transforms.intensity.gaussian_noise import GaussianNoiseTransform
from batchgeneratorsv2.transforms.noise.gaussian_blur import GaussianBlurTransform
from batchgeneratorsv2.transforms.spatial.low_resolution import SimulateLowResolutionTransform
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

from nnunet_weak.data.transforms import drop_random_transforms
from nnunet_weak.losses.gated_crf import MultiViewGatedCRFLoss
from nnunet_weak.losses.variance import VarianceMinimisationLoss
from nnunet_weak.networks.peer import peer_architecture
from nnunet_weak.training.weak_base import nnUNetTrainerWeakBase

AFFINITY_DESTROYING = (GaussianNoiseTransform, GaussianBlurTransform, SimulateLowResolutionTransform)


class nnUNetTrainerPASeg(nnUNetTrainerWeakBase):
    crf_weight = 1.0
    vm_weight = 0.1
    ramp_start = 0.0          # the regularisers ramp up from ramp_start to ramp_end (fractions of all iterations)
    ramp_end = 0.1
    full_augmentation = False

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        spacing = self.configuration_manager.spacing
        self.crf_loss = MultiViewGatedCRFLoss(sigma_rgb=0.1, sigma_xy=6.0, radius=5, downsample="auto",
                                              spacing=spacing if len(spacing) == 3 else None)
        mask_norm = any(self.configuration_manager.use_mask_for_norm or [])
        self.vm_loss = VarianceMinimisationLoss(background_mask="zero" if mask_norm else "min")

    def get_training_transforms(self, *args, **kwargs):
        pipeline = super().get_training_transforms(*args, **kwargs)
        if not self.full_augmentation:
            removed = drop_random_transforms(pipeline, AFFINITY_DESTROYING)
            if removed != len(AFFINITY_DESTROYING):
                self.print_to_log_file(f"nnunet_weak: expected to remove {len(AFFINITY_DESTROYING)} intensity "
                                       f"augmentations, removed {removed}")
        return pipeline

    def regularisers(self, logits: torch.Tensor, image: torch.Tensor):
        """(mCRF, VM) of the full-resolution logits (b, C, *spatial) and input image (b, c, *spatial)."""
        return self.crf_loss(logits, image), self.vm_loss(logits, image)

    def compute_loss(self, output, target, data, batch):
        seg = self.loss(output, target)
        logits = output[0] if isinstance(output, (list, tuple)) else output
        crf, vm = self.regularisers(logits, data)
        weight = self.ramp_weight("sigmoid", self.ramp_start, self.ramp_end)
        loss = seg + weight * (self.crf_weight * crf + self.vm_weight * vm)
        return loss, {"seg": seg.detach(), "crf": crf.detach(), "vm": vm.detach(), "ramp": weight}


class nnUNetTrainerPASeg_noDS(nnUNetTrainerPASeg):
    """Without deep supervision, like the original networks."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.enable_deep_supervision = False


class nnUNetTrainerPASeg_fullAug(nnUNetTrainerPASeg):
    """With nnU-Net's full augmentation, noise, blur and low-resolution simulation included."""
    full_augmentation = True


class nnUNetTrainerPASeg_lateRamp(nnUNetTrainerPASeg):
    """Regularisers off for the first 30 % of training, ramped up to 50 %. For short budgets: the spec's ramp
    (10 % of training) is ~5 000 iterations in the original but only 100 in a 1 000-iteration run, and on ACDC
    points the mCRF then drove the full-resolution head to all-background before the partial loss had taught
    it any foreground (see the README)."""
    ramp_start = 0.3
    ramp_end = 0.5


class nnUNetTrainerPASegAux(nnUNetTrainerPASeg):
    """PA-Seg stage 1 on the peer architecture (residual encoder for plain plans), for stage 2's second model.
    ``nnUNetv2_predict -tr nnUNetTrainerPASegAux`` rebuilds the same peer through this method."""

    @staticmethod
    def build_network_architecture(plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True):
        name, kwargs = peer_architecture(configuration_manager.network_arch_class_name,
                                         configuration_manager.network_arch_init_kwargs)
        return get_network_from_plans(name, kwargs, configuration_manager.network_arch_init_kwargs_req_import,
                                      num_input_channels, num_output_channels, allow_init=True,
                                      deep_supervision=enable_deep_supervision)


class nnUNetTrainerPASegAux_lateRamp(nnUNetTrainerPASegAux):
    """The peer with the late ramp of ``nnUNetTrainerPASeg_lateRamp``."""
    ramp_start = 0.3
    ramp_end = 0.5
