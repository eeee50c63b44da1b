"""PCLMix: the Swin decoder on padded grids, the network's inference contract (spec pclmix.md 6.3), the pixel
contrast and its queue, CutMix of deep-supervision targets, the trainer's loss terms and variants, and one tiny
train -> resume -> predict run through the stock CLI."""
import glob
import math
import os
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import TINY_ID, TINY_NAME
from nnunet_weak.data.cutmix import mix, mix_batch, random_boxes
from nnunet_weak.experiment import steps
from nnunet_weak.losses.pixel_contrast import (MemoryQueue, PixelContrast, contrast_set, info_nce,
                                               sample_anchors)
from nnunet_weak.networks.pclmix_net import aux_stages
from nnunet_weak.networks.swin_decoder import SwinBlock, SwinDecoder2D
from nnunet_weak.training.contract import check_inference_contract
from nnunet_weak.utilities import cpu_bf16
from nnunet_weak.utilities.errors import NNWError

from test_trainer_plumbing import make_trainer


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (conftest)


# --------------------------------------------------------------------------------------------- Swin decoder
@pytest.mark.parametrize("grid", [(9, 7), (64, 56), (3, 20)])
def test_swin_mask_allows_exactly_real_neighbours(grid):
    """In the shifted, padded frame a query may attend to a key iff the key is a real token and the two are
    neighbours in the original grid (closer than a window along both axes, i.e. not across the wrap seam)."""
    block = SwinBlock(12, 3, window=7, shifted=True)
    h, w = grid
    (wh, ww), (sh, sw), (hp, wp) = block.geometry(h, w)
    assert hp % wh == 0 and wp % ww == 0 and hp >= h and wp >= w
    mask = block.attention_mask(h, w, "cpu")
    rows, cols = torch.meshgrid(torch.arange(hp), torch.arange(wp), indexing="ij")
    coords = torch.stack([rows, cols], -1).roll((-sh, -sw), dims=(0, 1))          # original coords, shifted
    coords = coords.view(hp // wh, wh, wp // ww, ww, 2).permute(0, 2, 1, 3, 4).reshape(-1, wh * ww, 2)
    real = (coords[..., 0] < h) & (coords[..., 1] < w)
    delta = (coords[:, :, None, :] - coords[:, None, :, :]).abs()
    expected = (delta[..., 0] < wh) & (delta[..., 1] < ww) & real[:, None, :]
    assert torch.equal(mask == 0, expected)


def test_swin_padding_is_invisible():
    """Without shift, the padded grid's windows give what the real tokens alone give (padded keys masked)."""
    torch.manual_seed(0)
    block = SwinBlock(12, 3, window=7, shifted=False).eval()
    x = torch.randn(2, 9, 7, 12)
    with torch.no_grad():
        full = block(x)
        assert torch.allclose(full[:, :7], block(x[:, :7]), atol=1e-5)
        assert torch.allclose(full[:, 7:], block(x[:, 7:]), atol=1e-5)   # a 2x7 window, bias subset


@pytest.mark.parametrize("grids", [[(18, 14), (9, 7)], [(64, 56), (32, 28), (16, 14), (8, 7)]])
def test_swin_decoder_output_shape(grids):
    torch.manual_seed(0)
    channels = [8 * 2 ** k for k in range(len(grids))]
    decoder = SwinDecoder2D(channels, num_classes=4, embed_dim=12, base_heads=3)
    features = [torch.randn(1, c, *g) for c, g in zip(channels, grids)]
    out = decoder(features)
    assert tuple(out.shape) == (1, 4, 4 * grids[0][0], 4 * grids[0][1])
    out.float().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in decoder.parameters() if p.grad is not None)


def test_aux_stage_choice():
    acdc = [[1, 1]] + [[2, 2]] * 5                         # 256x224 plan: strides 1..32
    assert aux_stages(acdc) == [2, 3, 4, 5]
    assert aux_stages([[1, 1], [2, 2], [2, 2], [2, 2]]) == [2, 3]   # tiny 48x48 plan: strides 4 and 8 only
    assert aux_stages([1, 2, 2, 2, 2, 2, 2]) == [2, 3, 4, 5]
    with pytest.raises(NNWError, match="4x4 and 8x8"):
        aux_stages([[1, 1], [2, 1], [2, 2], [2, 2]])        # anisotropic pooling: no 4x4 stage
    with pytest.raises(NNWError, match="4x4 and 8x8"):
        aux_stages([[1, 1], [2, 2], [2, 2]])                # no stride-8 stage for the projection head


