"""Conversions of public weak-label benchmarks into nnU-Net v2 raw datasets, one module per dataset id (as in
``nnunetv2.dataset_conversion``). Each has ``convert(source, nnunet_raw, ...)`` and ``main(argv)``; the scripts in
the repository's ``dataset_conversion/`` folder are thin entry points to them."""
import importlib


def conversion_module(dataset_name: str):
    """The conversion module of ``DatasetNNN_Name`` (e.g. ``Dataset801_ACDCScribble``)."""
    return importlib.import_module(f"{__name__}.{dataset_name}")
