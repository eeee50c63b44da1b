"""PA-Seg stage 1: nnU-Net's partial loss plus two regularisers that
spread the sparse labels along the image.

    loss = nnU-Net's Dice + CE on the labelled voxels (deep supervision, ignore label)
           + w(t) * (1.0 * mCRF + 0.1 * VM)          on the full-resolution head, in float32
                                                     (``_allHeads``: on every head, nnU-Net's head weights)

- mCRF (``MultiViewGatedCRFLoss``): neighbouring pixels of similar intensity should share a class; three
  views on a 2x-downsampled grid in 3D (1x along an axis more than twice as coarse as the finest), the image
  plane at full resolution in 2D.
- VM (``VarianceMinimisationLoss``): each soft class region should be homogeneous in intensity; background
  voxels at the patch minimum are left out (exactly-zero voxels when the plans normalise inside a mask). The sum
  over classes is scaled by 2 / C: the weight 0.1 was tuned for the original's two classes.
- In 3D the mCRF position kernel is physical (``paseg_crf``): PA-Seg's 6 pixels in pixel units span 60 mm
  along ACDC's 10 mm slices.
- w(t) = exp(-5 (1 - t)^2) over 10 % of all iterations, then 1. It starts once the full-resolution head
  predicts at least half of the foreground seed voxels of its batches (running mean over 10 steps), and not
  before ``ramp_start``. PA-Seg's ramp starts at iteration 0 (``nnUNetTrainerPASeg_fixedRamp``); in the
  original that is a small share of a long run, long after the network predicts foreground. A short run's
  full-resolution head may still predict no foreground when a fixed ramp starts; the regularisers (which reward
  constant predictions) can then settle it on all-background for good (README, PA-Seg results).
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
from nnunet_weak.training.loss_factory import full_resolution
from nnunet_weak.training.weak_base import nnUNetTrainerWeakBase
from nnunet_weak.utilities import cpu_bf16
from nnunet_weak.utilities.class_map import class_map
from nnunet_weak.utilities.ramps import OnsetGate

AFFINITY_DESTROYING = (GaussianNoiseTransform, GaussianBlurTransform, SimulateLowResolutionTransform)


def paseg_crf(spacing) -> MultiViewGatedCRFLoss:
    """PA-Seg's mCRF for patches of this spacing. PA-Seg's position kernel is 6 pixels of the resampled grid;
    in 3D that grid keeps a coarse axis (ACDC: 10 mm slices) at full resolution, where 6 pixels are 60 mm and
    voxels 50 mm apart still get weight 0.7. In 3D the kernel is therefore 6 pixels of the finest resampled axis
    (2x downsampled: 12 x the finest spacing) in millimetres along every axis; on isotropic grids this is the
    original kernel. 2D keeps pixel units (one image plane)."""
    if len(spacing) != 3:
        return MultiViewGatedCRFLoss(sigma_rgb=0.1, sigma_xy=6.0, radius=5, downsample="auto")
    finest_step = 2 * min(spacing)          # "auto" halves the finest axes
    return MultiViewGatedCRFLoss(sigma_rgb=0.1, sigma_xy=6.0 * finest_step, radius=5, downsample="auto",
                                 spacing=spacing, use_mm=True)


class nnUNetTrainerPASeg(nnUNetTrainerWeakBase):
    crf_weight = 1.0
    vm_weight = 0.1
    ramp_start = 0.0          # the regularisers ramp up from ramp_start to ramp_end (fractions of all iterations)
    ramp_end = 0.1
    wait_for_foreground = 0.5  # ...shifted to start when this share of foreground seeds is predicted (None: never)
    full_augmentation = False
    all_heads = False          # regularisers on every deep-supervision head (nnU-Net's head weights)

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.crf_loss = paseg_crf(self.configuration_manager.spacing)
        mask_norm = any(self.configuration_manager.use_mask_for_norm or [])
        self.vm_loss = VarianceMinimisationLoss(background_mask="zero" if mask_norm else "min", reference_classes=2)
        self.foreground_gate = None
        if self.wait_for_foreground is not None:
            self.foreground_gate = OnsetGate(self.wait_for_foreground)
            self.register_extra_state("foreground_gate", self.foreground_gate)

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

    def head_regularisers(self, output, data: torch.Tensor):
        """(mCRF, VM) of the full-resolution head, or with ``all_heads`` the mean over the deep-supervision heads
        weighted as nnU-Net weights their partial losses (each head against the image resized to its grid)."""
        heads = output if isinstance(output, (list, tuple)) else [output]
        if not self.all_heads or len(heads) == 1:
            return self.regularisers(heads[0], data)
        weights = getattr(self.loss, "weight_factors", None) or (1.0,) * len(heads)
        images = self.images_per_scale(data, heads)
        crf = vm = 0.0
        for w, head, image in zip(weights, heads, images):
            if w:
                c, v = self.regularisers(head, image)
                crf, vm = crf + w * c, vm + w * v
        total = float(sum(w for w in weights[:len(heads)]))
        return crf / total, vm / total

    def seed_recall(self, logits: torch.Tensor, labels: torch.Tensor) -> float:
        """Share of the labelled foreground voxels of (b, 1, *spatial) ``labels`` that the (b, C, *spatial)
        logits assign to their class; 1 when the batch has none (nothing to wait for)."""
        with torch.no_grad():
            ignore = self.label_manager.ignore_label
            foreground = (labels > 0) & (labels != ignore) if ignore is not None else labels > 0
            if not foreground.any():
                return 1.0
            return (class_map(logits, keepdim=True) == labels)[foreground].float().mean().item()

    def regulariser_weight(self) -> float:
        start, end = self.ramp_start, self.ramp_end
        if self.foreground_gate is not None:
            if self.foreground_gate.onset is None:
                return 0.0
            shift = max(0.0, self.foreground_gate.onset - start)
            start, end = start + shift, end + shift
        return self.ramp_weight(start, end)

    def compute_loss(self, output, target, data, batch):
        seg = self.loss(output, target)
        logits = full_resolution(output)
        logs = {}
        if self.foreground_gate is not None:
            logs["seed_recall"] = self.seed_recall(logits, full_resolution(target))
            self.foreground_gate.update(logs["seed_recall"], self.progress)
        weight = self.regulariser_weight()
        if not (self.crf_weight or self.vm_weight):   # the matched control: the partial loss alone
            logs.update({"seg": seg.detach(), "ramp": weight})
            return seg, logs
        if weight > 0:
            crf, vm = self.head_regularisers(output, data)
            loss = seg + weight * (self.crf_weight * crf + self.vm_weight * vm)
        else:
            with torch.no_grad():       # logged only: no backward through them while they are off
                crf, vm = self.head_regularisers(output, data)
            loss = seg
        logs.update({"seg": seg.detach(), "crf": crf.detach(), "vm": vm.detach(), "ramp": weight})
        return loss, logs

    def on_train_epoch_end(self, train_outputs):
        super().on_train_epoch_end(train_outputs)
        gate = self.foreground_gate
        if gate is not None and gate.onset is not None and not getattr(self, "_onset_logged", False):
            self.print_to_log_file(f"nnunet_weak: regularisers start at {100 * gate.onset:.1f} % of training "
                                   f"(foreground seeds predicted)")
            self._onset_logged = True


class nnUNetTrainerPASeg_noDS(nnUNetTrainerPASeg):
    """Without deep supervision, like the original networks."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.enable_deep_supervision = False


