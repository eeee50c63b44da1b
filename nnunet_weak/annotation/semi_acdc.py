"""Semi-supervised ACDC (Dataset805 = 10 %, Dataset806 = 20 % labelled patients): dense labels for a seeded share of
the patients, all-ignore label maps for the rest, on the WSL4MIS/PCLMix 5 folds.

Which patients are labelled: the folds are the patient blocks 20k+1..20k+20 (fold k validates block k). In every
block the patients present are shuffled once with ``numpy.random.default_rng([seed, k])`` and the first
``max(1, round(fraction * block size))`` are labelled (2 of 20 for 10 %, 4 of 20 for 20 %, seed 0). So

- each fold's training set (the other four blocks) has exactly the stated fraction labelled (8 of 80, 16 of 80);
- each fold validates on its block's labelled patients only (both frames), so validation never meets an
  all-ignore case; the block's unlabelled patients are in neither list of that fold (adding them as unlabelled
  training data would lower the fraction to 8 of 98 and use images of the held-out block);
- the 10 % patients are a subset of the 20 % ones (same shuffle, shorter prefix).
Patients outside 1..100 (not in real ACDC) are unlabelled and in every training set.

Everything else is Dataset801/802's conversion (``nnunet_io.convert_acdc``): same case ids, images and geometry,
labels 0-3 with ignore = 4, ``labelsTr_dense`` with every frame's dense labels for evaluation (nnU-Net never reads
it; predicting a fold's whole block and scoring against it gives a 20-patient test). ``dataset.json`` lists the
labelled patients.
"""
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

from nnunet_weak.annotation.nnunet_io import (ACDC_NUM_FOLDS, ACDC_PATIENTS_PER_FOLD, CARDIAC_IGNORE,
                                             acdc_fold_patients, acdc_patient, conversion_parser, convert_acdc,
                                             find_acdc_frames)
from nnunet_weak.utilities.errors import NNWError

DEFAULT_SEED = 0


def acdc_labelled_patients(patients: Iterable[int], fraction: float, seed: int = DEFAULT_SEED) -> List[int]:
    """Labelled patients (sorted) among ``patients`` for a labelled ``fraction`` in (0, 1], per fold block."""
    if not 0.0 < fraction <= 1.0:
        raise NNWError(f"labelled fraction must lie in (0, 1], got {fraction}")
    present = set(int(p) for p in patients)
    labelled = []
    for fold in range(ACDC_NUM_FOLDS):
        block = sorted(p for p in acdc_fold_patients(fold) if p in present)
        if not block:
            continue
        order = np.random.default_rng([seed, fold]).permutation(block)
        labelled += [int(p) for p in order[:max(1, int(round(fraction * len(block))))]]
    return sorted(labelled)


def acdc_semi_splits(cases: Iterable[str], labelled_patients: Iterable[int]) -> List[dict]:
    """5 folds: fold k trains on every case outside block k and validates on block k's labelled cases."""
    cases = sorted(cases)
    labelled = set(labelled_patients)
    splits = []
    for fold in range(ACDC_NUM_FOLDS):
        block = acdc_fold_patients(fold)
        train = [c for c in cases if acdc_patient(c) not in block]
        val = [c for c in cases if acdc_patient(c) in block and acdc_patient(c) in labelled]
        splits.append({"train": train, "val": val})
    return splits


def convert_acdc_semi(source: str, nnunet_raw: str, dataset_name: str, fraction: float, seed: int = DEFAULT_SEED,
                      overwrite: bool = False, verbose: bool = True, preprocessed: Optional[str] = None) -> str:
    """Write ``nnunet_raw/dataset_name`` with dense labels for the labelled patients and all-ignore maps for the
    others, plus the semi-supervised splits (also into ``preprocessed``, the nnUNet_preprocessed folder, if given);
    returns the dataset folder."""
    frames = find_acdc_frames(source, scribbles=False)
    patients = sorted({f.patient for f in frames})
    labelled = acdc_labelled_patients(patients, fraction, seed)
    labelled_set = set(labelled)
    splits = acdc_semi_splits([f.case for f in frames], labelled)

    def labels(frame, image, gt: np.ndarray) -> np.ndarray:
        return gt if frame.patient in labelled_set else np.full_like(gt, CARDIAC_IGNORE)

    kind = (f"dense labels for {len(labelled)} of {len(patients)} patients ({fraction:.0%} of each fold block, "
            f"seed {seed}), all-ignore (unlabelled) for the others")
    description = (
        f"ACDC cine MRI, ED and ES frames of {len(patients)} patients; labelsTr: {kind}; labelsTr_dense: dense "
        f"labels of every frame for evaluation. Splits: WSL4MIS/PCLMix blocks, fold k trains on the patients outside "
        f"20k+1..20k+20 and validates on that block's labelled patients only.")
    folder = convert_acdc(source, nnunet_raw, dataset_name, scribbles=False, overwrite=overwrite, verbose=verbose,
                          weak_labels=labels, kind=kind, splits=splits, description=description,
                          preprocessed=preprocessed,
                          dataset_json_extra={"labelled_fraction": fraction, "labelled_seed": seed,
                                              "labelled_patients": labelled})
    if verbose:
        print(f"labelled patients ({len(labelled)}): {labelled}")
    return folder


def labelled_fraction_per_fold(splits: Sequence[dict], labelled_patients: Iterable[int]) -> Dict[int, float]:
    """Share of labelled patients in each fold's training set (for reports and tests)."""
    labelled = set(labelled_patients)
    out = {}
    for k, split in enumerate(splits):
        patients = {acdc_patient(c) for c in split["train"]}
        out[k] = len(patients & labelled) / max(1, len(patients))
    return out


def semi_entry_points(dataset_name: str, fraction: float, description: str):
    """``(convert, main)`` of one semi-supervised ACDC dataset module (Dataset805 / 806)."""
    def convert(source: str, nnunet_raw: str, overwrite: bool = False, verbose: bool = True,
                preprocessed: Optional[str] = None) -> str:
        return convert_acdc_semi(source, nnunet_raw, dataset_name, fraction, overwrite=overwrite, verbose=verbose,
                                 preprocessed=preprocessed)

    def main(argv=None) -> str:
        return semi_main(dataset_name, fraction, description, argv)

    convert.__doc__ = f"Convert ACDC into ``nnunet_raw/{dataset_name}`` ({fraction:.0%} labelled); returns that folder."
    return convert, main


def semi_main(dataset_name: str, fraction: float, description: str, argv=None) -> str:
    """Command line of the Dataset805/806 scripts: ``SOURCE NNUNET_RAW [--overwrite] [--seed 0]``."""
    parser = conversion_parser(description, "ACDC folder containing training/")
    parser.epilog = (f"Labelled patients: per fold block of {ACDC_PATIENTS_PER_FOLD} patients, the first "
                     f"round({fraction} x block) of a seeded shuffle (see nnunet_weak.annotation.semi_acdc).")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the labelled-patient pick")
    args = parser.parse_args(argv)
    return convert_acdc_semi(args.source, args.nnunet_raw, dataset_name, fraction, seed=args.seed,
                             overwrite=args.overwrite, preprocessed=args.preprocessed)
