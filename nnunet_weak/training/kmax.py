"""kMaX head on nnU-Net's plain U-Net, trained with nnU-Net's ignore-aware loss.

Network: ``KMaXUNet`` from the plans (2D or 3D, plain or residual-encoder U-Net): the U-Net's full-resolution
output is replaced by the kMaX logits Y, the lower-resolution deep-supervision outputs stay nnU-Net's. Loss per step:

    L = DiceCE_DS([Y, ds_1, ds_2, ...], s) + 0.5 DiceCE(conv, s) (+ query_weight L_q(G, s))

DiceCE is nnU-Net's masked Dice + CE with deep supervision (ignore voxels contribute nothing), conv the U-Net's own
full-resolution segmentation layer (auxiliary, also keeps every parameter in the graph), L_q the query loss (off by
default; ``_queryLoss`` sets 0.1). So the trainer works on scribble datasets (ignore = unannotated) and on
semi-supervised ones (unlabelled cases are all-ignore): ``labelled_fraction = 1.0`` draws every batch from labelled
cases when unlabelled ones exist, since they would add no gradient. Otherwise nnU-Net's optimiser, schedule,
augmentation and prediction are kept; torch.compile only when ``nnUNet_compile`` is set explicitly.

Variants: ``_lite`` (32 queries of width 64, pixel / mask width 32, 4 heads, FFN 256), ``_queryLoss``.
"""
import torch

from nnunet_weak.losses.query_loss import QueryLoss
from nnunet_weak.networks.kmax import group_of_class
from nnunet_weak.networks.kmax_plainunet import LEVEL_STRIDES, build_kmax_plain_unet
from nnunet_weak.training.own_network import ExplicitCompile, own_network
from nnunet_weak.training.loss_factory import dice_ce_loss, full_resolution, single_scale
from nnunet_weak.training.weak_base import nnUNetTrainerWeakBase

KMAX_HEAD = dict(num_queries=128, query_dim=256, pixel_dim=64, mask_dim=64, layers_per_level=2,
                 level_strides=LEVEL_STRIDES, norm="nnunet", query_groups="per_class", num_heads=8, key_dim=128,
                 ffn_dim=2048, classifier_hidden=64)
KMAX_HEAD_LITE = dict(KMAX_HEAD, num_queries=32, query_dim=64, pixel_dim=32, mask_dim=32, num_heads=4, key_dim=32,
                      ffn_dim=256)


class nnUNetTrainerKMaX(ExplicitCompile, nnUNetTrainerWeakBase):
    KMAX_KW = dict(KMAX_HEAD)     # kMaX head settings (see KMaXUNet)
    conv_aux_weight = 0.5
    query_weight = 0.0
    labelled_fraction = 1.0

    build_network_architecture = own_network(build_kmax_plain_unet, "KMAX_KW")

    def initialize(self):
        if self.was_initialized:
            return
        super().initialize()
        self.refuse_multi_gpu("the kMaX layers' predictors feed a no-gradient argmax only")
        ignore = self.label_manager.ignore_label
        self.conv_loss = single_scale(dice_ce_loss(self, ignore_label=ignore))
        groups = self.KMAX_KW.get("query_groups", "per_class")
        self.query_loss = QueryLoss(group_of_class(groups, self.label_manager.num_segmentation_heads), ignore)

    def network_forward(self, data: torch.Tensor):
        return self.network(data, return_aux=True)

    def compute_loss(self, output, target, data, batch):
        full_target = full_resolution(target)
        seg_term = self.loss(output["seg"], target)
        conv_term = self.conv_loss(output["conv"], full_target)
        loss = seg_term + self.conv_aux_weight * conv_term
        logs = {"seg": seg_term.detach(), "conv": conv_term.detach()}
        if self.query_weight:
            query_term = self.query_loss(output["cluster"], full_target)
            loss = loss + self.query_weight * query_term
            logs["query"] = query_term.detach()
        return loss, logs


class nnUNetTrainerKMaX_lite(nnUNetTrainerKMaX):
    """CPU-sized head: 32 queries of width 64, pixel / mask embeddings 32, 4 heads, FFN 256."""
    KMAX_KW = dict(KMAX_HEAD_LITE)


class nnUNetTrainerKMaX_queryLoss(nnUNetTrainerKMaX):
    """Adds Dual-KMax UX-Net's query loss (weight 0.1) on the cluster outputs."""
    query_weight = 0.1
