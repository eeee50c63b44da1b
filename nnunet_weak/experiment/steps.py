"""The stock nnU-Net command line, step by step, for the demo and the benchmark harness.

Every step runs the real console command in a subprocess (exactly what a user types), with the nnU-Net paths
of one experiment folder and CPU-friendly defaults, and logs its output to a file. A failing step raises
:class:`NNWError` with the command, the log file and its last lines.
"""
import os
import shutil
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from nnunet_weak.utilities.errors import NNWError

def nnunet_environment(root: str, base: Optional[Dict[str, str]] = None, **extra: str) -> Dict[str, str]:
    """Environment with nnUNet_raw / _preprocessed / _results under ``root`` and CPU-friendly worker counts.

    Worker counts the user already set are kept. ``extra`` adds variables (e.g. NNW_NUM_EPOCHS="5").
    """
    env = dict(os.environ if base is None else base)
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        env[name] = os.path.join(root, name)
        os.makedirs(env[name], exist_ok=True)
    # CPU training: augmentation in the training process. A worker process competes with the training threads
    # for the cores and costs more than it saves (benchmarks/results/iteration_cost_*); planning uses >= 1.
    env.setdefault("nnUNet_n_proc_DA", "0")
    env.setdefault("nnUNet_def_n_proc", "1")
    env.setdefault("nnUNet_compile", "f")
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _console(name: str) -> str:
    """Path of a console script of this environment (works without activating the venv)."""
    local = os.path.join(os.path.dirname(sys.executable), name)
    return local if os.path.exists(local) else (shutil.which(name) or name)


def run_command(args: Sequence[str], env: Dict[str, str], log_file: str,
                on_line: Optional[Callable[[str], None]] = None, commands: Optional[List[str]] = None) -> float:
    """Run ``args`` (first element: a console script name), append its output to ``log_file``; wall seconds.
    ``on_line`` sees every output line as it comes (progress reports); ``commands``, when given, gets the command
    line appended (a report's "how to reproduce")."""
    args = [_console(args[0]), *map(str, args[1:])]
    os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
    if commands is not None:
        commands.append(" ".join([os.path.basename(args[0]), *args[1:]]))
    start = time.perf_counter()
    with open(log_file, "a") as log:
        log.write(f"\n$ {' '.join(args)}\n")
        log.flush()
        if on_line is None:
            code = subprocess.call(args, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        else:
            with subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, text=True, bufsize=1) as process:
                for line in process.stdout:
                    log.write(line)
                    log.flush()
                    on_line(line)
                code = process.wait()
    seconds = time.perf_counter() - start
    if code != 0:
        with open(log_file) as log:
            tail = "".join(log.readlines()[-15:])
        raise NNWError(f"`{' '.join(args)}` failed (exit {code}); full log: {log_file}\n{tail}")
    return seconds


def model_folder(env: Dict[str, str], dataset_name: str, trainer: str, configuration: str,
                 plans: str = "nnUNetPlans") -> str:
    return os.path.join(env["nnUNet_results"], dataset_name, f"{trainer}__{plans}__{configuration}")


def plan_and_preprocess(dataset_id: int, configurations: List[str], env: Dict[str, str], log_file: str,
                        commands: Optional[List[str]] = None) -> float:
    # nnU-Net's planner calls torch.set_num_threads(nnUNet_n_proc_DA), which fails for 0
    env = {**env, "nnUNet_n_proc_DA": str(max(1, int(env.get("nnUNet_n_proc_DA", "1"))))}
    seconds = run_command(["nnUNetv2_plan_and_preprocess", "-d", dataset_id, "-c", *configurations,
                           "-np", "1", "-npfp", "1"], env, log_file, commands=commands)
    return seconds + run_command(["nnunet_weak_add_lite", "-d", dataset_id], env, log_file, commands=commands)


def train(dataset_id: int, configuration: str, fold, trainer: str, env: Dict[str, str], log_file: str,
          extra_args: Sequence[str] = (), on_line: Optional[Callable[[str], None]] = None,
          device: str = "cpu", commands: Optional[List[str]] = None) -> float:
    return run_command(["nnUNetv2_train", dataset_id, configuration, fold, "-tr", trainer, "-device", device,
                        *extra_args], env, log_file, on_line, commands)


class EpochProgress:
    """An ``on_line`` callback for ``nnUNetv2_train``: after each epoch, one line with the epoch, its training
    loss, its time and an estimate of the time left (from nnU-Net's own "train_loss" / "Epoch time" lines).
    ``done``: epochs finished before this process started (a run resumed with ``--c``)."""

    def __init__(self, epochs: int, prefix: str = "", out=None, done: int = 0):
        self.epochs, self.prefix, self.out = epochs, prefix, out
        self.done, self.loss, self.seconds = done, None, []

    def __call__(self, line: str) -> None:
        text = line.strip()
        if "train_loss" in text:
            self.loss = text.split("train_loss")[-1].strip()
        elif "Epoch time:" in text:
            self.seconds.append(float(text.split("Epoch time:")[-1].split()[0]))
            self.done += 1
            left = max(0, self.epochs - self.done) * float(np.median(self.seconds))
            print(f"{self.prefix}epoch {self.done}/{self.epochs}: train loss {self.loss}, {self.seconds[-1]:.1f} s, "
                  f"about {left:.0f} s left", file=self.out or sys.stdout, flush=True)


def predict(input_folder: str, output_folder: str, dataset_id: int, configuration: str, fold, trainer: str,
            env: Dict[str, str], log_file: str, extra_args: Sequence[str] = (), device: str = "cpu",
            commands: Optional[List[str]] = None) -> float:
    return run_command(["nnUNetv2_predict", "-i", input_folder, "-o", output_folder, "-d", dataset_id,
                        "-c", configuration, "-f", fold, "-tr", trainer, "-device", device, "-npp", "1",
                        "-nps", "1", *extra_args], env, log_file, commands=commands)
