"""ModelMix's "few-scribble" setting: a handful of training volumes keep their
scribbles, every other TRAINING case becomes an all-ignore (unlabelled) label map, validation cases keep their
labels (nnU-Net validates on them).

Which training volumes keep their scribbles (:func:`select_few_scribbles`):

- default: the official picks of the ModelMix code (:data:`OFFICIAL_PICKS`):
  ACDC ``patient065_frame01, patient043_frame01, patient070_frame01, patient005_frame13, patient032_frame12``
  (the first 5 volumes of ``random.seed(42); random.shuffle`` of the 140 sorted volumes of patients 001-070 -- checked
  against the real file names), MSCMR subjects 13, 14, 15, 18, 19 (first 5 in sorted file-name order), MyoPS
  subjects 102, 103, 104, 105, 107;
- ``--labelled K``: the first K of that list (K > its length continues with the shuffle below);
- ``--picks a,b,c``: exactly these cases (each must exist in the dataset).

A pick that is not a training volume of the split (it lies in the validation set, or the source lacks it) cannot
keep its scribbles as a training case: it is replaced by the next volume of a seeded shuffle
(``random.Random(42).shuffle`` of the sorted training volumes) that is not picked yet. Replacements are printed and
recorded. The outcome is written to ``few_scribbles.json`` in the dataset folder (picks, how they were chosen,
replacements, unlabelled cases) and the picks to ``dataset.json["labelled_cases"]``.

Also here: the ACDC few-scribble conversion (Dataset814, one fold of the WSL4MIS/PCLMix 5-fold split) and the
command-line options shared by Dataset814/815/813.
"""
from __future__ import annotations

import argparse
import json
import os
import random
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

from nnunet_weak.annotation.nnunet_io import (ACDC_NUM_FOLDS, CARDIAC_IGNORE, acdc_five_fold_splits, convert_acdc,
                                             find_acdc_frames, label_array)
from nnunet_weak.utilities.errors import NNWError

PICKS_FILE = "few_scribbles.json"
SHUFFLE_SEED = 42
OFFICIAL_PICKS: Dict[str, tuple] = {
    "ACDC": ("patient065_frame01", "patient043_frame01", "patient070_frame01", "patient005_frame13",
             "patient032_frame12"),
    "MSCMR": ("subject13_DE", "subject14_DE", "subject15_DE", "subject18_DE", "subject19_DE"),
    "MyoPS": ("myops_training_102", "myops_training_103", "myops_training_104", "myops_training_105",
              "myops_training_107"),
}


@dataclass
class FewScribbleSelection:
    """The training volumes that keep their scribbles, and how they were chosen."""
    picks: List[str]                 # labelled training volumes, in pick order
    requested: List[str]             # the picks asked for, before replacements
    method: str
    train: List[str]                 # every training case of the split (sorted)
    val: List[str]
    seed: int = SHUFFLE_SEED
    replacements: List[dict] = field(default_factory=list)

    @property
    def unlabelled(self) -> List[str]:
        picked = set(self.picks)
        return [c for c in self.train if c not in picked]

    def is_unlabelled(self, case: str) -> bool:
        """Whether ``case`` is a training case that becomes all-ignore."""
        return case in self.train and case not in self.picks

    def labels_for(self, case: str, labels: np.ndarray, ignore: int) -> np.ndarray:
        """``labels`` for a picked or validation case, an all-``ignore`` map for any other training case."""
        return np.full_like(labels, ignore) if self.is_unlabelled(case) else labels

    def to_json(self) -> dict:
        return {"setting": "ModelMix few-scribble (Zhang & Patel, MICCAI 2024): picked training volumes keep their "
                           "scribbles, the other training cases are all-ignore (unlabelled), validation cases keep "
                           "their labels",
                "method": self.method, "requested": list(self.requested), "picks": list(self.picks),
                "replacements": list(self.replacements), "shuffle_seed": self.seed,
                "num_labelled": len(self.picks), "num_unlabelled": len(self.unlabelled),
                "unlabelled_cases": self.unlabelled, "val_cases": list(self.val)}

    def summary(self) -> List[str]:
        """Lines for the conversion's printed output."""
        lines = [f"few-scribble picks ({self.method}): {len(self.picks)} labelled, {len(self.unlabelled)} "
                 f"unlabelled training cases: {', '.join(self.picks)}"]
        lines += [f"  replaced {r['requested']} ({r['reason']}) by {r['replacement']} "
                  f"(next of the seed-{self.seed} shuffle of the training volumes)" for r in self.replacements]
        return lines


