"""Turn an nnU-Net v2 raw dataset with dense labels into one with simulated (ScribbleBench-style) scribbles.

    python dataset_conversion/simulate_scribbles.py SOURCE_DATASET_FOLDER TARGET_DATASET_FOLDER [--seed 0]
        [--overwrite] [--thickness 3] [--axis 0]

The same as the installed command ``nnunet_weak_simulate_scribbles`` (``nnunet_weak.annotation.commands``):
images (and imagesTs/labelsTs, if any) copied unchanged; labelsTr with scribbles simulated slice by slice along
``--axis`` of the (z, y, x) array, unannotated pixels = ``ignore`` (highest label + 1, added to dataset.json);
labelsTr_dense keeps the original dense labels; splits_final.json copied if the source has one.
"""
from nnunet_weak.annotation.commands import simulate_scribbles_dataset as simulate_dataset  # noqa: F401
from nnunet_weak.annotation.commands import simulate_scribbles_main as main

if __name__ == "__main__":
    main()