# ---------------------------------------------------------------------------------------------- contrast
def test_info_nce_matches_hand_computation():
    tau = 0.5
    anchors = F.normalize(torch.tensor([[1.0, 0.2], [0.1, 1.0]]), dim=1)
    labels = torch.tensor([0, 1])
    queue = F.normalize(torch.tensor([[[1.0, 0.0], [0.8, 0.6]], [[0.0, 1.0], [-0.6, 0.8]]]), dim=2)  # (C=2, K=2)
    feats, feat_labels = contrast_set(queue)
    expected = 0.0
    for a, y in zip(anchors.tolist(), labels.tolist()):
        dot = lambda q: (a[0] * q[0] + a[1] * q[1]) / tau  # noqa: E731
        neg = sum(math.exp(dot(q)) for q in queue[1 - y].tolist())
        terms = [-math.log(math.exp(dot(p)) / (math.exp(dot(p)) + neg)) for p in queue[y].tolist()]
        expected += sum(terms) / len(terms)
    expected /= 2
    got = info_nce(anchors, labels, feats, feat_labels, temperature=tau)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_legacy_contrast_set_and_diagonal():
    queue = F.normalize(torch.randn(4, 3, 8), dim=2)
    feats, labels = contrast_set(queue, legacy=True)
    assert labels.tolist() == [1, 1, 1, 2, 2, 2, 3, 3, 3, 0, 0, 0]
    assert torch.equal(feats[:9], queue[1:].reshape(9, 8)) and feats[9:].abs().sum() == 0
    # background anchors take the zero rows as positives (logit 0): a pure push away from foreground prototypes
    anchors = F.normalize(torch.randn(12, 8), dim=1)
    bg = torch.zeros(12, dtype=torch.long)
    plain = info_nce(anchors, bg, feats, labels)
    scores = anchors @ feats[:9].t() / 0.07
    repulsion = torch.log1p(torch.exp(torch.logsumexp(scores, 1))).mean()   # -log(1 / (1 + sum_FG exp))
    assert plain.item() == pytest.approx(repulsion.item(), rel=1e-5)
    # the diagonal quirk drops positive (i, i); for class-1 anchors rows 0..2 lose a queue entry of their class
    fg = torch.full((12,), 1)
    assert not torch.isclose(info_nce(anchors, fg, feats, labels, drop_diagonal=True),
                             info_nce(anchors, fg, feats, labels))


def test_contrast_single_class_is_finite_and_trains_the_embedding():
    torch.manual_seed(0)
    emb = F.normalize(torch.randn(2, 16, 6, 6), dim=1).requires_grad_(True)
    certain = torch.zeros(2, 48, 48, dtype=torch.long)                 # only background, full resolution
    predicted = torch.zeros(2, 48, 48, dtype=torch.long)
    queue = MemoryQueue(4, size=10, dim=16)
    loss = PixelContrast()(emb, certain, predicted, queue)
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert torch.isfinite(emb.grad).all() and emb.grad.abs().sum() > 0
    assert queue.ptr.tolist() == [2, 0, 0, 0]                           # one background mean per image
    # legacy: 36 pixels per class on the grid is not more than 100, so no anchor and no foreground enqueue
    legacy_queue = MemoryQueue(4, size=10, dim=16)
    assert PixelContrast(legacy=True)(emb, certain, predicted, legacy_queue).item() == 0.0
    assert legacy_queue.ptr.tolist() == [0, 0, 0, 0]


