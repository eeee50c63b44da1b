"""``nnUNetTrainerDualKMaX``: Dual-KMax mutual learning on nnU-Net's plain U-Net with the kMaX head, in 2D or 3D.

``nnUNetTrainerKMaX`` trains one ``KMaXUNet`` on the labelled cases only, so its gain over labelled-only nnU-Net is
the architecture's. This trainer adds what Dual-KMax UX-Net does with the unlabelled cases: two such networks, A on
the strong view and B on nnU-Net's augmented (weak) view of every batch, with segmentation and query-distribution
consistency on labelled and unlabelled cases alike (the step of ``nnUNetTrainerDKUXNet``, whose plumbing it reuses:
labelled share, batch grown so that every step sees the planned batch of labelled samples with the control's
forced-foreground share, cutout-erased labels ignored for A, two optimisers, the second network as extra checkpoint
state). Prediction uses network B, the one trained on nnU-Net's (weak) view: nnU-Net's own network takes that view
(``predictor_view = "weak"``), A is the extra state; A only ever sees the strong view's intensity changes and
cutout, which prediction never shows it (README, "Which network predicts"). ``_predictStrongView`` predicts with A,
as ``nnUNetTrainerDKUXNet`` does.

Everything else is ``nnUNetTrainerKMaX``'s, so that trainer is the matched control: the same network, supervised
terms (nnU-Net's masked Dice + CE with deep supervision on the kMaX output + 0.5 Dice + CE on the U-Net's own
head, no query loss), labelled samples per step, SGD, poly schedule without warm-up and nnU-Net's 1000 epochs.
``_lite``: the CPU-sized head of ``nnUNetTrainerKMaX_lite``; ``_lite_batchForeground``: nnU-Net's forced-foreground
share of the whole grown batch and A predicting, as the first 10 % runs were trained; ``_lite_noConsistency``: the
consistency weight 0, so the unlabelled cases take no part and the two networks train apart on the labelled ones.
"""
from nnunet_weak.networks.kmax_plainunet import build_kmax_plain_unet
from nnunet_weak.training.dkuxnet import nnUNetTrainerDKUXNet
from nnunet_weak.training.kmax import KMAX_HEAD, KMAX_HEAD_LITE
from nnunet_weak.training.own_network import own_network
from nnunet_weak.training.weak_base import nnUNetTrainerWeakBase


class nnUNetTrainerDualKMaX(nnUNetTrainerDKUXNet):
    KMAX_KW = dict(KMAX_HEAD)
    deep_supervision = True       # as nnUNetTrainerKMaX
    query_weight = 0.0
    conv_aux_weight = 0.5
    optimizer_name = "sgd"
    warmup_epochs = 0
    default_num_epochs = 1000
    predictor_view = "weak"       # B predicts

    build_network_architecture = own_network(build_kmax_plain_unet, "KMAX_KW")

    def check_configuration(self) -> None:
        pass                      # the kMaX U-Net takes any plain U-Net configuration, 2D or 3D

    def query_groups(self):
        return self.KMAX_KW.get("query_groups", "per_class")

    def _get_deep_supervision_scales(self):
        return nnUNetTrainerWeakBase._get_deep_supervision_scales(self)   # nnU-Net's, from the plans


class nnUNetTrainerDualKMaX_lite(nnUNetTrainerDualKMaX):
    """The CPU-sized kMaX head of nnUNetTrainerKMaX_lite."""
    KMAX_KW = dict(KMAX_HEAD_LITE)


class nnUNetTrainerDualKMaX_lite_batchForeground(nnUNetTrainerDualKMaX_lite):
    """Forced foreground on the last third of the whole 24-sample batch (8 of the 12 labelled samples; the control
    forces 4 of its 12) and A predicting: how the first three 10 % runs were trained."""
    foreground_share_of_labelled = False
    predictor_view = "strong"


class nnUNetTrainerDualKMaX_predictStrongView(nnUNetTrainerDualKMaX):
    """Saves and predicts with the network trained on the strong view (A)."""
    predictor_view = "strong"


class nnUNetTrainerDualKMaX_lite_predictStrongView(nnUNetTrainerDualKMaX_lite):
    """The lite head; A predicts (how the matched 10 % runs were saved and scored)."""
    predictor_view = "strong"


class nnUNetTrainerDualKMaX_lite_noConsistency(nnUNetTrainerDualKMaX_lite):
    """Consistency weight 0 (terms still computed and logged, so the step costs the same): B is then kMaX lite
    trained inside this trainer's batch and sampler; the default minus this variant is the consistency's share."""
    consistency_weight = 0.0
