"""Transform-pipeline edits shared by the weak trainers."""
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.random import RandomTransform
from batchgeneratorsv2.transforms.utils.remove_label import RemoveLabelTransform


def pad_as_ignore(pipeline: ComposeTransforms, ignore_label: int) -> int:
    """Make padded and rotated-in pixels *unannotated* instead of background, in place.

    nnU-Net's loader pads segmentations with -1 and its spatial transform fills borders with -1; the pipeline's
    ``RemoveLabelTransform(-1 -> 0)`` then turns them into background, i.e. free but fake background
    supervision. With partial labels this is wrong (the border is just unknown), so we retarget that transform
    to ``ignore_label``. Caveat: nnU-Net also writes -1 for annotated background outside the non-zero mask of
    ``crop_to_nonzero``; that (rare in MRI) region becomes unannotated too.

    Returns the number of transforms changed (0 means the pipeline had no such step).
    """
    changed = 0
    for t in pipeline.transforms:
        if isinstance(t, RemoveLabelTransform) and t.label_value == -1:
            t.set_to = ignore_label
            changed += 1
        elif isinstance(t, ComposeTransforms):
            changed += pad_as_ignore(t, ignore_label)
    return changed


def drop_random_transforms(pipeline: ComposeTransforms, kinds: tuple) -> int:
    """Remove, in place, every ``RandomTransform`` that wraps a transform of one of ``kinds`` (nested
    pipelines included). Returns how many were removed, so a caller can tell when nnU-Net's pipeline changed."""
    kept, removed = [], 0
    for t in pipeline.transforms:
        if isinstance(t, RandomTransform) and isinstance(t.transform, kinds):
            removed += 1
            continue
        if isinstance(t, ComposeTransforms):
            removed += drop_random_transforms(t, kinds)
        kept.append(t)
    pipeline.transforms = kept
    return removed
