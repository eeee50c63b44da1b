"""Dual-KMax UX-Net (Wu, Li, Zhang, ISBI 2024): two DKUXNets trained by
mutual learning on labelled and unlabelled cases.

Per step, with x the nnU-Net-augmented batch (the weak view), s(x) its strong intensity-only view
(``nnunet_weak.data.strong_view``), l the labelled entries of the batch and t the fraction of training done:

    A(s(x)) -> Y^A, G^A, conv^A;   B(x) -> Y^B, G^B, conv^B          one pass per network
    L_sup(net) = DiceCE(Y, y) + 0.1 L_q(G, y) + 0.5 DiceCE(conv, y)  on the labelled entries only
    L_segc = MSE(softmax Y^A, softmax Y^B);  L_qdc = MSE(G^A, G^B)   on all entries (sum over channels, mean over
                                                                    voxels), gradients into both networks
    L = L_sup(A) + L_sup(B) + lambda(t) (L_segc + L_qdc),  lambda(t) = 0.1 exp(-5 (1 - t / 0.4)^2), 0.1 after 40 %

DiceCE is nnU-Net's ignore-aware Dice + CE (so scribble datasets work too), L_q the query loss
(``nnunet_weak.losses.query_loss``), conv the plain UX-Net head (auxiliary).

Batches: nnU-Net's single loader with a fixed labelled share (``labelled_fraction = 0.5``: b_l = b_u, the LA
protocol's 2 + 2) when the dataset holds unlabelled (all-ignore) cases, and the batch grown to planned /
labelled_fraction so that b_l is the planned batch (the labelled-only control's labelled samples per step; the step
costs twice as much), nnU-Net's forced-foreground share taken of those b_l samples, as the control takes it of its
batch (taken of the whole grown batch, the labelled samples of a 12 + 12 batch get 8 forced, twice the control's 4;
no difference at the 3D batch of 2 + 2; ``nnUNetTrainerDualKMaX_lite_batchForeground``). Both views come from the
same patches, so no second loader is needed. The strong view's cutout erases image regions: their labels are ignore
in the supervised terms of the network on the strong view (A). Validation and prediction use nnU-Net's own network
only (``network_weights``, what ``nnUNetv2_predict -tr nnUNetTrainerDKUXNet`` loads): A by default, as the paper
does not say which network predicts; ``predictor_view = "weak"`` (``_predictWeakView``) gives nnU-Net's network the
weak view instead, so B (which sees the images as prediction does) is the one saved and used. The other network and
its optimiser are extra checkpoint state (``--c`` resumes both). Each network has its own optimiser with a 5-epoch
linear warm-up and poly decay: nnU-Net's SGD (lr 1e-2, Nesterov momentum 0.99, weight decay 3e-5) by default,
because the paper's AdamW (lr 1e-4) moves the kMaX mask logits too little to train the kMaX output (the one used for
prediction) within a run of nnU-Net's length (README); ``_AdamW`` keeps it. Gradients are clipped to 12 per network.
Default length 200 epochs x 250 iterations (``NNW_NUM_EPOCHS`` overrides). torch.compile only when
``nnUNet_compile`` is set explicitly. Single GPU only.

Variants: ``_lite`` (CPU-sized widths; ``_lite_AdamW`` with the paper's optimiser), ``_paperGroups`` (16 / 4 / rest
query groups, labels above 2 merged), ``_predictWeakView`` (B predicts; ``_lite_predictWeakView``),
``_shared`` (one network for both views), ``_AdamW`` (the paper's optimiser), ``_DS`` (deep supervision with
auxiliary heads at d1-d3), ``_KL`` (symmetric-KL consistency). Matched controls: ``_labelledOnly`` (one network on
the labelled cases and the predicting network's view; ``_lite_labelledOnly``, ``_lite_labelledOnly_weakView``).
"""
import math

import torch

