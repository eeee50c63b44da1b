import pytest
import torch

from nnunet_weak.utilities.class_map import class_map


@pytest.mark.parametrize("shape", [(3, 4, 9, 7), (2, 5, 3, 6, 4), (2, 6, 50)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_class_map_is_the_channel_argmax(shape, dtype):
    scores = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(dtype)
    assert torch.equal(class_map(scores), scores.argmax(1))
    kept = class_map(scores, keepdim=True)
    assert kept.shape == (shape[0], 1) + shape[2:] and kept.dtype == torch.int64
    assert torch.equal(kept, scores.argmax(1, keepdim=True))


def test_class_map_gives_ties_to_the_lowest_class_and_reads_channels_last_tensors():
    scores = torch.zeros(2, 4, 3, 3)
    scores[:, 2] = 1.0
    scores[:, 3] = 1.0            # classes 2 and 3 tie everywhere
    scores[0, 1, 0, 0] = 5.0
    labels = class_map(scores)
    assert labels[0, 0, 0] == 1 and (labels.flatten()[1:] == 2).all()
    channels_last = scores.contiguous(memory_format=torch.channels_last)
    assert torch.equal(class_map(channels_last), labels)
