"""``nnunet_weak_env``: make the stock nnU-Net commands find our trainers when the .pth hook is absent.

A regular ``pip install`` needs nothing (nnunet_weak.pth does it). Editable installs do not install .pth files:
    eval "$(nnunet_weak_env)"          # this shell only
    nnunet_weak_env --install-pth      # writes nnunet_weak.pth into this environment's site-packages, once
"""
import argparse
import os
import shlex
import site
import sys

from nnunet_weak._autoext import EXT_FOLDER, register_trainer_folder

PTH_LINE = "import nnunet_weak._autoext\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--install-pth", action="store_true",
                        help="write nnunet_weak.pth into site-packages (for editable installs)")
    args = parser.parse_args(argv)
    if args.install_pth:
        target = os.path.join(site.getsitepackages()[0], "nnunet_weak.pth")
        with open(target, "w") as f:
            f.write(PTH_LINE)
        print(f"wrote {target}", file=sys.stderr)
        return 0
    env = dict(os.environ)
    value = register_trainer_folder(env)
    print(f"export nnUNet_extTrainer={shlex.quote(value)}")  # a path with quotes or spaces stays one word
    if not os.path.isdir(EXT_FOLDER):  # pragma: no cover - broken install
        print(f"warning: {EXT_FOLDER} does not exist", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