from nnunet_weak.data.strong_view import StrongViewSettings, ignore_erased, strong_view
from nnunet_weak.losses.distribution_consistency import DistributionConsistency, softmax_probabilities
from nnunet_weak.losses.query_loss import QueryLoss
from nnunet_weak.networks.dkuxnet import PAPER_WIDTHS, build_dkuxnet, dkuxnet_strides
from nnunet_weak.networks.kmax import group_of_class
from nnunet_weak.networks.wrappers import unwrap
from nnunet_weak.training.loss_factory import dice_ce_loss, full_resolution, single_scale
from nnunet_weak.training.lr_schedule import WarmupPolyLRScheduler
from nnunet_weak.training.own_network import ExplicitCompile, own_network
from nnunet_weak.training.two_networks import set_deep_supervision
from nnunet_weak.training.weak_base import nnUNetTrainerWeakBase
from nnunet_weak.utilities.errors import NNWError

LITE_WIDTHS = dict(PAPER_WIDTHS, widths=(16, 32, 64, 128), hidden=256, num_queries=32, query_dim=64, pixel_dim=32,
                   mask_dim=32, num_heads=4, key_dim=32, ffn_dim=256)


def _zero_like_graph(*tensors: torch.Tensor) -> torch.Tensor:
    """0 connected to the graph of ``tensors`` (so backward works when a term has nothing to average)."""
    return sum(t.float().sum() * 0.0 for t in tensors)


