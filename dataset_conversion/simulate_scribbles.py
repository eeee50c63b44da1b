"""Turn an nnU-Net v2 raw dataset with dense labels into one with simulated (ScribbleBench-style) scribbles.

    python dataset_conversion/simulate_scribbles.py SOURCE_DATASET_FOLDER TARGET_DATASET_FOLDER [--seed 0]
        [--overwrite] [--thickness 3] [--axis 0]

Images (and imagesTs/labelsTs, if any) are copied unchanged; labelsTr gets scribbles simulated slice by slice
along ``--axis`` of the (z, y, x) array (see nnunet_weak.annotation.scribbles), unannotated pixels = ``ignore``
(highest label + 1, added to dataset.json); labelsTr_dense keeps the original dense labels. splits_final.json is
copied if the source has one (and written to $nnUNet_preprocessed/<target name>/ when that is set). Each case
draws from its own generator seeded by (seed, case id), so a case's scribbles do not depend on the others.
Prints the annotated-pixel fraction.
"""
import argparse
import json
import os
import re
import shutil
import sys
import zlib
from typing import Dict

import numpy as np

from nnunet_weak.annotation.nnunet_io import (DENSE_FOLDER, OVERWRITE_FLAG, SPLITS_FILE, Geometry, label_array,
                                              prepare_dataset_folder, staged_dataset, write_label, write_splits)
from nnunet_weak.annotation.scribbles import annotated_fraction, simulate_scribbles
from nnunet_weak.utilities.errors import NNWError
from nnunet_weak.utilities.labels import check_ignore_label


def _case_rng(seed: int, case: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(case.encode("utf-8"))])