def parse_picks(text: Optional[str]) -> Optional[List[str]]:
    """``"a,b, c"`` -> ``["a", "b", "c"]`` (None stays None)."""
    if text is None:
        return None
    picks = [p.strip() for p in text.split(",") if p.strip()]
    if not picks:
        raise NNWError(f"--picks {text!r} names no case; give comma-separated case ids, e.g. subject13_DE,subject14_DE")
    return picks


def select_few_scribbles(train: Iterable[str], val: Iterable[str], official: Sequence[str],
                         labelled: Optional[int] = None, picks: Optional[Sequence[str]] = None,
                         seed: int = SHUFFLE_SEED, where: str = "the validation set") -> FewScribbleSelection:
    """Pick the labelled training volumes (see the module docstring). ``where`` names the validation set in the
    replacement record (e.g. "the validation set of fold 0")."""
    train, val = sorted(set(train)), sorted(set(val))
    if not train:
        raise NNWError("the split has no training cases; nothing can keep its scribbles.")
    train_set, known = set(train), set(train) | set(val)
    if picks is not None and labelled is not None:
        raise NNWError("give --picks or --labelled, not both")
    if picks is not None:
        requested = list(picks)
        duplicates = sorted({p for p in requested if requested.count(p) > 1})
        if duplicates:
            raise NNWError(f"--picks names {duplicates[0]} more than once; list each case once.")
        unknown = [p for p in requested if p not in known]
        if unknown:
            raise NNWError(f"--picks case {unknown[0]} is not in the dataset (cases look like {train[0]}); "
                           f"fix the name.")
        method = "--picks"
    else:
        count = len(official) if labelled is None else int(labelled)
        if not 1 <= count <= len(train):
            raise NNWError(f"--labelled must lie in 1..{len(train)} (the training cases of the split), got {count}")
        requested = list(official[:count])
        method = ("official picks of the ModelMix code" if labelled is None
                  else f"--labelled {count}: the first {count} of the official picks")
        if count > len(official):
            method += f", then the seed-{seed} shuffle of the training volumes"
    order = list(train)
    random.Random(seed).shuffle(order)
    chosen = {p for p in requested if p in train_set}
    queue = iter([c for c in order if c not in chosen])
    replacements, result = [], []
    for pick in requested:
        if pick in train_set:
            result.append(pick)
            continue
        replacement = next(queue, None)
        if replacement is None:
            raise NNWError(f"pick {pick} is not a training case and no training case is left to replace it; "
                           f"ask for fewer labelled cases.")
        reason = f"in {where}" if pick in known else "not in the source"
        replacements.append({"requested": pick, "reason": reason, "replacement": replacement})
        result.append(replacement)
    if labelled is not None and labelled > len(official):
        result += [c for c in queue][:labelled - len(result)]
    return FewScribbleSelection(picks=result, requested=requested, method=method, train=train, val=val, seed=seed,
                                replacements=replacements)