class nnUNetTrainerDKUXNet(ExplicitCompile, nnUNetTrainerWeakBase):
    DK_KW = dict(PAPER_WIDTHS)        # network settings: widths, queries, levels, groups, norm (see DKUXNet)
    deep_supervision = False          # the paper has none; _DS adds the auxiliary heads' outputs
    labelled_fraction = 0.5           # b_l = b_u when the dataset holds unlabelled cases
    match_labelled_samples = True     # batch = planned batch / labelled_fraction (b_l = the planned batch)
    foreground_share_of_labelled = True   # ... and forced foreground on the control's share of those b_l
    query_weight = 0.1
    conv_aux_weight = 0.5
    consistency_weight = 0.1          # lambda_max
    consistency_ramp_end = 0.4        # sigmoid ramp over the first 40 % of the iterations
    consistency_kind = "mse"          # or "kl" (symmetric)
    detach_weak = False               # True: stop-gradient on network B's side of the consistency
    shared_networks = False
    predictor_view = "strong"         # the view nnU-Net's network (saved, validated, predicts) trains on: A's
    optimizer_name = "sgd"            # nnU-Net's; "adamw" is the paper's (``_AdamW``)
    warmup_epochs = 5
    default_num_epochs = 200
    strong_view_settings = StrongViewSettings()

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.check_configuration()
        self.enable_deep_supervision = self.deep_supervision
        if self.optimizer_name == "adamw":
            self.initial_lr, self.weight_decay = 1e-4, 1e-4
        elif self.optimizer_name != "sgd":
            raise NNWError(f"{type(self).__name__}.optimizer_name must be 'adamw' or 'sgd', not "
                           f"{self.optimizer_name!r}")
        if self.predictor_view not in ("strong", "weak"):
            raise NNWError(f"{type(self).__name__}.predictor_view must be 'strong' or 'weak', not "
                           f"{self.predictor_view!r}")
        self.network_b = None
        self.optimizer_b = self.lr_scheduler_b = None
        self._erased = None               # the cutout mask of the last strong view (strong_input)

    def check_configuration(self) -> None:
        """Refuse configurations the network cannot be built for (UX-Net: 3D, strides from the plans)."""
        cm = self.configuration_manager
        dkuxnet_strides(cm.patch_size, cm.network_arch_init_kwargs.get("strides", []), self.configuration_name)

    def query_groups(self):
        return self.DK_KW.get("query_groups", "per_class")

    # ------------------------------------------------------------------ networks
    build_network_architecture = own_network(build_dkuxnet, "DK_KW")

    def _get_deep_supervision_scales(self):
        """Scales of [Y, aux(d1), aux(d2), aux(d3)] from the network's own strides (not the plans' stage count)."""
        if not self.enable_deep_supervision:
            return None
        cm = self.configuration_manager
        strides = dkuxnet_strides(cm.patch_size, cm.network_arch_init_kwargs.get("strides", []),
                                  self.configuration_name)
        scales, total = [[1.0, 1.0, 1.0]], [1, 1, 1]
        for s in strides[:3]:
            total = [a * b for a, b in zip(total, s)]
            scales.append([1.0 / t for t in total])
        return scales

    def _make_optimizer(self, module: torch.nn.Module):
        if self.optimizer_name == "adamw":
            optimizer = torch.optim.AdamW(module.parameters(), lr=self.initial_lr, weight_decay=self.weight_decay)
        else:
            optimizer = torch.optim.SGD(module.parameters(), self.initial_lr, weight_decay=self.weight_decay,
                                        momentum=0.99, nesterov=True)
        return optimizer, WarmupPolyLRScheduler(optimizer, self.initial_lr, self.num_epochs, self.warmup_epochs)

    def configure_optimizers(self):
        return self._make_optimizer(self.network)

    def initialize(self):
        if self.was_initialized:
            return
        super().initialize()
        self.refuse_multi_gpu("network B and the kMaX layers' no-gradient predictors are outside DDP's bookkeeping")
        self.build_second_network()
        ignore = self.label_manager.ignore_label
        self.conv_loss = single_scale(dice_ce_loss(self, ignore_label=ignore))
        self.query_loss = QueryLoss(group_of_class(self.query_groups(), self.label_manager.num_segmentation_heads),
                                    ignore)
        self.consistency = DistributionConsistency(self.consistency_kind, detach_second=self.detach_weak)

    def build_second_network(self) -> None:
        """Network B with its own optimiser, saved as extra checkpoint state (``_shared``: A itself)."""
        if self.shared_networks:
            self.network_b = self.network
            return
        # B draws its initial weights from the random stream after A's, so the two start apart
        network_b = self.build_network_architecture(
            self.plans_manager, self.configuration_manager, self.num_input_channels,
            self.label_manager.num_segmentation_heads, self.enable_deep_supervision).to(self.device)
        if self._do_i_compile():
            network_b = torch.compile(network_b)
        self.network_b = network_b
        self.optimizer_b, self.lr_scheduler_b = self._make_optimizer(network_b)
        self.register_extra_state("network_b", unwrap(network_b))
        self.register_extra_state("optimizer_b", self.optimizer_b)

    def get_dataloaders(self):
        # the labelled share halves the labelled samples of a batch; the labelled-only control sees a whole batch
        # of them. Growing the batch by 1 / labelled_fraction gives both the same labelled samples per step.
        if self.match_labelled_samples and self.labelled_fraction and self.labelled_fraction < 1:
            self.do_split()                       # finds the unlabelled cases (once)
            if self.unlabelled_keys:
                planned = self.configuration_manager.batch_size
                self.batch_size = int(math.ceil(planned / self.labelled_fraction))
                share = ("forced foreground on the same share of them" if self.foreground_share_of_labelled
                         else "forced foreground on the last third of the whole batch")
                self.print_to_log_file(f"nnunet_weak: batch {self.batch_size} ({planned} labelled + the rest "
                                       f"unlabelled): as many labelled samples per step as nnU-Net on the "
                                       f"labelled cases alone, {share}")
        return super().get_dataloaders()

    def set_deep_supervision_enabled(self, enabled: bool):
        set_deep_supervision(self.network, enabled)
        if self.network_b is not None:
            set_deep_supervision(self.network_b, enabled)

    def optimizers(self):
        return [self.optimizer] + ([self.optimizer_b] if self.optimizer_b is not None else [])

    def on_train_epoch_start(self):
        if self.network_b is not None:
            self.network_b.train()
        if self.lr_scheduler_b is not None:
            self.lr_scheduler_b.step(self.current_epoch)
        super().on_train_epoch_start()

    # ------------------------------------------------------------------ step
    def networks_by_view(self):
        """(network on the strong view, network on the weak view): nnU-Net's own network takes
        ``predictor_view``, the second network the other."""
        if self.predictor_view == "strong":
            return self.network, self.network_b
        return self.network_b, self.network

    def strong_input(self, data: torch.Tensor) -> torch.Tensor:
        """The strong view of ``data``; remembers which voxels its cutout erased for ``strong_target``."""
        strong, self._erased = strong_view(data, self.strong_view_settings, return_erased=True)
        return strong

    def strong_target(self, target):
        """``target`` with the voxels erased by the last ``strong_input`` set to ignore: their image is gone."""
        return ignore_erased(target, self._erased, self.label_manager.ignore_label)

    def network_forward(self, data: torch.Tensor):
        """(strong-view output, weak-view output), whichever network predicts."""
        on_strong, on_weak = self.networks_by_view()
        return on_strong(self.strong_input(data), return_aux=True), on_weak(data, return_aux=True)

    def supervised_terms(self, output: dict, target, labelled: torch.Tensor):
        """(L_seg + w_q L_q + w_conv L_conv on the labelled entries, logs); 0 when the batch has none."""
        seg = output["seg"]
        deep = isinstance(seg, (list, tuple))
        if not bool(labelled.any()):
            zero = _zero_like_graph(full_resolution(seg), output["conv"])
            return zero, {"seg": 0.0, "query": 0.0, "conv": 0.0}
        if not bool(labelled.all()):
            seg = [s[labelled] for s in seg] if deep else seg[labelled]
            target = [t[labelled] for t in target] if deep else target[labelled]
            conv, clusters = output["conv"][labelled], output["cluster"][labelled]
        else:
            conv, clusters = output["conv"], output["cluster"]
        full_target = full_resolution(target)
        seg_term = self.loss(seg, target)
        query_term = self.query_loss(clusters, full_target)
        conv_term = self.conv_loss(conv, full_target)
        total = seg_term + self.query_weight * query_term + self.conv_aux_weight * conv_term
        return total, {"seg": seg_term.detach(), "query": query_term.detach(), "conv": conv_term.detach()}

    def compute_loss(self, output, target, data, batch):
        out_a, out_b = output                 # strong view's (A), weak view's (B), whichever network predicts
        labelled = self.labelled_mask(batch["keys"])
        # A sees the strong view: where its cutout erased the image, the labels are not A's to learn
        target_a = self.strong_target(target)
        sup_a, logs_a = self.supervised_terms(out_a, target_a, labelled)
        sup_b, logs_b = self.supervised_terms(out_b, target, labelled)
        y_a = out_a["seg"][0] if isinstance(out_a["seg"], (list, tuple)) else out_a["seg"]
        y_b = out_b["seg"][0] if isinstance(out_b["seg"], (list, tuple)) else out_b["seg"]
        segc = self.consistency(softmax_probabilities(y_a), softmax_probabilities(y_b))
        qdc = self.consistency(out_a["cluster"], out_b["cluster"])
        weight = self.consistency_weight * self.ramp_weight(0.0, self.consistency_ramp_end)
        loss = sup_a + sup_b + weight * (segc + qdc)
        logs = {f"{k}_a": v for k, v in logs_a.items()}
        logs.update({f"{k}_b": v for k, v in logs_b.items()})
        logs.update({"segc": segc.detach(), "qdc": qdc.detach(), "w_cons": weight,
                     "labelled": float(labelled.float().mean())})
        return loss, logs