def test_anchor_sampling_half_hard_half_easy():
    emb = F.normalize(torch.randn(1, 4, 20, 20), dim=1)
    certain = torch.full((1, 20, 20), -1)
    certain[0, :10] = 1                                   # 200 certain pixels of class 1
    certain[0, 10:12] = 2                                 # 40 of class 2
    predicted = torch.ones(1, 20, 20, dtype=torch.long)
    predicted[0, :2] = 0                                  # 40 hard pixels of class 1 (certain 1, CNN says 0)
    g = torch.Generator().manual_seed(0)
    anchors, labels = sample_anchors(emb, certain, predicted, num_classes=4, generator=g)
    # 2 pairs -> n_view = min(100, 1024 // 2) = 100; class 1: 40 hard + 60 easy (easy tops up); class 2: its 40
    # pixels, all hard (the CNN predicts 1 there)
    assert (labels == 1).sum() == 100 and (labels == 2).sum() == 40
    flat = emb.flatten(2)[0].t()
    hard_rows = flat[:40]                                 # image rows 0 and 1
    chosen = anchors[labels == 1]
    n_hard = sum(bool((hard_rows == a).all(1).any()) for a in chosen)
    assert n_hard == 40
    assert len({tuple(a.tolist()) for a in chosen}) == 100                # without replacement
    again, _ = sample_anchors(emb, certain, predicted, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, anchors)                                   # reproducible with a generator
    # legacy inclusion: class 2 (40 pixels) drops, class 1 (200 > 100) stays
    _, legacy_labels = sample_anchors(emb, certain, predicted, 4, min_pixels=101)
    assert set(legacy_labels.tolist()) == {1}


def test_queue_fifo_and_state_dict():
    q = MemoryQueue(2, size=4, dim=3)
    vectors = torch.eye(3)
    q.push(1, vectors[:3])
    q.push(1, vectors[[0, 1]])                            # wraps: slots 3, 0
    assert q.ptr.tolist() == [0, 1]
    assert torch.equal(q.queue[1], vectors[[1, 1, 2, 0]])
    q.push(0, torch.arange(18.0).view(6, 3))              # more than the ring: only the last 4 survive, in order
    assert q.ptr.tolist() == [2, 1]
    assert torch.equal(q.queue[0][[2, 3, 0, 1]], torch.arange(6.0, 18.0).view(4, 3))
    other = MemoryQueue(2, size=4, dim=3)
    other.load_state_dict(q.state_dict())
    assert torch.equal(other.queue, q.queue) and torch.equal(other.ptr, q.ptr)
    with pytest.raises(NNWError, match="shape"):
        MemoryQueue(3, size=4, dim=3).load_state_dict(q.state_dict())


