"""Share of a PA-Seg training step spent in the mCRF and VM regularisers, on nnU-Net's own network and loss.

    python benchmarks/paseg_step_cost.py --plans PATH/nnUNetPlans.json [--configurations 2d_lite 3d_lite]
        [--repeats 10] [--out benchmarks/results/paseg_step_cost]

For each configuration of the plans: the network nnU-Net builds (deep supervision on), a random batch of the
planned batch and patch size, and the median wall time of forward + backward (the six measurements below
interleaved call by call, after one warm-up call each, so that load drift hits them alike) for
  (a) nnU-Net's partial loss only (the nnU-Net+pL step without data loading and optimiser),
  (b) (a) + mCRF on the full-resolution head,
  (c) (a) + mCRF + VM,
  (d) a stage-2 SCM step: primary and peer (residual encoder) forward + backward with Dice + CE on pseudo labels
      and the KD term, plus the two frozen snapshots' forward passes,
and of the two regularisers alone (forward + backward from given logits). Writes a markdown table and JSON.
Run it on an otherwise idle machine: it measures wall time.
"""
import argparse
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from step_cost import interleaved_medians  # noqa: E402  (a sibling script, not a package)

from nnunet_weak.losses.gated_crf import MultiViewGatedCRFLoss
from nnunet_weak.losses.variance import VarianceMinimisationLoss
from nnunet_weak.utilities.class_map import class_map


def measure(plans_file: str, configuration: str, repeats: int) -> dict:
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunet_weak.training.loss_factory import deep_supervision_weights

    with open(plans_file) as f:
        plans = PlansManager(json.load(f))
    cm = plans.get_configuration(configuration)
    n_classes = 4
    net = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                 cm.network_arch_init_kwargs_req_import, 1, n_classes, deep_supervision=True)
    torch.manual_seed(0)
    x = torch.randn(cm.batch_size, 1, *cm.patch_size)
    outputs = net(x)
    targets = [torch.randint(0, n_classes + 1, (cm.batch_size, 1, *o.shape[2:])).float() for o in outputs]
    seg_loss = DeepSupervisionWrapper(
        DC_and_CE_loss({"batch_dice": cm.batch_dice, "smooth": 1e-5, "do_bg": False, "ddp": False}, {},
                       weight_ce=1, weight_dice=1, ignore_label=n_classes, dice_class=MemoryEfficientSoftDiceLoss),
        deep_supervision_weights(len(outputs)))
    crf = MultiViewGatedCRFLoss(spacing=cm.spacing if len(cm.patch_size) == 3 else None)
    vm = VarianceMinimisationLoss()

    def step(with_crf: bool, with_vm: bool):
        def run():
            net.zero_grad(set_to_none=True)
            out = net(x)
            loss = seg_loss(out, targets)
            if with_crf:
                loss = loss + crf(out[0], x)
            if with_vm:
                loss = loss + 0.1 * vm(out[0], x)
            loss.backward()
        return run

    from nnunet_weak.losses.distillation import KnowledgeDistillationLoss
    from nnunet_weak.networks.peer import peer_architecture
    from nnunet_weak.training.loss_factory import hard_targets_like
    from nnunet_weak.training.two_networks import frozen_copy

    name, kwargs = peer_architecture(cm.network_arch_class_name, cm.network_arch_init_kwargs)
    peer = get_network_from_plans(name, kwargs, cm.network_arch_init_kwargs_req_import, 1, n_classes,
                                  deep_supervision=True)
    snap_a, snap_b = frozen_copy(net), frozen_copy(peer)
    dense_loss = DeepSupervisionWrapper(
        DC_and_CE_loss({"batch_dice": cm.batch_dice, "smooth": 1e-5, "do_bg": False, "ddp": False}, {},
                       weight_ce=1, weight_dice=1, dice_class=MemoryEfficientSoftDiceLoss),
        deep_supervision_weights(len(outputs)))
    kd = KnowledgeDistillationLoss(4.0)

    def scm_step():
        net.zero_grad(set_to_none=True)
        peer.zero_grad(set_to_none=True)
        out_a, out_b = net(x), peer(x)
        with torch.no_grad():
            t_a, t_b = snap_a(x), snap_b(x)
        loss = 0.5 * dense_loss(out_a, hard_targets_like(class_map(t_a, keepdim=True), out_a)) + 0.5 * kd(out_a[0], t_b)
        loss = loss + 0.5 * dense_loss(out_b, hard_targets_like(class_map(t_b, keepdim=True), out_b)) + \
            0.5 * kd(out_b[0], t_a)
        loss.backward()

    logits = torch.randn(cm.batch_size, n_classes, *cm.patch_size, requires_grad=True)

    def alone(module):
        def run():
            logits.grad = None
            module(logits, x).backward()
        return run

    r = {"configuration": configuration, "batch_size": cm.batch_size, "patch_size": list(cm.patch_size),
         "crf_grid": list(crf.grid_shape(cm.patch_size)), "threads": torch.get_num_threads()}
    r.update(interleaved_medians({"step_seg": step(False, False), "step_seg_crf": step(True, False),
                                  "step_seg_crf_vm": step(True, True), "step_scm": scm_step,
                                  "crf_alone": alone(crf), "vm_alone": alone(vm)}, repeats))
    r["crf_share"] = (r["step_seg_crf"] - r["step_seg"]) / r["step_seg_crf_vm"]
    r["regularisers_share"] = (r["step_seg_crf_vm"] - r["step_seg"]) / r["step_seg_crf_vm"]
    r["paseg_ratio"] = r["step_seg_crf_vm"] / r["step_seg"]
    r["scm_ratio"] = r["step_scm"] / r["step_seg"]
    return r


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plans", required=True, help="an nnUNetPlans.json with the configurations")
    parser.add_argument("--configurations", nargs="+", default=["2d_lite", "3d_lite"])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "paseg_step_cost"))
    args = parser.parse_args(argv)
    rows = [measure(args.plans, c, args.repeats) for c in args.configurations]
    lines = ["# PA-Seg regulariser cost per training step (forward + backward, median of "
             f"{args.repeats}, {rows[0]['threads']} CPU threads)", "",
             "| configuration | batch x patch | mCRF grid | nnU-Net loss step (s) | + mCRF (s) | + mCRF + VM (s) | "
             "mCRF alone (s) | VM alone (s) | mCRF share of step | mCRF+VM share of step | PA-Seg step / nnU-Net step | "
             "SCM step (s) | SCM step / nnU-Net step |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['configuration']} | {r['batch_size']} x {r['patch_size']} | {r['crf_grid']} | "
                     f"{r['step_seg']:.3f} | {r['step_seg_crf']:.3f} | {r['step_seg_crf_vm']:.3f} | "
                     f"{r['crf_alone']:.3f} | {r['vm_alone']:.3f} | {100 * r['crf_share']:.0f} % | "
                     f"{100 * r['regularisers_share']:.0f} % | {r['paseg_ratio']:.2f} | {r['step_scm']:.3f} | "
                     f"{r['scm_ratio']:.2f} |")
    lines += ["", "Reproduce: `python benchmarks/paseg_step_cost.py " + " ".join(argv or sys.argv[1:]) + "`", ""]
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".md", "w") as f:
        f.write("\n".join(lines))
    with open(args.out + ".json", "w") as f:
        json.dump(rows, f, indent=2)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
