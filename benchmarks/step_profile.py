"""Where a trainer's training step spends its time, fp32 against the CPU fast path (bf16 autocast), by kind of
operation: the question "why does this trainer gain less than nnU-Net's 1.9x?" needs the step taken apart.

    python benchmarks/step_profile.py --workdir benchmarks/work -d 801 -c 2d_lite \
        --trainer nnUNetTrainerPCLMix [--steps 3] [--top 25] [--copy-shapes 12] [--out benchmarks/results/step_profile_801_pclmix]

The trainer is built as ``benchmarks/step_cost.py`` builds it (``nnUNetv2_train``'s way, fold 0, schedule at
``--progress``), once per mode, and runs ``train_step`` on one real augmented batch: one warm-up step per mode,
then ``--steps`` profiled steps per mode, the modes alternating step by step. torch.profiler's self CPU time of
every operator is summed per step and grouped (convolution, matrix products, attention, normalisation, casts
and copies, optimiser, element-wise and the rest). The profiler adds overhead per operator call, so the totals
exceed ``step_cost.py``'s wall times; the split between groups and modes is what this is for. Run it on an idle
machine. Writes a markdown table and JSON.
"""
import argparse
import collections
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from step_cost import add_trainer_arguments, finish_loaders, prepared_trainer, use_workdir, write_report  # noqa: E402

# operator name -> group; the first matching rule wins (substring match on the aten name)
GROUPS = (
    ("convolution", ("conv", "mkldnn_convolution")),
    ("attention", ("scaled_dot_product", "_flash_attention")),
    ("matrix products", ("addmm", "aten::mm", "bmm", "matmul", "linear")),
    ("normalisation", ("norm",)),
    ("optimiser", ("_foreach", "sgd", "adam")),
    ("casts and copies", ("copy_", "_to_copy", "aten::to", "clone", "contiguous", "cat", "roll", "pad",
                          "constant_pad", "index", "gather", "scatter")),
    ("element-wise", ("add", "mul", "sub", "div", "gelu", "relu", "threshold", "exp", "log", "softmax", "pow",
                      "where", "fill_", "zero_", "sum", "mean", "max", "min", "neg", "sqrt", "clamp", "aten::lt",
                      "aten::gt", "aten::le", "aten::ge", "aten::eq", "aten::ne", "masked", "sigmoid", "tanh",
                      "abs", "dropout", "bernoulli")),
)


def group_of(name: str) -> str:
    lowered = name.lower()
    for group, keys in GROUPS:
        if any(k in lowered for k in keys):
            return group
    return "other"


def profile_steps(trainers: dict, batch, steps: int) -> dict:
    """{mode: {operator: (self CPU seconds per step, calls per step)}} over ``steps`` alternating steps."""
    from torch.profiler import ProfilerActivity, profile

    for trainer in trainers.values():  # warm-up: caches, oneDNN primitives
        trainer.train_step(batch)
    totals = {m: collections.defaultdict(lambda: [0.0, 0]) for m in trainers}
    for _ in range(steps):
        for mode, trainer in trainers.items():
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                trainer.train_step(batch)
            for event in prof.key_averages():
                entry = totals[mode][event.key]
                entry[0] += event.self_cpu_time_total / 1e6
                entry[1] += event.count
    return {m: {op: (t / steps, c / steps) for op, (t, c) in ops.items()} for m, ops in totals.items()}


def copies_by_shape(trainers: dict, batch) -> dict:
    """{mode: {input shapes: (self CPU seconds, calls)}} of ``aten::copy_`` in one step per mode, shapes recorded.

    Which tensors are copied says why: weight-shaped copies would be casts of parameters, activation-shaped ones
    come from the passes. Call counts do not depend on machine load; the times do (and recording shapes adds
    overhead), so this step is not part of the grouped totals."""
    from torch.profiler import ProfilerActivity, profile

    out = {}
    for mode, trainer in trainers.items():
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            trainer.train_step(batch)
        out[mode] = {str(e.input_shapes): (e.self_cpu_time_total / 1e6, e.count)
                     for e in prof.key_averages(group_by_input_shape=True) if e.key == "aten::copy_"}
    return out