class nnUNetTrainerPASeg_allHeads(nnUNetTrainerPASeg):
    """mCRF + VM on every deep-supervision head, not only the full-resolution one: with the partial loss spread
    over all heads, regularising one head lets the others keep fitting the seeds while it alone gives in."""
    all_heads = True


class nnUNetTrainerPASeg_control(nnUNetTrainerPASeg):
    """PA-Seg's matched control: everything of stage 1 (sampler, padding as ignore, the reduced augmentation,
    nnU-Net's partial loss) except the regularisers, so the two differ only in mCRF + VM."""
    crf_weight = 0.0
    vm_weight = 0.0
    wait_for_foreground = None


class nnUNetTrainerPASeg_fixedRamp(nnUNetTrainerPASeg):
    """PA-Seg's schedule: the ramp starts at iteration 0 whatever the network predicts."""
    wait_for_foreground = None


class nnUNetTrainerPASeg_lowCRF(nnUNetTrainerPASeg):
    """mCRF weight 0.1 instead of 1.0: at the paper's weight the regularisers removed the RV on ACDC points
    (README, PA-Seg results)."""
    crf_weight = 0.1


class nnUNetTrainerPASeg_fullAug(nnUNetTrainerPASeg):
    """With nnU-Net's full augmentation, noise, blur and low-resolution simulation included."""
    full_augmentation = True


class nnUNetTrainerPASeg_lateRamp(nnUNetTrainerPASeg):
    """Regularisers off for the first 30 % of training, ramped up to 50 %. For short budgets: PA-Seg's ramp
    (10 % of training) is ~5 000 iterations in the original but only 100 in a 1 000-iteration run, and on ACDC
    points the mCRF then drove the full-resolution head to all-background before the partial loss had taught
    it any foreground (see the README)."""
    ramp_start = 0.3
    ramp_end = 0.5
    wait_for_foreground = None


class nnUNetTrainerPASegAux(nnUNetTrainerPASeg):
    """PA-Seg stage 1 on the peer architecture (residual encoder for plain plans), for stage 2's second model.
    ``nnUNetv2_predict -tr nnUNetTrainerPASegAux`` rebuilds the same peer through this method."""

    @staticmethod
    def build_network_architecture(plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True):
        name, kwargs = peer_architecture(configuration_manager.network_arch_class_name,
                                         configuration_manager.network_arch_init_kwargs)
        return cpu_bf16.install_inference_hooks(get_network_from_plans(
            name, kwargs, configuration_manager.network_arch_init_kwargs_req_import, num_input_channels,
            num_output_channels, allow_init=True, deep_supervision=enable_deep_supervision))


class nnUNetTrainerPASegAux_lateRamp(nnUNetTrainerPASegAux):
    """The peer with the late ramp of ``nnUNetTrainerPASeg_lateRamp``."""
    ramp_start = 0.3
    ramp_end = 0.5
    wait_for_foreground = None
