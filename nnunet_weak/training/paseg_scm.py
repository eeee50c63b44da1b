"""PA-Seg stage 2, Self and Cross Monitoring.

Two stage-1 models of different architecture go on training together, without the weak labels:

    L_a = (1 - alpha) * DiceCE(z_a, argmax snapshot_a) + alpha * T^2 KL(softmax(snapshot_b / T) || softmax(z_a / T))

and symmetrically for b, alpha = 0.5, T = 4. ``snapshot_a`` / ``snapshot_b`` are frozen copies of the two
models; they give the pseudo labels (self monitoring) and the soft targets of the peer (cross monitoring) on the
same augmented patch, and are refreshed with the current weights every 20 % of the epochs (the original reloads
the best-on-dense-validation checkpoint; without dense labels there is no best). DiceCE is nnU-Net's
Dice + CE with deep supervision, without ignore label; the KD term uses the full-resolution heads.

- primary a = nnU-Net's network from the plans, initialised from ``nnUNetTrainerPASeg``'s final checkpoint of the
  same dataset, plans, configuration and fold; auxiliary b = the peer architecture, from ``nnUNetTrainerPASegAux``'s
  (``NNW_SCM_PRIMARY_CHECKPOINT`` / ``NNW_SCM_AUX_CHECKPOINT`` point elsewhere). All weights are loaded,
  segmentation layers included.
- Each network has its own SGD optimiser and poly schedule; gradients are clipped per network.
- Default length: a third of nnU-Net's 1000 epochs (PA-Seg trains stage 2 for a third of stage 1 on VS);
  ``NNW_NUM_EPOCHS`` overrides it.
- The checkpoint's ``network_weights`` hold the primary only, so ``nnUNetv2_predict -tr nnUNetTrainerPASegSCM``
  predicts with it; the auxiliary network, its optimiser and both snapshots are extra checkpoint state, so
  ``--c`` resumes. Validation (pseudo Dice) uses the primary with nnU-Net's partial loss on the weak labels.
- Stage 2 refuses to start from a stage-1 model that lost a class: on a few training batches each model must
  give every foreground class present in the seeds at least ``min_stage1_recall`` of that class's seed voxels.
  Distilling a collapsed model (ACDC points: LV and RV gone) only teaches its peer the collapse.
"""
from os.path import join

import torch
from nnunetv2.utilities.file_path_utilities import get_output_folder

from nnunet_weak.losses.distillation import KnowledgeDistillationLoss
from nnunet_weak.training.loss_factory import dice_ce_loss, full_resolution, hard_targets_like
from nnunet_weak.training.paseg import nnUNetTrainerPASeg, nnUNetTrainerPASegAux
from nnunet_weak.training.two_networks import (frozen_copy, load_network_weights, optimizer_like_nnunet, refresh,
                                               set_deep_supervision)
from nnunet_weak.utilities.class_map import class_map
from nnunet_weak.utilities.env import env_flag, env_path
from nnunet_weak.utilities.errors import NNWError