def report(profile: dict, modes: list, top: int, args, argv, copies: dict = None) -> str:
    first, last = modes[0], modes[-1]
    groups = {m: collections.defaultdict(float) for m in modes}
    for m in modes:
        for op, (t, _) in profile[m].items():
            groups[m][group_of(op)] += t
    total = {m: sum(groups[m].values()) for m in modes}
    names = sorted(set(groups[first]) | set(groups[last]), key=lambda g: -groups[last].get(g, 0.0))
    cols = " | ".join(f"{m} (s)" for m in modes)
    lines = [f"# Training step by kind of operation: {args.trainer}, dataset {args.d}, {args.c} (self CPU time per "
             f"step, mean of {args.steps} profiled steps per mode, modes alternating, schedule at {args.progress:.0%})",
             "", f"| group | {cols} | {first} / {last} | share of {last} step | time {first} - {last} (s) |",
             "|---|" + "---|" * (len(modes) + 3)]
    for g in names + ["total"]:
        value = {m: (total[m] if g == "total" else groups[m].get(g, 0.0)) for m in modes}
        ratio = f"{value[first] / value[last]:.2f}" if value[last] > 0 else "-"
        lines.append(f"| {g} | " + " | ".join(f"{value[m]:.3f}" for m in modes) +
                     f" | {ratio} | {value[last] / total[last]:.0%} | {value[first] - value[last]:+.3f} |")
    ops = sorted(profile[last].items(), key=lambda kv: -kv[1][0])[:top]
    lines += ["", f"Top {top} operators of the {last} step (self CPU time per step):", "",
              f"| operator | group | calls | {cols} |", "|---|---|---|" + "---|" * len(modes)]
    for op, (t, calls) in ops:
        times = " | ".join(f"{profile[m].get(op, (0.0, 0))[0]:.3f}" for m in modes)
        lines.append(f"| `{op}` | {group_of(op)} | {calls:.0f} | {times} |")
    if copies:
        shapes = sorted(set().union(*(copies[m] for m in modes)), key=lambda k: -copies[last].get(k, (0.0, 0))[0])
        lines += ["", f"`aten::copy_` by input shapes (one more step per mode with shapes recorded; calls are exact, "
                      f"times load-dependent), the {args.copy_shapes} most costly in the {last} step and the "
                      f"total:", "",
                  "| input shapes | " + " | ".join(f"calls {m}" for m in modes) + f" | {cols} |",
                  "|---|" + "---|" * (2 * len(modes))]
        for key in shapes[:args.copy_shapes]:
            lines.append(f"| `{key}` | " + " | ".join(f"{copies[m].get(key, (0.0, 0))[1]}" for m in modes) +
                         " | " + " | ".join(f"{copies[m].get(key, (0.0, 0))[0]:.3f}" for m in modes) + " |")
        lines.append("| all | " + " | ".join(f"{sum(c for _, c in copies[m].values())}" for m in modes) + " | " +
                     " | ".join(f"{sum(t for t, _ in copies[m].values()):.3f}" for m in modes) + " |")
    lines += ["", "The profiler's per-call overhead makes these totals larger than `step_cost.py`'s wall times; "
              "compare groups and modes, not absolute seconds.", "",
              "Reproduce: `python benchmarks/step_profile.py " + " ".join(argv or sys.argv[1:]) + "`", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_trainer_arguments(parser)
    parser.add_argument("--trainer", required=True)
    parser.add_argument("--steps", type=int, default=3, help="profiled steps per mode")
    parser.add_argument("--top", type=int, default=25, help="operators listed individually")
    parser.add_argument("--copy-shapes", type=int, default=0, metavar="N",
                        help="also list the N most costly aten::copy_ input shapes (one extra step per mode)")
    parser.add_argument("--out", default=None, help="output prefix (default results/step_profile_<d>_<trainer>)")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    use_workdir(args.workdir, "nnw_step_profile_")
    out = args.out or os.path.join(HERE, "results", f"step_profile_{args.d}_{args.trainer}")

    built = {m: prepared_trainer(args.d, args.c, args.trainer, m, args.progress, args.p) for m in args.modes}
    batch = next(built[args.modes[0]][1][0])
    trainers = {m: t for m, (t, _) in built.items()}
    profile = profile_steps(trainers, batch, args.steps)
    copies = copies_by_shape(trainers, batch) if args.copy_shapes > 0 else None
    for _, loaders in built.values():
        finish_loaders(loaders)
    # one JSON shape whatever the flags: "copies_by_shape" is empty when --copy-shapes was not asked for
    data = {"operators": {m: {op: {"self_cpu_s": t, "calls": c} for op, (t, c) in ops.items()}
                          for m, ops in profile.items()},
            "copies_by_shape": {m: {k: {"self_cpu_s": t, "calls": c} for k, (t, c) in v.items()}
                                for m, v in (copies or {}).items()}}
    write_report(out, report(profile, args.modes, args.top, args, argv, copies), data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
