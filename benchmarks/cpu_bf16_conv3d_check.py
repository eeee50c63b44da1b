"""Does this torch build train 3D convolutions in bf16 on the CPU without crashing? The check behind keeping 3D
networks in float32 on the CPU fast path (``nnunet_weak.utilities.cpu_bf16.THREE_D_REASON``).

    python benchmarks/cpu_bf16_conv3d_check.py [--out benchmarks/results/cpu_bf16_conv3d_check]

Each case runs one Conv3d forward + backward under ``torch.autocast("cpu", torch.bfloat16)`` in a child process
(a crash there must not end this script) on shapes of nnU-Net's 3D plans (first stages of ACDC's 3d_lite, batch
2, one thread) and on the same shapes in float32, and reports the exit status. When every bf16 case passes on a
new torch, the 3D restriction can be lifted (and measured with benchmarks/step_cost.py on a 3D configuration).
"""
import argparse
import json
import os
import subprocess
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
CHILD = r'''
import sys, torch
torch.set_num_threads(1)
cin, cout, kd, k, d, h, w, bf16 = map(int, sys.argv[1:9])
conv = torch.nn.Conv3d(cin, cout, (kd, k, k), padding=(kd // 2, k // 2, k // 2))
x = torch.randn(2, cin, d, h, w, requires_grad=True)
with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(bf16)):
    y = conv(x)
y.float().sum().backward()
'''
# (in channels, out channels, kernel depth, kernel, depth, height, width): nnU-Net 3d_lite stages on ACDC
CASES = [(1, 16, 1, 3, 8, 128, 112), (16, 16, 1, 3, 8, 128, 112), (16, 16, 3, 3, 8, 128, 112),
         (1, 16, 3, 3, 8, 128, 112), (32, 32, 1, 3, 8, 128, 112), (16, 16, 1, 3, 8, 64, 56), (32, 32, 3, 3, 8, 64, 56)]


def run_case(case, bf16: bool, timeout: float = 180.0):
    """The child's exit status, or 'hung' (heap corruption can also leave the process spinning)."""
    try:
        return subprocess.run([sys.executable, "-c", CHILD, *map(str, case), str(int(bf16))], capture_output=True,
                              timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        return "hung"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "cpu_bf16_conv3d_check"))
    args = parser.parse_args(argv)
    rows = [{"case": list(c), "fp32_exit": run_case(c, False), "bf16_exit": run_case(c, True)} for c in CASES]
    lines = [f"# Conv3d forward + backward on the CPU, fp32 vs bf16 autocast (torch {torch.__version__}, one thread, "
             f"batch 2)", "", "| in -> out channels | kernel | input D x H x W | fp32 exit | bf16 exit |",
             "|---|---|---|---|---|"]
    for r in rows:
        cin, cout, kd, k, d, h, w = r["case"]
        lines.append(f"| {cin} -> {cout} | {kd} x {k} x {k} | {d} x {h} x {w} | {r['fp32_exit']} | {r['bf16_exit']} |")
    lines += ["", "Exit 0: ran; negative: killed by a signal (-6 abort, e.g. 'double free or corruption'; -11 "
              "segmentation fault); hung: still running after 180 s (killed).", "",
              "Reproduce: `python benchmarks/cpu_bf16_conv3d_check.py`", ""]
    text = "\n".join(lines)
    with open(args.out + ".md", "w") as f:
        f.write(text)
    with open(args.out + ".json", "w") as f:
        json.dump({"torch": torch.__version__, "rows": rows}, f, indent=2)
    print(text)
    return 0 if all(r["bf16_exit"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
