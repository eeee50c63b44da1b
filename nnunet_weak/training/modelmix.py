"""ModelMix (Zhang & Patel, MICCAI 2024): two task networks trained
together from scribbles, regularised through *virtual* networks whose encoder layers mix both tasks' weights.

A is the dataset given to ``nnUNetv2_train`` (the target), B the auxiliary dataset paired with it by
``nnunet_weak_modelmix_pair -t A -a B`` (identical plans, so the encoders line up tensor for tensor; the pairing
is read from ``$nnUNet_preprocessed/A/modelmix.json`` or ``NNW_MODELMIX_AUX`` / ``NNW_MODELMIX_AUX_PLANS``).
Per step, for each direction (t, s) in ((A, B), (B, A)) with t's batch x, scribbles y (ignore = unlabelled):

    L_sup   = DiceCE_DS(f_t(x), y)                              nnU-Net's ignore-aware loss, deep supervision
    mixup:    x~ = l x + (1-l) flip(x), l ~ Beta(.5,.5) per sample; y~ the same mix of one-hot scribbles
    L_mix   = softpCE(f_t(x~), y~);  L_mixcons = 1 - cos(f_t(x~), l p + (1-l) flip(p)),  p = softmax f_t(x)
    virtual:  f~_t = f_t with K encoder layers <- lam theta_t + (1-lam) theta_s, lam ~ Beta(.5,.5)
    L_vsup  = DiceCE(f~_t(R x), R y)                            R a random rotation, rotated-in pixels = ignore
    L_vreg  = -cos(p, R^-1 f~_t(R x))                           on pixels that survive the round trip
    L = sum over both directions of L_sup + L_mix + L_mixcons + L_vsup + L_vreg

Cosines are per (sample, class) over pixels; all extra terms use the full-resolution output in float32. K is
one convolution of the encoder pool shared by both directions, drawn per step. Gradients flow through the virtual
networks into both encoders (``functional_call``); ``nnUNetTrainerModelMix_official`` trains only the owner's
segmentation layers from them and mixes normalisation affines too, as the released code does.

B's network, loss, data loader, optimiser and schedule come from a second trainer object
(``nnUNetTrainerModelMixAux``) built on B's moved plans; its weights and optimiser ride in A's checkpoint as
extra state. ``self.network`` stays A's plain network, so ``nnUNetv2_predict -tr nnUNetTrainerModelMix`` predicts
A unchanged; ``nnunet_weak_modelmix_export`` writes B's network as a standard fold of B.
"""
import copy
import random
from os.path import join

import torch
from batchgenerators.utilities.file_and_folder_operations import isfile, load_json
from nnunetv2.paths import nnUNet_preprocessed
from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

from nnunet_weak.data.rotation import rotate, rotate_labels, valid_after_round_trip
from nnunet_weak.losses.vicinal import batch_mixup, class_cosine, draw_beta, mixup_terms, one_hot_partial
from nnunet_weak.networks.param_mix import mixed_parameters, mixing_pool, virtual_forward
from nnunet_weak.planning.pairing_io import read_pairing
from nnunet_weak.training.loss_factory import full_resolution, single_scale
from nnunet_weak.training.two_networks import set_deep_supervision
from nnunet_weak.training.weak_base import nnUNetTrainerWeakBase
from nnunet_weak.utilities.errors import NNWError


class nnUNetTrainerModelMixAux(nnUNetTrainerWeakBase):
    """The auxiliary task's side of ModelMix (plain network, ignore-aware loss, 80 % labelled batches). Also the
    trainer name of an exported auxiliary fold, so ``nnUNetv2_predict -tr nnUNetTrainerModelMixAux`` finds it."""
    labelled_fraction = 0.8

    def _do_i_compile(self):
        return False

    def finish_loaders(self):
        """Stop the data-augmentation workers (what nnU-Net's on_train_end does for its own loaders)."""
        for loader in (self.dataloader_train, self.dataloader_val):
            if hasattr(loader, "_finish"):
                loader._finish()