def simulate_dataset(source: str, target: str, seed: int = 0, overwrite: bool = False, thickness: int = 3,
                     axis: int = 0, verbose: bool = True) -> Dict[str, object]:
    """Write ``target``, a copy of the dense raw dataset ``source`` whose labelsTr hold simulated scribbles.

    Returns ``{"mean": float, "per_case": {case: float}, "per_class": {label name: float}}``: the annotated-pixel
    fraction averaged over cases, per case, and per class (share of all pixels scribbled with that class,
    averaged over cases).
    """
    source, target = os.path.abspath(source), os.path.abspath(target)
    json_path = os.path.join(source, "dataset.json")
    if not os.path.isfile(json_path):
        raise NNWError(f"{json_path} does not exist; pass an nnU-Net raw dataset folder as the source.")
    if os.path.realpath(source) == os.path.realpath(target):  # realpath: a link to the source is the source
        raise NNWError(f"target {target} is the source dataset {os.path.realpath(source)}; choose a new dataset "
                       f"folder.")
    with open(json_path) as f:
        dataset_json = json.load(f)
    if check_ignore_label(dataset_json, json_path, required=False) is not None:
        raise NNWError(f"{json_path} already declares an ignore label; simulate scribbles from a dataset with "
                       f"dense labels.")
    classes = {name: int(value) for name, value in dataset_json["labels"].items()}
    ignore = max(classes.values()) + 1
    ending = dataset_json.get("file_ending", ".nii.gz")
    labels_dir, images_dir = os.path.join(source, "labelsTr"), os.path.join(source, "imagesTr")
    for folder in (labels_dir, images_dir):
        if not os.path.isdir(folder):
            raise NNWError(f"{folder} does not exist; the source must be an nnU-Net raw dataset.")
    cases = sorted(n[:-len(ending)] for n in os.listdir(labels_dir) if n.endswith(ending))
    if not cases:
        raise NNWError(f"{labels_dir} holds no {ending} label files.")
    image_files: Dict[str, list] = {c: [] for c in cases}
    channel = re.compile(r"^(.+)_\d{4}" + re.escape(ending) + "$")
    for name in sorted(os.listdir(images_dir)):
        m = channel.match(name)
        if m is not None and m.group(1) in image_files:
            image_files[m.group(1)].append(name)
    unlabelled_images = sorted({m.group(1) for m in map(channel.match, os.listdir(images_dir))
                                if m is not None and m.group(1) not in image_files})
    if unlabelled_images:
        print(f"warning: {len(unlabelled_images)} image(s) in {images_dir} have no label file in {labels_dir} and are "
              f"left out, e.g. {unlabelled_images[0]}", file=sys.stderr)
    for case, files in image_files.items():
        if not files:
            raise NNWError(f"{os.path.join(images_dir, case + '_0000' + ending)} is missing (image of "
                           f"{os.path.join(labels_dir, case + ending)}).")

    splits = None
    splits_path = os.path.join(source, SPLITS_FILE)
    if os.path.isfile(splits_path):
        with open(splits_path) as f:
            splits = json.load(f)
    with staged_dataset(target, overwrite, splits) as out:
        prepare_dataset_folder(out)

        per_case, per_class = {}, {name: [] for name in classes}
        for case in cases:
            for name in image_files[case]:
                shutil.copyfile(os.path.join(images_dir, name), os.path.join(out, "imagesTr", name))
            label_path = os.path.join(labels_dir, case + ending)
            geometry = Geometry.of_file(os.path.join(images_dir, image_files[case][0]))
            dense, _ = label_array(label_path, ignore - 1, geometry)
            scribble = simulate_scribbles(dense, ignore, _case_rng(seed, case), thickness=thickness, axis=axis)
            write_label(scribble, geometry, os.path.join(out, "labelsTr", case + ending), label_path)
            shutil.copyfile(label_path, os.path.join(out, DENSE_FOLDER, case + ending))
            per_case[case] = annotated_fraction(scribble, ignore)
            for name, value in classes.items():
                per_class[name].append(float(np.count_nonzero(scribble == value)) / max(scribble.size, 1))
        for folder in ("imagesTs", "labelsTs"):
            if os.path.isdir(os.path.join(source, folder)):
                shutil.copytree(os.path.join(source, folder), os.path.join(out, folder))

        new_json = dict(dataset_json)
        new_json["labels"] = {**classes, "ignore": ignore}
        new_json["numTraining"] = len(cases)
        new_json["name"] = os.path.basename(target)
        note = (f"Scribbles simulated from {os.path.basename(source)} (seed {seed}, thickness {thickness}, axis "
                f"{axis}; ScribbleBench-style, nnunet_weak.annotation.scribbles); {DENSE_FOLDER}: original dense "
                f"labels.")
        new_json["description"] = (dataset_json.get("description", "") + " " + note).strip()
        with open(os.path.join(out, "dataset.json"), "w") as f:
            json.dump(new_json, f, indent=4)
        if splits is not None:
            write_splits(out, splits, dataset_name=os.path.basename(target))

    result = {"mean": float(np.mean(list(per_case.values()))), "per_case": per_case,
              "per_class": {name: float(np.mean(v)) for name, v in per_class.items()}}
    if verbose:
        classes_txt = ", ".join(f"{n} {100 * f:.3f}%" for n, f in result["per_class"].items())
        print(f"wrote {len(cases)} cases to {target}; annotated pixels: {100 * result['mean']:.3f}% "
              f"(mean over cases; per class: {classes_txt})")
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="nnU-Net raw dataset folder with dense labels")
    parser.add_argument("target", help="new dataset folder to write (e.g. $nnUNet_raw/Dataset807_Name)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(OVERWRITE_FLAG, dest="overwrite", action="store_true",
                        help="replace the outputs of an earlier run in the target folder")
    parser.add_argument("--thickness", type=int, default=3, help="scribble width in pixels (default 3)")
    parser.add_argument("--axis", type=int, default=0, help="array axis (z, y, x) to slice along (default 0)")
    args = parser.parse_args(argv)
    simulate_dataset(args.source, args.target, seed=args.seed, overwrite=args.overwrite, thickness=args.thickness,
                     axis=args.axis)


if __name__ == "__main__":
    main()
