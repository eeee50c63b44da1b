"""How good are weak labels as labels? Precision / recall / Dice of a partial label map against the dense one.

A partial map labels some voxels (a class value) and leaves the rest ``ignore``. For class c:

- precision = |seed == c and dense == c| / |seed == c|   (how often a voxel called c really is c)
- recall    = |seed == c and dense == c| / |dense == c|  (how much of the true region got the label c)
- Dice      = 2 |seed == c and dense == c| / (|seed == c| + |dense == c|)
- coverage  = |seed != ignore| / all voxels              (how much of the image is labelled at all)

Counts are kept so a dataset-level (micro) figure sums them over cases; a per-case figure with an empty
denominator is NaN (nothing to measure), not 0.
"""
import csv
import json
import math
from typing import Dict, Iterable, List, Sequence

import numpy as np


def seed_counts(seeds: np.ndarray, dense: np.ndarray, classes: Sequence[int], ignore_label: int) -> Dict[int, dict]:
    """Per class c: {"tp", "seed", "dense"} voxel counts; plus key -1: {"labelled", "total"}."""
    if seeds.shape != dense.shape:
        raise ValueError(f"seed map {seeds.shape} and dense map {dense.shape} differ in shape")
    out = {}
    for c in classes:
        s, d = seeds == c, dense == c
        out[int(c)] = {"tp": int(np.count_nonzero(s & d)), "seed": int(np.count_nonzero(s)),
                       "dense": int(np.count_nonzero(d))}
    out[-1] = {"labelled": int(np.count_nonzero(seeds != ignore_label)), "total": int(seeds.size)}
    return out


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def scores(counts: dict) -> dict:
    """precision / recall / Dice of one class's counts."""
    return {"precision": _ratio(counts["tp"], counts["seed"]), "recall": _ratio(counts["tp"], counts["dense"]),
            "dice": _ratio(2 * counts["tp"], counts["seed"] + counts["dense"])}


class SeedQualityReport:
    """Collects :func:`seed_counts` per case; writes a per-case CSV and a JSON with micro and per-case means."""

    def __init__(self, class_names: Dict[int, str], ignore_label: int):
        self.class_names = {int(k): v for k, v in class_names.items()}
        self.ignore_label = int(ignore_label)
        self.cases: List[tuple] = []

    def add(self, case: str, seeds: np.ndarray, dense: np.ndarray) -> dict:
        counts = seed_counts(seeds, dense, list(self.class_names), self.ignore_label)
        self.cases.append((case, counts))
        return counts

    def rows(self) -> Iterable[dict]:
        for case, counts in self.cases:
            for c, name in self.class_names.items():
                yield {"case": case, "class": name, **counts[c], **scores(counts[c]),
                       "labelled_fraction": _ratio(counts[-1]["labelled"], counts[-1]["total"])}

    def summary(self) -> dict:
        out = {"cases": len(self.cases), "classes": {}}
        for c, name in self.class_names.items():
            total = {k: sum(counts[c][k] for _, counts in self.cases) for k in ("tp", "seed", "dense")}
            per_case = [scores(counts[c]) for _, counts in self.cases]
            mean = {k: float(np.nanmean([p[k] for p in per_case])) if any(not math.isnan(p[k]) for p in per_case)
                    else math.nan for k in ("precision", "recall", "dice")}
            out["classes"][name] = {"micro": scores(total), "case_mean": mean}
        labelled = sum(counts[-1]["labelled"] for _, counts in self.cases)
        voxels = sum(counts[-1]["total"] for _, counts in self.cases)
        out["labelled_fraction"] = _ratio(labelled, voxels)
        return out

    def write(self, csv_path: str, json_path: str, metadata: dict = None) -> dict:
        rows = list(self.rows())
        with open(csv_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["case"])
            writer.writeheader()
            writer.writerows(rows)
        summary = self.summary()
        if metadata:
            summary["metadata"] = metadata
        with open(json_path, "w") as f:
            json.dump(summary, f, indent=2, default=lambda v: None)
        return summary

    def table(self) -> str:
        """Markdown table of the micro scores."""
        s = self.summary()
        lines = ["| class | precision | recall | Dice |", "|---|---|---|---|"]
        for name, v in s["classes"].items():
            m = v["micro"]
            lines.append(f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['dice']:.3f} |")
        lines.append(f"\nlabelled voxels: {100 * s['labelled_fraction']:.2f} % of {s['cases']} cases")
        return "\n".join(lines)
