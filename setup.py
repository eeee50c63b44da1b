"""Install nnunet_weak.

Besides the package, the wheel carries ``nnunet_weak.pth`` at the root of site-packages. Python runs the one
import line in it at start-up, which registers our trainer shim folder with nnU-Net (``nnUNet_extTrainer``),
so ``nnUNetv2_train ... -tr nnUNetTrainerPCE`` works from a new shell with no manual step. Editable installs
do not get the ``.pth`` (setuptools limitation): run ``eval "$(nnunet_weak_env)"`` there, or
``nnunet_weak_env --install-pth`` once.
"""
import os

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

PTH_NAME = "nnunet_weak.pth"


class BuildPyWithPth(build_py):
    """Copy the start-up ``.pth`` into the build root so it lands in site-packages (and in RECORD)."""

    def run(self):
        super().run()
        here = os.path.dirname(os.path.abspath(__file__))
        self.copy_file(os.path.join(here, "nnunet_weak", PTH_NAME), os.path.join(self.build_lib, PTH_NAME))


setup(
    name="nnunet_weak",
    version="0.1.0",
    description="Weakly supervised segmentation (scribbles, points, few labels) as nnU-Net v2 trainers",
    long_description=open(os.path.join(os.path.dirname(__file__), "README.md")).read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["nnunet_weak", "nnunet_weak.*"]),
    package_data={"nnunet_weak": [PTH_NAME]},
    python_requires=">=3.10",
    install_requires=[
        "nnunetv2>=2.8.1,<2.9",
        "SimpleITK",
        "scipy",
        "scikit-image",
        "numba",
        "matplotlib",
    ],
    extras_require={"test": ["pytest", "pytest-xdist"]},
    entry_points={
        "console_scripts": [
            "nnunet_weak_env=nnunet_weak.env:main",
            "nnunet_weak_add_lite=nnunet_weak.planning.lite:main",
            "nnunet_weak_evaluate=nnunet_weak.evaluation.evaluate_dense:main",
            "nnunet_weak_benchmark=nnunet_weak.experiment.benchmark:main",
            "nnunet_weak_demo=nnunet_weak.demo.run_demo:main",
            "nnunet_weak_modelmix_pair=nnunet_weak.planning.pair_datasets:main",
            "nnunet_weak_modelmix_export=nnunet_weak.training.modelmix_export:main",
            "nnunet_weak_simulate_scribbles=nnunet_weak.annotation.commands:simulate_scribbles_main",
            "nnunet_weak_simulate_points=nnunet_weak.annotation.commands:simulate_points_main",
            "nnunet_weak_sparse_slices=nnunet_weak.annotation.commands:sparse_slices_main",
            "nnunet_weak_make_semi=nnunet_weak.annotation.commands:make_semi_main",
            "nnunet_weak_make_few=nnunet_weak.annotation.commands:make_few_main",
            "nnunet_weak_add_ignore=nnunet_weak.annotation.commands:add_ignore_main",
        ]
    },
    cmdclass={"build_py": BuildPyWithPth},
)