class nnUNetTrainerDKUXNet_lite(nnUNetTrainerDKUXNet):
    """CPU-sized widths: UX-Net 16-32-64-128 (hidden 256), 32 queries of width 64, pixel 32, mask 32, 4 heads,
    FFN 256; everything else as the paper."""
    DK_KW = dict(LITE_WIDTHS)


class nnUNetTrainerDKUXNet_paperGroups(nnUNetTrainerDKUXNet):
    """The original's query groups: 16 / 4 / rest queries, labels above 2 merged into the third group."""
    DK_KW = dict(PAPER_WIDTHS, query_groups="paper")


class nnUNetTrainerDKUXNet_shared(nnUNetTrainerDKUXNet):
    """One network for both views (shared weights): half the parameters, the consistency acts across views only."""
    shared_networks = True


class nnUNetTrainerDKUXNet_AdamW(nnUNetTrainerDKUXNet):
    """The paper's optimiser: AdamW (lr 1e-4, weight decay 1e-4), same warm-up and poly (the paper trains 40 000
    iterations)."""
    optimizer_name = "adamw"


class nnUNetTrainerDKUXNet_lite_AdamW(nnUNetTrainerDKUXNet_lite):
    """CPU-sized widths with the paper's AdamW: what the DKUXNet lite benchmark rows were trained with."""
    optimizer_name = "adamw"