def test_enqueue_segment_means():
    emb = torch.zeros(2, 2, 2, 2)
    emb[:, 0] = 1.0
    emb[0, 1, 0, 0] = 3.0
    labels = torch.tensor([[[1, -1], [0, 1]], [[0, 0], [0, 0]]])
    q = MemoryQueue(3, size=5, dim=2)
    q.enqueue_segments(emb, labels)
    assert q.ptr.tolist() == [2, 1, 0]
    assert torch.allclose(q.queue[1, 0], F.normalize(torch.tensor([1.0, 1.5]), dim=0))
    assert torch.allclose(q.queue[0, :2], torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    legacy = MemoryQueue(3, size=5, dim=2)
    legacy.enqueue_segments(emb, labels, min_class=1)
    assert legacy.ptr.tolist() == [0, 1, 0]


# ------------------------------------------------------------------------------------------------- CutMix
def test_box_area_and_shape():
    g = torch.Generator().manual_seed(0)
    masks = random_boxes(200, (224, 224), 0.2, generator=g)
    areas = masks.mean((1, 2, 3))
    assert (areas - 0.2).abs().max() < 0.01
    for m in masks[:20, 0]:                               # one axis-aligned rectangle per sample
        rows, cols = m.any(1).nonzero().flatten(), m.any(0).nonzero().flatten()
        assert m.sum() == len(rows) * len(cols) and m[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()


@pytest.mark.parametrize("shape", [(48, 48), (40, 28)])
def test_mixed_deep_supervision_targets_equal_downsampled_mix(shape):
    g = torch.Generator().manual_seed(1)
    b = 4
    full = torch.randint(0, 5, (b, 1, *shape), generator=g).to(torch.int16)
    sizes = [shape, tuple(s // 2 for s in shape), tuple(s // 4 for s in shape)]
    # the loader's deep-supervision targets (DownsampleSegForDSTransform: nearest-exact)
    def downsample(seg):
        return [seg if s == shape else F.interpolate(seg.float(), size=s, mode="nearest-exact").to(seg.dtype)
                for s in sizes]
    targets = downsample(full)
    box = random_boxes(b, shape, generator=g)
    inside, outside = torch.randperm(b, generator=g), torch.randperm(b, generator=g)
    mixed = mix_batch(targets, box, inside, outside)
    expected = downsample(mix(box, full[inside], full[outside]))
    assert all(torch.equal(m, e) for m, e in zip(mixed, expected))
    images = torch.randn(b, 1, *shape, generator=g)
    mixed_images = mix_batch(images, box, inside, outside)
    assert torch.equal(mixed_images * box, images[inside] * box)
    assert torch.equal(mixed_images * (1 - box), images[outside] * (1 - box))


# ------------------------------------------------------------------------------------------------ network
def test_pclmix_inference_contract_and_plain_unet_equivalence(use_env):
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    trainer = make_trainer("nnUNetTrainerPCLMix")
    check_inference_contract(trainer)                     # strict load via nnU-Net's predictor
    net = trainer.network
    assert net.aux_stage_ids == (2, 3) and net.embed_stage_id == 3

    cm = trainer.configuration_manager
    plain = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                   cm.network_arch_init_kwargs_req_import, trainer.num_input_channels,
                                   trainer.label_manager.num_segmentation_heads, deep_supervision=False)
    if cpu_bf16.has_inference_hooks(net):   # the CPU fast path: the plain U-Net runs the same way
        cpu_bf16.install_inference_hooks(plain, on_cpu=True)
    result = plain.load_state_dict(net.state_dict(), strict=False)
    assert not result.missing_keys
    assert {k.split(".")[0] for k in result.unexpected_keys} == {"aux_decoder", "proj_head"}
    assert set(plain.state_dict()) == {k for k in net.state_dict() if k.split(".")[0] in ("encoder", "decoder")}

    calls = {"aux": 0, "proj": 0}
    net.aux_decoder.register_forward_hook(lambda *a: calls.__setitem__("aux", calls["aux"] + 1))
    net.proj_head.register_forward_hook(lambda *a: calls.__setitem__("proj", calls["proj"] + 1))
    x = torch.randn(2, 1, 48, 48)
    net.eval()
    plain.eval()
    trainer.set_deep_supervision_enabled(False)
    with torch.no_grad():
        out = net(x)
        assert isinstance(out, torch.Tensor) and torch.equal(out, plain(x))   # bit-identical
        trainer.set_deep_supervision_enabled(True)
        deep = net(x)
        assert isinstance(deep, list) and len(deep) == 3 and torch.equal(deep[0], out)
        assert calls == {"aux": 0, "proj": 0}
        with cpu_bf16.autocast(trainer.device, trainer.cpu_bf16):   # forward_train runs inside train_step's
            main, aux, emb = net.forward_train(x)
    assert calls == {"aux": 1, "proj": 1}
    assert tuple(aux.shape) == (2, 4, 48, 48) and tuple(emb.shape) == (2, 256, 6, 6)
    assert torch.allclose(emb.norm(dim=1), torch.ones(2, 6, 6), atol=1e-5)
    assert torch.equal(main[0].float(), out)

    # the queue is trainer state, not a network buffer
    assert trainer.queue is not None and not any("queue" in k or "ptr" in k for k in net.state_dict())
    pointers = {t.data_ptr() for t in net.state_dict().values()}
    assert trainer.queue.queue.data_ptr() not in pointers
    assert trainer._do_i_compile() is False


def test_pclmix_rejects_3d_and_batch_of_one(use_env):
    with pytest.raises(NNWError, match="2D configurations"):
        make_trainer("nnUNetTrainerPCLMix", configuration="3d_lite")
    trainer = make_trainer("nnUNetTrainerPCLMix")
    trainer.configuration_manager.configuration["batch_size"] = 1
    with pytest.raises(NNWError, match="batch size of at least 2"):
        trainer.initialize()


# ------------------------------------------------------------------------------------------------ trainer
def _batch(seed=0, b=2, size=24):
    """A small batch (the network takes any multiple of 8): images and deep-supervision scribble targets."""
    g = torch.Generator().manual_seed(seed)
    data = torch.randn(b, 1, size, size, generator=g)
    full = torch.full((b, 1, size, size), 4, dtype=torch.int16)
    for i in range(b):
        full[i, :, 4:10, 4:20] = i % 3 + 1               # a foreground block, visible on the embedding grid
    full[:, :, 16:18, 2:20] = 0
    target = [full] + [F.interpolate(full.float(), size=(size // f, size // f), mode="nearest-exact")
                       .to(torch.int16) for f in (2, 4)]
    return data, target


@pytest.mark.parametrize("name", ["nnUNetTrainerPCLMix", "nnUNetTrainerPCLMix_noMix",
                                  "nnUNetTrainerPCLMix_noContrast", "nnUNetTrainerPCLMix_legacyContrast"])
def test_pclmix_loss_terms(use_env, name):
    trainer = make_trainer(name)
    trainer.initialize()
    trainer.num_epochs, trainer.num_iterations_per_epoch = 10, 10
    data, target = _batch()
    passes = []
    original = trainer.network.forward_train
    trainer.network.forward_train = lambda x, **kw: passes.append(x) or original(x, **kw)
    queue_before = trainer.queue.state_dict()

    trainer.current_epoch, trainer._iter_in_epoch = 0, 1     # t = 0.01 < 1/60: no contrast yet
    loss, logs = trainer.compute_loss(trainer.network_forward(data), target, data, {})
    assert logs["w_ctr"] == 0.0 and logs["ctr"].item() == 0.0
    assert logs["w_het"] == pytest.approx(math.exp(-5 * (1 - 0.01 / 1.26) ** 2))

    trainer.current_epoch, trainer._iter_in_epoch = 5, 0     # t = 0.5
    passes.clear()
    loss, logs = trainer.compute_loss(trainer.network_forward(data), target, data, {})
    assert torch.isfinite(loss) and all(np.isfinite(float(v)) for v in logs.values())
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in trainer.network.parameters() if p.grad is not None)
    assert trainer.network.aux_decoder.head.weight.grad.abs().sum() > 0

    contrast = name != "nnUNetTrainerPCLMix_noContrast"
    mixes = name != "nnUNetTrainerPCLMix_noMix"
    assert len(passes) == (2 if mixes else 1)
    assert ({"mix", "pl"} <= set(logs)) == mixes
    assert (logs["w_ctr"] == pytest.approx(0.1 * 0.5 ** 0.9)) if contrast else logs["w_ctr"] == 0.0
    assert trainer.network.proj_head.layers[0].weight.grad is not None or not contrast
    queue_moved = trainer.queue.ptr.sum().item() > 0
    assert queue_moved == contrast
    assert trainer.contrast.legacy == (name == "nnUNetTrainerPCLMix_legacyContrast")
    if contrast and name != "nnUNetTrainerPCLMix_legacyContrast":
        assert trainer.queue.ptr[0].item() == 2               # background present in both images
    if not contrast:
        assert torch.equal(trainer.queue.queue.cpu(), queue_before["queue"])


def test_pclmix_partial_dice_and_batchnorm_projection_variants(use_env):
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
    stock = make_trainer("nnUNetTrainerPCLMix")
    stock.initialize()
    dice = make_trainer("nnUNetTrainerPCLMix_partialDice")
    dice.initialize()
    layers, loss = [], dice.loss                                           # DS wrapper, float32 wrapper, loss
    while hasattr(loss, "loss"):
        layers.append(type(loss))
        loss = loss.loss
    assert DeepSupervisionWrapper in layers and isinstance(loss, DC_and_CE_loss)
    assert not isinstance(stock.loss.loss, DC_and_CE_loss)                  # pCE by default
    data, target = _batch()
    loss, logs = dice.compute_loss(dice.network_forward(data), target, data, {})
    assert torch.isfinite(loss)
    bn = make_trainer("nnUNetTrainerPCLMix_bnProjection")
    check_inference_contract(bn)                                           # BatchNorm buffers load strictly
    norms = [type(m).__name__ for m in bn.network.proj_head.layers]
    assert norms[1] == "BatchNorm2d" and type(stock.network.proj_head.layers[1]).__name__ != "BatchNorm2d"


def test_queue_survives_checkpoint(use_env, tmp_path):
    trainer = make_trainer("nnUNetTrainerPCLMix")
    trainer.initialize()
    trainer.queue.push(2, F.normalize(torch.randn(7, 256), dim=1))
    path = str(tmp_path / "checkpoint.pth")
    trainer.save_checkpoint(path)
    saved = torch.load(path, map_location="cpu", weights_only=False)
    assert not any("queue" in k for k in saved["network_weights"])
    other = make_trainer("nnUNetTrainerPCLMix")
    other.load_checkpoint(path)
    assert torch.equal(other.queue.queue, trainer.queue.queue) and other.queue.ptr.tolist() == [0, 0, 7, 0]


# ------------------------------------------------------------------------------------------------- CLI
def _last_loss_terms(fold_folder):
    text = "".join(open(p).read() for p in sorted(glob.glob(os.path.join(fold_folder, "training_log_*.txt"))))
    found = re.findall(r"loss terms: (\{.*\})", text)
    assert found, f"no loss terms logged in {fold_folder}"
    return eval(found[-1], {"__builtins__": {}})


def test_pclmix_train_resume_predict_cli(tiny_env, tmp_path):
    env, raw = tiny_env
    env = {k: v for k, v in env.items() if k != "nnUNet_extTrainer"}
    env.update({"NNW_SKIP_FINAL_VALIDATION": "1"})
    log = str(tmp_path / "cli.log")
    trainer, configuration = "nnUNetTrainerPCLMix", "2d"   # batch 2: the smallest PCLMix accepts
    fold = os.path.join(steps.model_folder(env, TINY_NAME, trainer, configuration), "fold_0")

    steps.train(TINY_ID, configuration, 0, trainer, env, log)    # 1 epoch x 2 iterations; contrast on in step 2
    terms = _last_loss_terms(fold)
    assert {"sup", "ctr", "mix", "pl", "het", "w_ctr", "w_het"} <= set(terms)
    assert all(np.isfinite(v) for v in terms.values())
    first = torch.load(os.path.join(fold, "checkpoint_final.pth"), map_location="cpu", weights_only=False)
    queue_1 = first["nnunet_weak_extra_state"]["memory_queue"]

    steps.train(TINY_ID, configuration, 0, trainer, {**env, "NNW_NUM_EPOCHS": "2"}, log, ["--c"])
    second = torch.load(os.path.join(fold, "checkpoint_final.pth"), map_location="cpu", weights_only=False)
    assert second["current_epoch"] == 2
    queue_2 = second["nnunet_weak_extra_state"]["memory_queue"]
    # resumed from the saved queue: the write pointers went on from where they were, and the slots nobody wrote
    # since still hold the first run's vectors (a fresh queue would be new random vectors). Whether a 2-step run
    # enqueues anything depends on the sampled scribbles reaching the stride-8 grid, so that is not asserted.
    for c in range(queue_1["ptr"].numel()):
        start, end = int(queue_1["ptr"][c]), int(queue_2["ptr"][c])
        assert end >= start
        untouched = [i for i in range(queue_1["queue"].shape[1]) if not start <= i < end]
        assert untouched and torch.equal(queue_1["queue"][c, untouched], queue_2["queue"][c, untouched])

    pred = str(tmp_path / "pred")
    steps.predict(os.path.join(raw, "imagesTs"), pred, TINY_ID, configuration, 0, trainer, env, log, ["--disable_tta"])
    assert sorted(f for f in os.listdir(pred) if f.endswith(".nii.gz")) == ["tiny_008.nii.gz", "tiny_009.nii.gz"]