class AuxIdentity:
    """What the auxiliary network was trained on, stored in the checkpoint: resuming with another pairing is an
    error, and the export needs B's plans and dataset.json."""

    def __init__(self, aux: nnUNetTrainerModelMixAux):
        self.record = {"dataset": aux.plans_manager.dataset_name, "plans_name": aux.plans_manager.plans_name,
                       "configuration": aux.configuration_name, "fold": aux.fold, "plans": aux.plans_manager.plans,
                       "dataset_json": aux.dataset_json}

    def state_dict(self) -> dict:
        return copy.deepcopy(self.record)

    def load_state_dict(self, state: dict) -> None:
        for key in ("dataset", "plans_name", "configuration"):
            if state.get(key) != self.record[key]:
                raise NNWError(f"this checkpoint's auxiliary {key} is {state.get(key)!r} but the pairing now gives "
                               f"{self.record[key]!r}; restore the pairing it was trained with "
                               f"(modelmix.json / NNW_MODELMIX_AUX) or start without --c.")


class nnUNetTrainerModelMix(nnUNetTrainerWeakBase):
    labelled_fraction = 0.8       # share of labelled cases per batch when unlabelled ones exist
    mix_beta = 0.5                # lambda ~ Beta(mix_beta, mix_beta) for the model mix and the image mixup
    mix_layers = 1                # encoder layers mixed per step
    mix_pool = "conv"             # "conv" (paper) or "conv+norm" (official code)
    mix_gradients = "full"        # "full": the virtual losses train both networks; "official": owner's head only
    rotate_virtual = True         # rotate the virtual model's input (L_vsup / L_vreg)
    weights = {"sup": 1.0, "mix": 1.0, "mixcons": 1.0, "vsup": 1.0, "vreg": 1.0}

    # ------------------------------------------------------------------ setup
    def initialize(self):
        if self.was_initialized:
            return
        super().initialize()
        self.refuse_multi_gpu("the auxiliary network and the virtual forward passes bypass DDP")
        self.aux = self._build_aux_trainer()
        self.aux.initialize()
        self._check_same_architecture()
        self.pool = mixing_pool(self.network, self.aux.network, self.mix_pool)
        if not self.pool:
            raise NNWError(f"no encoder layer of {self.plans_manager.dataset_name} and "
                           f"{self.aux.plans_manager.dataset_name} has the same shape; pair them with "
                           f"nnunet_weak_modelmix_pair so that they share plans.")
        self.print_to_log_file(f"nnunet_weak: ModelMix with {self.aux.plans_manager.dataset_name} "
                               f"({self.aux.plans_manager.plans_name}); {len(self.pool)} mixable layers")
        self.register_extra_state("modelmix_aux", AuxIdentity(self.aux))
        self.register_extra_state("modelmix_aux_network", self.aux.network)
        self.register_extra_state("modelmix_aux_optimizer", self.aux.optimizer)

    def _build_aux_trainer(self) -> nnUNetTrainerModelMixAux:
        pairing = read_pairing(self.preprocessed_dataset_folder_base)
        name = maybe_convert_to_dataset_name(pairing["aux_dataset"])
        plans_file = join(nnUNet_preprocessed, name, pairing["aux_plans"] + ".json")
        dataset_json_file = join(nnUNet_preprocessed, name, "dataset.json")
        for f in (plans_file, dataset_json_file):
            if not isfile(f):
                raise NNWError(f"{f} not found: the auxiliary dataset is not prepared. Run "
                               f"nnunet_weak_modelmix_pair -t {self.plans_manager.dataset_name} -a {name} "
                               f"-c {self.configuration_name}.")
        plans = load_json(plans_file)
        plans["continue_training"] = False     # nnU-Net's __init__ pops it (it only matters for its loggers)
        if self.configuration_name not in plans["configurations"]:
            raise NNWError(f"{plans_file} has no configuration {self.configuration_name!r}; run "
                           f"nnunet_weak_modelmix_pair again after adding it to the target's plans.")
        aux = nnUNetTrainerModelMixAux(plans, self.configuration_name, self.fold, load_json(dataset_json_file),
                                       self.device)
        for attribute in ("num_epochs", "num_iterations_per_epoch", "initial_lr", "weight_decay",
                          "enable_deep_supervision"):
            setattr(aux, attribute, getattr(self, attribute))
        aux.print_to_log_file = self.print_to_log_file        # one log: the target's
        return aux

    def _check_same_architecture(self):
        mine, theirs = self.configuration_manager, self.aux.configuration_manager
        for what, a, b in (("network", mine.network_arch_class_name, theirs.network_arch_class_name),
                           ("architecture", mine.network_arch_init_kwargs, theirs.network_arch_init_kwargs),
                           ("patch size", list(mine.patch_size), list(theirs.patch_size))):
            if a != b:
                raise NNWError(f"the {what} of {self.aux.plans_manager.dataset_name}'s "
                               f"{self.aux.plans_manager.plans_name} differs from the target's ({b} vs {a}); "
                               f"re-run nnunet_weak_modelmix_pair with --overwrite after re-planning the target.")

    def on_train_start(self):
        if not self.was_initialized:
            self.initialize()
        self.aux.verify_raw_labels()  # the auxiliary dataset's label maps, before any loader starts
        super().on_train_start()
        self.aux.dataloader_train, self.aux.dataloader_val = self.aux.get_dataloaders()
        set_deep_supervision(self.aux.network, self.enable_deep_supervision)
        self.aux.dataset_class.unpack_dataset(self.aux.preprocessed_dataset_folder, overwrite_existing=False,
                                              num_processes=1, verify=True)

    def on_train_epoch_start(self):
        self.aux.network.train()
        self.aux.lr_scheduler.step(self.current_epoch)
        super().on_train_epoch_start()

    def on_train_end(self):
        super().on_train_end()
        self.aux.finish_loaders()

    def optimizers(self):
        return [self.optimizer, self.aux.optimizer]

    # ------------------------------------------------------------------ loss
    def next_aux_batch(self):
        return self.batch_to_device(next(self.aux.dataloader_train))

    def compute_loss(self, output, target, data, batch):
        data_b, target_b = self.next_aux_batch()
        output_b = self.aux.network(data_b)
        layers = random.sample(self.pool, min(self.mix_layers, len(self.pool)))
        lam_a, lam_b = draw_beta(2, self.mix_beta, "cpu").tolist()
        loss_a, logs_a = self.task_loss(self.network, self.aux.network, self.loss, self.label_manager,
                                        output, data, target, layers, lam_a)
        loss_b, logs_b = self.task_loss(self.aux.network, self.network, self.aux.loss, self.aux.label_manager,
                                        output_b, data_b, target_b, layers, lam_b)
        logs = {f"A_{k}": v for k, v in logs_a.items()}
        logs.update({f"B_{k}": v for k, v in logs_b.items()})
        return loss_a + loss_b, logs

    def task_loss(self, owner, other, loss, label_manager, output, x, target, layers, lam):
        """Loss of one direction: the owner's supervised, mixup and virtual-model terms (module docstring).
        output: the owner's forward on x (deep-supervision list or one tensor); target: matching label maps."""
        logits = full_resolution(output)
        labels = full_resolution(target)
        ignore = label_manager.ignore_label
        b, w = x.shape[0], self.weights
        probs = torch.softmax(logits.float(), 1)
        terms = {"sup": loss(output, target)}

        if w["mix"] or w["mixcons"]:
            lam_i = draw_beta(b, self.mix_beta, x.device)
            mixed = owner(batch_mixup(x, lam_i))
            onehot = one_hot_partial(labels, label_manager.num_segmentation_heads, ignore)
            terms["mix"], terms["mixcons"] = mixup_terms(full_resolution(mixed), probs, onehot, lam_i)

        if w["vsup"] or w["vreg"]:
            theta = torch.rand(b) * 2 * torch.pi if self.rotate_virtual else torch.zeros(b)
            x_r, y_r = rotate(x, theta), rotate_labels(labels, theta, ignore)
            params = mixed_parameters(owner, other, layers, lam, self.mix_gradients)
            virtual = virtual_forward(owner, params, x_r)
            virtual = full_resolution(virtual)
            terms["vsup"] = single_scale(loss)(virtual, y_r)
            back = rotate(torch.softmax(virtual.float(), 1), -theta)
            valid = valid_after_round_trip(probs, theta)
            terms["vreg"] = -class_cosine(probs * valid, back * valid)

        total = sum(w[k] * v for k, v in terms.items())
        logs = {k: v.detach() for k, v in terms.items()}
        logs["lam"] = lam
        return total, logs


class nnUNetTrainerModelMix_official(nnUNetTrainerModelMix):
    """The released code's model mix: normalisation affines in the pool, and the virtual networks are detached
    copies, so their losses train only the owner's segmentation layers."""
    mix_pool = "conv+norm"
    mix_gradients = "official"