class nnUNetTrainerDKUXNet_DS(nnUNetTrainerDKUXNet):
    """Deep supervision: [Y, aux(d1), aux(d2), aux(d3)] with nnU-Net's weights, on both networks."""
    deep_supervision = True


class nnUNetTrainerDKUXNet_KL(nnUNetTrainerDKUXNet):
    """Symmetric KL instead of MSE for both consistency terms."""
    consistency_kind = "kl"


class nnUNetTrainerDKUXNet_predictWeakView(nnUNetTrainerDKUXNet):
    """Saves and predicts with the network trained on the weak view (B)."""
    predictor_view = "weak"


class nnUNetTrainerDKUXNet_lite_predictWeakView(nnUNetTrainerDKUXNet_lite):
    """CPU-sized widths; B predicts."""
    predictor_view = "weak"


class nnUNetTrainerDKUXNet_labelledOnly(nnUNetTrainerDKUXNet):
    """Matched control of ``nnUNetTrainerDKUXNet``: the network that predicts, trained alone on the labelled cases.

    One DKUXNet on ``predictor_view`` (the strong view, cutout-erased labels ignored, as A), its supervised terms
    (DiceCE + 0.1 L_q + 0.5 DiceCE(conv)), the same labelled samples per step (every sample of the planned batch from
    a labelled case, nnU-Net's forced-foreground share of it), SGD with warm-up and poly, the same length. What is
    missing is the method: network B, the consistency terms and the unlabelled cases."""
    labelled_fraction = 1.0       # every sample labelled, so the batch is not grown

    def build_second_network(self) -> None:
        self.network_b = None

    def network_forward(self, data: torch.Tensor):
        strong = self.predictor_view == "strong"
        return self.network(self.strong_input(data) if strong else data, return_aux=True)

    def compute_loss(self, output, target, data, batch):
        if self.predictor_view == "strong":
            target = self.strong_target(target)
        return self.supervised_terms(output, target, self.labelled_mask(batch["keys"]))


class nnUNetTrainerDKUXNet_lite_labelledOnly(nnUNetTrainerDKUXNet_labelledOnly):
    """CPU-sized widths: the matched control of ``nnUNetTrainerDKUXNet_lite`` (A)."""
    DK_KW = dict(LITE_WIDTHS)


class nnUNetTrainerDKUXNet_lite_labelledOnly_weakView(nnUNetTrainerDKUXNet_lite_labelledOnly):
    """On nnU-Net's augmented (weak) view: the matched control of B (``_lite_predictWeakView``)."""
    predictor_view = "weak"