class nnUNetTrainerPASegSCM(nnUNetTrainerPASeg):
    alpha = 0.5
    temperature = 4.0
    refresh_fraction = 0.2        # snapshots take the current weights every this fraction of the epochs
    default_num_epochs = 333      # a third of nnU-Net's 1000 (PA-Seg's stage 2 on VS); NNW_NUM_EPOCHS overrides it
    primary_stage1_trainer = "nnUNetTrainerPASeg"
    aux_stage1_trainer = "nnUNetTrainerPASegAux"
    wait_for_foreground = None    # no regularisers in stage 2
    min_stage1_recall = 0.01      # per foreground class, on the seeds of ``stage1_check_batches`` batches
    stage1_check_batches = 2

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.kd_loss = KnowledgeDistillationLoss(self.temperature)
        self._resumed = False

    # ------------------------------------------------------------------ setup
    def initialize(self):
        if self.was_initialized:
            return
        super().initialize()
        self.aux_network = nnUNetTrainerPASegAux.build_network_architecture(
            self.plans_manager, self.configuration_manager, self.num_input_channels,
            self.label_manager.num_segmentation_heads, self.enable_deep_supervision).to(self.device)
        self.aux_optimizer, self.aux_lr_scheduler = optimizer_like_nnunet(self, self.aux_network)
        self.snapshot_primary = frozen_copy(self.network)
        self.snapshot_aux = frozen_copy(self.aux_network)
        self.pseudo_label_loss = dice_ce_loss(self, ignore_label=None)
        self.register_extra_state("aux_network", self.aux_network)
        self.register_extra_state("aux_optimizer", self.aux_optimizer)
        self.register_extra_state("snapshot_primary", self.snapshot_primary)
        self.register_extra_state("snapshot_aux", self.snapshot_aux)

    def stage1_checkpoints(self):
        """(primary, auxiliary) stage-1 checkpoint paths: the environment's, else the standard output folders."""
        def default(trainer_name):
            folder = get_output_folder(self.plans_manager.dataset_name, trainer_name,
                                       self.plans_manager.plans_name, self.configuration_name, self.fold)
            return join(folder, "checkpoint_final.pth")
        return (env_path("NNW_SCM_PRIMARY_CHECKPOINT") or default(self.primary_stage1_trainer),
                env_path("NNW_SCM_AUX_CHECKPOINT") or default(self.aux_stage1_trainer))

    def load_checkpoint(self, filename_or_checkpoint):
        super().load_checkpoint(filename_or_checkpoint)
        self._resumed = True

    def on_train_start(self):
        super().on_train_start()
        set_deep_supervision(self.aux_network, self.enable_deep_supervision)
        if self._resumed:
            return
        primary, aux = self.stage1_checkpoints()
        load_network_weights(self.network, primary, self.configuration_name,
                             "the primary network of nnUNetTrainerPASegSCM", "NNW_SCM_PRIMARY_CHECKPOINT")
        load_network_weights(self.aux_network, aux, self.configuration_name,
                             "the auxiliary network of nnUNetTrainerPASegSCM", "NNW_SCM_AUX_CHECKPOINT")
        self.refresh_snapshots()
        batches = [next(self.dataloader_train) for _ in range(self.stage1_check_batches)]
        self.check_stage1([(self.snapshot_primary, primary), (self.snapshot_aux, aux)], batches)
        self.print_to_log_file(f"nnunet_weak: stage 2 starts from {primary} and {aux}")

    def check_stage1(self, models, batches) -> None:
        """Raise when one of the (network, checkpoint path) ``models`` lost a class on these batches
        (``NNW_STAGE1_CHECK=0``: log and go on, for a user who checked the stage-1 predictions by eye)."""
        if env_flag("NNW_STAGE1_CHECK") is False:
            self.print_to_log_file("nnunet_weak: stage-1 class check off (NNW_STAGE1_CHECK=0)")
            return
        for network, path in models:
            recall = self.class_seed_recall(network, batches)
            lost = {c: r for c, r in recall.items() if r < self.min_stage1_recall}
            if lost:
                raise NNWError(f"the stage-1 model {path} predicts almost none of the seeds of class(es) "
                               f"{', '.join(f'{c} (recall {r:.3f})' for c, r in lost.items())} on training "
                               f"batches: stage 2 would distil that collapse. Train stage 1 until it predicts "
                               f"every class (longer, or nnUNetTrainerPASeg_lowCRF / _lateRamp), then start "
                               f"stage 2; if its predictions look right to you, NNW_STAGE1_CHECK=0 skips this "
                               f"check.")

    def class_seed_recall(self, network, batches) -> dict:
        """{foreground class: share of its seed voxels that ``network`` assigns to it} over ``batches`` (nnU-Net
        batch dicts; full-resolution targets), for the classes the seeds contain."""
        ignore = self.label_manager.ignore_label
        hits, totals = {}, {}
        with torch.no_grad():
            for batch in batches:
                data = batch["data"].to(self.device)
                target = batch["target"][0] if isinstance(batch["target"], list) else batch["target"]
                target = target.to(self.device)[:, 0].long()
                with self.autocast():
                    output = network(data)
                predicted = class_map(full_resolution(output))
                for c in torch.unique(target).tolist():
                    if c == 0 or c == ignore:
                        continue
                    seeds = target == c
                    hits[c] = hits.get(c, 0) + int((predicted[seeds] == c).sum())
                    totals[c] = totals.get(c, 0) + int(seeds.sum())
        return {c: hits[c] / totals[c] for c in sorted(totals)}

    def refresh_snapshots(self):
        refresh(self.snapshot_primary, self.network)
        refresh(self.snapshot_aux, self.aux_network)

    def on_train_epoch_start(self):
        every = max(1, round(self.refresh_fraction * self.num_epochs))
        if self.current_epoch > 0 and self.current_epoch % every == 0:
            self.refresh_snapshots()
            self.print_to_log_file("nnunet_weak: snapshots refreshed with the current weights")
        self.aux_network.train()
        self.aux_lr_scheduler.step(self.current_epoch)
        super().on_train_epoch_start()

    def optimizers(self):
        return [self.optimizer, self.aux_optimizer]

    # ------------------------------------------------------------------ loss
    def _monitored_loss(self, output, own_snapshot, peer_snapshot):
        deep = isinstance(output, (list, tuple))
        pseudo = hard_targets_like(class_map(own_snapshot, keepdim=True), output)
        self_term = self.pseudo_label_loss(output, pseudo if deep else pseudo[0])
        cross_term = self.kd_loss(full_resolution(output), peer_snapshot)
        return (1 - self.alpha) * self_term + self.alpha * cross_term, self_term, cross_term

    def compute_loss(self, output, target, data, batch):
        aux_output = self.aux_network(data)
        with torch.no_grad():
            snap_a, snap_b = self.snapshot_primary(data), self.snapshot_aux(data)
        loss_a, self_a, kd_a = self._monitored_loss(output, snap_a, snap_b)
        loss_b, self_b, kd_b = self._monitored_loss(aux_output, snap_b, snap_a)
        logs = {"primary": loss_a.detach(), "aux": loss_b.detach(), "self_primary": self_a.detach(),
                "kd_primary": kd_a.detach(), "self_aux": self_b.detach(), "kd_aux": kd_b.detach()}
        return loss_a + loss_b, logs