def record_selection(folder: str, selection: FewScribbleSelection, verbose: bool = True,
                     description: Optional[str] = None, **extra) -> str:
    """Write ``few_scribbles.json`` (plus ``extra`` entries) into the dataset folder, add the picks to its
    ``dataset.json`` (and replace its description when given); print the summary. Returns the JSON's path."""
    path = os.path.join(folder, PICKS_FILE)
    with open(path, "w") as f:
        json.dump({"dataset": os.path.basename(os.path.normpath(folder)), **extra, **selection.to_json()}, f,
                  indent=4)
    dataset_json = os.path.join(folder, "dataset.json")
    with open(dataset_json) as f:
        content = json.load(f)
    if description is not None:
        content["description"] = description
    content.update({"labelled_cases": list(selection.picks), "few_scribbles_file": PICKS_FILE})
    with open(dataset_json, "w") as f:
        json.dump(content, f, indent=4)
    if verbose:
        print("\n".join(selection.summary()))
        print(f"picks recorded in {path}")
    return path


def remove_stale_record(folder: str) -> None:
    """A conversion without the few-scribble setting removes the ``few_scribbles.json`` of an earlier run."""
    path = os.path.join(folder, PICKS_FILE)
    if os.path.isfile(path):
        os.remove(path)


def add_selection_arguments(parser: argparse.ArgumentParser, official: Sequence[str],
                            default_help: Optional[str] = None) -> argparse.ArgumentParser:
    """``--labelled K`` / ``--picks a,b,c`` (mutually exclusive)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--labelled", type=int, default=None, metavar="K",
                       help=default_help or f"keep the scribbles of the first K official picks ({', '.join(official)}; "
                                            f"default all {len(official)})")
    group.add_argument("--picks", default=None, metavar="A,B,C",
                       help="comma-separated case ids that keep their scribbles (overrides the official picks)")
    return parser


# ------------------------------------------------------------------------------------------------- ACDC (814)
def convert_acdc_few_scribbles(source: str, nnunet_raw: str, dataset_name: str, fold: int = 0,
                               labelled: Optional[int] = None, picks: Optional[Sequence[str]] = None,
                               seed: int = SHUFFLE_SEED, overwrite: bool = False, verbose: bool = True,
                               preprocessed: Optional[str] = None) -> str:
    """ACDC few-scribble dataset for one fold of the WSL4MIS/PCLMix 5-fold split: the picked training frames keep
    their scribbles, the other training frames are all-ignore, the fold's validation frames keep their scribbles;
    labelsTr_dense holds every frame's dense labels. ``splits_final.json`` has ONE entry (that fold), so fold 0 of
    the dataset is the chosen ACDC fold. Returns the dataset folder."""
    if not 0 <= fold < ACDC_NUM_FOLDS:
        raise NNWError(f"--fold must be 0..{ACDC_NUM_FOLDS - 1}, got {fold}")
    frames = find_acdc_frames(source)
    split = acdc_five_fold_splits(f.case for f in frames)[fold]
    selection = select_few_scribbles(split["train"], split["val"], OFFICIAL_PICKS["ACDC"], labelled=labelled,
                                     picks=picks, seed=seed, where=f"the validation set of fold {fold}")
    splits = [split]

    def labels(frame, image, gt: np.ndarray) -> np.ndarray:
        if selection.is_unlabelled(frame.case):
            return np.full_like(gt, CARDIAC_IGNORE)
        return label_array(frame.scribble, CARDIAC_IGNORE, image)[0]

    kind = (f"scribbles (Valvano et al. 2021) of {len(selection.picks)} training frames and of the fold-{fold} "
            f"validation frames, all-ignore (unlabelled) for the other {len(selection.unlabelled)} training frames")
    folder = convert_acdc(source, nnunet_raw, dataset_name, scribbles=True, overwrite=overwrite, verbose=verbose,
                          weak_labels=labels, kind=kind, splits=splits, preprocessed=preprocessed)
    description = (f"ACDC cine MRI, ModelMix few-scribble setting; labelsTr: {kind}; labelsTr_dense: dense labels of "
                   f"every frame for evaluation. splits_final.json: one entry = WSL4MIS/PCLMix fold {fold} (validates "
                   f"patients {20 * fold + 1:03d}-{20 * fold + 20:03d}); train it as fold 0.")
    record_selection(folder, selection, verbose=verbose, description=description, acdc_fold=fold)
    return folder
