"""The package's layering, read from the source: every import of another nnunet_weak package points downhill
(training imports networks and losses, never the reverse), sibling packages of one layer do not import each other,
and no module loads code by file path."""
import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "nnunet_weak")
LAYERS = [
    {"utilities"},
    {"_autoext"},    # the start-up hook: registers trainers, installs utilities.errors' excepthook
    {"networks", "losses", "data", "evaluation", "annotation", "planning"},
    {"training", "dataset_conversion"},
    {"experiment", "nnunet_ext"},
    {"demo", "env", "__init__"},
]
LEVEL = {package: i for i, layer in enumerate(LAYERS) for package in layer}


def _imports():
    """(importing package, imported package, file) for every import of nnunet_weak.X in the package."""
    for folder, _, names in os.walk(ROOT):
        for name in names:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            relative = os.path.relpath(path, ROOT)[:-3].split(os.sep)
            package = relative[0]
            for node in ast.walk(ast.parse(open(path).read())):
                modules = [node.module] if isinstance(node, ast.ImportFrom) and node.module else \
                    [a.name for a in node.names] if isinstance(node, ast.Import) else []
                for module in modules:
                    parts = module.split(".")
                    if parts[0] == "nnunet_weak" and len(parts) > 1 and parts[1] != package:
                        yield package, parts[1], path


def test_every_package_has_a_layer():
    packages = {n[:-3] if n.endswith(".py") else n for n in os.listdir(ROOT)
                if not n.startswith((".", "__pycache__")) and (n.endswith(".py") or
                                                               os.path.isdir(os.path.join(ROOT, n)))}
    assert packages <= set(LEVEL), f"add {sorted(packages - set(LEVEL))} to a layer in this test"


def test_imports_point_downhill():
    uphill = [(path, f"{a} -> {b}") for a, b, path in _imports() if LEVEL[b] >= LEVEL[a]]
    assert not uphill


@pytest.mark.parametrize("folder", ["nnunet_weak", "benchmarks", "dataset_conversion"])
def test_no_code_loaded_by_file_path(folder):
    base = os.path.join(os.path.dirname(ROOT), folder)
    offenders = []
    for root, _, names in os.walk(base):
        offenders += [os.path.join(root, n) for n in names if n.endswith(".py") and
                      "spec_from_file_location" in open(os.path.join(root, n)).read()]
    assert not offenders
