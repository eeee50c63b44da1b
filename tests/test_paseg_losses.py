"""PA-Seg regularisers: the multi-view gated CRF loss and the variance-minimisation loss against brute-force
references written with explicit loops over pixels and neighbours, plus invariants. Tensors are tiny."""
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nnunet_weak.losses.gated_crf import MultiViewGatedCRFLoss
from nnunet_weak.losses.variance import VarianceMinimisationLoss


# ---------------------------------------------------------------------------------------------- references
def crf_reference(probs, image, radius, sigma_rgb, sigma_xy, weight=1.0, views=(0, 1, 2), mask=None,
                  steps=(1.0, 1.0, 1.0)):
    """Loop over every voxel and every in-plane neighbour of every view (float64).

    probs (b, C, z, y, x), image (b, c, z, y, x), mask (b, z, y, x) of bools or None. Pairs leaving the volume or
    touching an invalid voxel are skipped; each view is normalised by the number of valid voxels."""
    probs = np.asarray(probs, dtype=np.float64)
    image = np.asarray(image, dtype=np.float64)
    b, _, *shape = probs.shape
    valid = np.ones([b] + shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    n_valid = valid.sum()
    per_view = []
    for a in views:
        u, v = [k for k in range(3) if k != a]
        total = 0.0
        for n in range(b):
            for i in itertools.product(*[range(s) for s in shape]):
                if not valid[(n,) + i]:
                    continue
                for du in range(-radius, radius + 1):
                    for dv in range(-radius, radius + 1):
                        if du == 0 and dv == 0:
                            continue
                        j = list(i)
                        j[u] += du
                        j[v] += dv
                        if any(c < 0 or c >= s for c, s in zip(j, shape)):
                            continue
                        j = tuple(j)
                        if not valid[(n,) + j]:
                            continue
                        pos = (du * steps[u]) ** 2 + (dv * steps[v]) ** 2
                        feat = 0.0
                        for ch in range(image.shape[1]):
                            feat += (image[(n, ch) + i] - image[(n, ch) + j]) ** 2
                        k = weight * math.exp(-pos / (2 * sigma_xy ** 2) - feat / (2 * sigma_rgb ** 2))
                        dot = 0.0
                        for c in range(probs.shape[1]):
                            dot += probs[(n, c) + i] * probs[(n, c) + j]
                        total += k * (1.0 - dot)
        per_view.append(total / max(n_valid, 1))
    return float(np.mean(per_view))


def vm_reference(probs, image, eps=1e-6, background="none", mask=None):
    """Loop over samples, classes, channels and voxels (float64). probs (b, C, *sp), image (b, c, *sp)."""
    probs = np.asarray(probs, dtype=np.float64)
    image = np.asarray(image, dtype=np.float64)
    b, n_classes = probs.shape[:2]
    voxels = list(itertools.product(*[range(s) for s in probs.shape[2:]]))
    total = 0.0
    for n in range(b):
        mins = [image[n, ch].min() for ch in range(image.shape[1])]
        for c in range(n_classes):
            w = {}
            for i in voxels:
                m = 1.0 if mask is None else float(mask[(n,) + i] != 0)
                if c == 0 and background == "min":
                    if all(image[(n, ch) + i] <= mins[ch] + 1e-5 for ch in range(image.shape[1])):
                        m = 0.0
                if c == 0 and background == "zero":
                    if all(image[(n, ch) + i] == 0 for ch in range(image.shape[1])):
                        m = 0.0
                w[i] = probs[(n, c) + i] * m
            size = sum(w.values()) + eps
            for ch in range(image.shape[1]):
                mu = sum(w[i] * image[(n, ch) + i] for i in voxels) / size
                total += sum(w[i] * (image[(n, ch) + i] - mu) ** 2 for i in voxels) / size
    return total / b


def _softmax_np(logits):
    return torch.softmax(logits.double(), dim=1).numpy()


# ---------------------------------------------------------------------------------------------- mCRF
@pytest.mark.parametrize("radius,sigma_rgb,sigma_xy,scale", [(2, 0.5, 1.5, 0.4), (5, 0.1, 6.0, 0.05)])
def test_crf_3d_matches_pair_loop(radius, sigma_rgb, sigma_xy, scale):
    torch.manual_seed(0)
    logits = torch.randn(1, 2, 3, 4, 5)
    image = torch.randn(1, 2, 3, 4, 5) * scale
    loss = MultiViewGatedCRFLoss(sigma_rgb=sigma_rgb, sigma_xy=sigma_xy, radius=radius, downsample=1)(logits, image)
    ref = crf_reference(_softmax_np(logits), image, radius, sigma_rgb, sigma_xy)
    assert ref > 1e-3
    assert loss.item() == pytest.approx(ref, rel=1e-5, abs=1e-7)


def test_crf_2d_matches_pair_loop():
    torch.manual_seed(1)
    logits = torch.randn(2, 3, 5, 6)
    image = torch.randn(2, 1, 5, 6) * 0.3
    loss = MultiViewGatedCRFLoss(sigma_rgb=0.4, sigma_xy=2.0, radius=2, weight=0.7)(logits, image)
    ref = crf_reference(_softmax_np(logits)[:, :, None], image.numpy()[:, :, None], 2, 0.4, 2.0, weight=0.7,
                        views=(0,))
    assert loss.item() == pytest.approx(ref, rel=1e-5)


@pytest.mark.parametrize("views", [(1,), (0, 2), (2, 1, 0)])
def test_crf_view_subsets(views):
    torch.manual_seed(2)
    logits = torch.randn(1, 2, 3, 4, 5)
    image = torch.randn(1, 1, 3, 4, 5) * 0.4
    loss = MultiViewGatedCRFLoss(sigma_rgb=0.5, sigma_xy=2.0, radius=2, downsample=1, views=views)(logits, image)
    ref = crf_reference(_softmax_np(logits), image, 2, 0.5, 2.0, views=views)
    assert loss.item() == pytest.approx(ref, rel=1e-5)


def test_crf_mask_channels_and_mm_spacing_match_pair_loop():
    torch.manual_seed(3)
    logits = torch.randn(2, 2, 3, 4, 5)
    image = torch.randn(2, 3, 3, 4, 5) * 0.4
    mask = torch.rand(2, 3, 4, 5) > 0.3
    spacing = (2.0, 0.5, 0.75)
    crf = MultiViewGatedCRFLoss(sigma_rgb=0.5, sigma_xy=1.5, radius=2, downsample=1, channels=[0, 2],
                                spacing=spacing, use_mm=True)
    loss = crf(logits, image, mask)
    ref = crf_reference(_softmax_np(logits), image[:, [0, 2]], 2, 0.5, 1.5, mask=mask.numpy(), steps=spacing)
    assert loss.item() == pytest.approx(ref, rel=1e-5)
    # a (b, 1, *spatial) mask is the same thing
    assert crf(logits, image, mask[:, None]).item() == pytest.approx(loss.item(), rel=1e-6)


def test_crf_downsampled_grid_matches_pair_loop_on_resampled_tensors():
    torch.manual_seed(4)
    logits = torch.randn(1, 2, 4, 6, 8)
    image = torch.randn(1, 1, 4, 6, 8) * 0.3
    crf = MultiViewGatedCRFLoss(sigma_rgb=0.5, sigma_xy=2.0, radius=2, downsample=(1, 2, 2))
    assert crf.grid_shape((4, 6, 8)) == (4, 3, 4)
    small_logits = F.interpolate(logits, size=(4, 3, 4), mode="trilinear", align_corners=True)
    small_image = F.interpolate(image, size=(4, 3, 4), mode="trilinear", align_corners=True)
    ref = crf_reference(_softmax_np(small_logits), small_image, 2, 0.5, 2.0)
    assert crf(logits, image).item() == pytest.approx(ref, rel=1e-5)


def test_crf_auto_downsampling_follows_spacing_and_patch_size():
    assert MultiViewGatedCRFLoss().factors((48, 128, 128)) == (2, 2, 2)
    vs = MultiViewGatedCRFLoss(spacing=(3.0, 0.5, 0.5))
    assert vs.factors((48, 128, 128)) == (1, 2, 2) and vs.grid_shape((48, 128, 128)) == (48, 64, 64)
    assert MultiViewGatedCRFLoss(spacing=(1.0, 1.0, 1.0)).grid_shape((128, 128, 128)) == (64, 64, 64)
    assert MultiViewGatedCRFLoss().factors((256, 256)) == (1, 1)
    assert MultiViewGatedCRFLoss().grid_shape((512, 384)) == (256, 192)
    assert MultiViewGatedCRFLoss(downsample=3).grid_shape((7, 2, 9)) == (2, 1, 3)


def test_crf_downsampling_changes_grid_and_stays_finite():
    torch.manual_seed(5)
    logits = torch.randn(1, 3, 6, 10, 12, requires_grad=True)
    image = torch.randn(1, 1, 6, 10, 12)
    values = []
    for factor in (1, 2, 3):
        crf = MultiViewGatedCRFLoss(downsample=factor)
        loss = crf(logits, image)
        (grad,) = torch.autograd.grad(loss, logits)
        assert torch.isfinite(loss) and torch.isfinite(grad).all() and grad.abs().sum() > 0
        values.append(loss.item())
    assert len(set(values)) == 3


def test_crf_zero_for_constant_one_hot_prediction():
    image = torch.randn(2, 1, 3, 5, 6)
    probs = torch.zeros(2, 3, 3, 5, 6)
    probs[:, 1] = 1.0
    assert MultiViewGatedCRFLoss(downsample=1, from_logits=False)(probs, image).item() == 0.0
    logits = torch.full((2, 3, 3, 5, 6), -30.0)
    logits[:, 2] = 30.0
    assert MultiViewGatedCRFLoss()(logits, image).item() < 1e-6
    assert MultiViewGatedCRFLoss()(logits[:, :, 0], image[:, :, 0]).item() < 1e-6


def test_crf_prefers_the_boundary_on_the_intensity_edge():
    image = torch.zeros(1, 1, 3, 8, 10)
    image[..., 5:] = 1.0  # two flat regions, edge between x=4 and x=5

    def loss_of(edge_at):
        logits = torch.full((1, 2, 3, 8, 10), -8.0)
        logits[:, 0, ..., :edge_at] = 8.0
        logits[:, 1, ..., edge_at:] = 8.0
        return MultiViewGatedCRFLoss(downsample=1)(logits, image).item()

    torch.manual_seed(6)
    random = MultiViewGatedCRFLoss(downsample=1)(torch.randn(1, 2, 3, 8, 10) * 3, image).item()
    on_edge, off_edge = loss_of(5), loss_of(3)
    assert on_edge < 1e-3 < off_edge < random


def test_crf_gradients_finite_and_fp32_for_half_logits():
    torch.manual_seed(7)
    logits = torch.randn(1, 2, 4, 6, 6).half().requires_grad_()
    image = torch.randn(1, 1, 4, 6, 6).half()
    loss = MultiViewGatedCRFLoss()(logits, image)
    assert loss.dtype == torch.float32
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad.float()).all()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert MultiViewGatedCRFLoss()(logits.detach().float(), image.float()).dtype == torch.float32


def test_crf_empty_mask_and_tiny_grid_give_zero_with_a_graph():
    logits = torch.randn(1, 2, 3, 4, 5, requires_grad=True)
    image = torch.randn(1, 1, 3, 4, 5)
    loss = MultiViewGatedCRFLoss(downsample=1)(logits, image, torch.zeros(1, 3, 4, 5))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(logits.grad).all()
    one_pixel = torch.randn(1, 2, 1, 1, requires_grad=True)
    assert MultiViewGatedCRFLoss()(one_pixel, torch.randn(1, 1, 1, 1)).item() == 0.0


def test_crf_rejects_bad_arguments():
    with pytest.raises(ValueError):
        MultiViewGatedCRFLoss(views=(3,))
    with pytest.raises(ValueError):
        MultiViewGatedCRFLoss(use_mm=True)
    with pytest.raises(ValueError):
        MultiViewGatedCRFLoss(downsample="half")
    with pytest.raises(ValueError):
        MultiViewGatedCRFLoss()(torch.randn(1, 2, 3, 4, 5), torch.randn(1, 1, 3, 4, 4))


# ---------------------------------------------------------------------------------------------- VM
@pytest.mark.parametrize("background", ["none", "min", "zero"])
def test_vm_matches_voxel_loop(background):
    torch.manual_seed(8)
    logits = torch.randn(2, 3, 3, 4, 5)
    image = torch.randn(2, 2, 3, 4, 5)
    image[:, :, 0, :2] = image.amin() - 1.0  # a flat "outside" region at the minimum of both channels
    image[:, :, 1, 0] = 0.0
    loss = VarianceMinimisationLoss(background_mask=background)(logits, image)
    ref = vm_reference(_softmax_np(logits), image, background=background)
    assert loss.item() == pytest.approx(ref, rel=1e-5)


def test_vm_2d_with_mask_and_channels_matches_voxel_loop():
    torch.manual_seed(9)
    logits = torch.randn(2, 2, 5, 6)
    image = torch.randn(2, 3, 5, 6)
    mask = torch.rand(2, 5, 6) > 0.4
    loss = VarianceMinimisationLoss(background_mask="none", channels=[1])(logits, image, mask)
    ref = vm_reference(_softmax_np(logits), image[:, [1]], mask=mask.numpy())
    assert loss.item() == pytest.approx(ref, rel=1e-5)


def test_vm_hand_computed_two_region_toy():
    image = torch.tensor([0.0, 0.0, 2.0, 4.0]).view(1, 1, 1, 4)
    probs = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]).view(1, 2, 1, 4)
    # background: both voxels at 0, variance 0; foreground: mean 3, variance ((2-3)^2 + (4-3)^2) / 2 = 1
    loss = VarianceMinimisationLoss(background_mask="none", from_logits=False)(probs, image)
    assert loss.item() == pytest.approx(1.0, rel=1e-5)


def test_vm_zero_for_uniform_regions():
    image = torch.zeros(1, 2, 3, 4, 5)
    image[:, 0, :, :, 2:] = 1.5
    image[:, 1, :, :, 2:] = -0.5
    image[:, :, :, :, 4:] = 3.0
    probs = torch.zeros(1, 3, 3, 4, 5)
    probs[:, 0, ..., :2] = 1
    probs[:, 1, ..., 2:4] = 1
    probs[:, 2, ..., 4:] = 1
    for background in ("none", "min", "zero"):
        loss = VarianceMinimisationLoss(background_mask=background, from_logits=False)(probs, image)
        assert abs(loss.item()) < 1e-6


def test_vm_absent_class_has_no_nan_and_finite_gradients():
    torch.manual_seed(10)
    logits = torch.randn(2, 3, 4, 5, 6)
    logits[:, 2] = -60.0  # class 2 absent from the whole patch
    logits.requires_grad_()
    image = torch.randn(2, 1, 4, 5, 6)
    loss = VarianceMinimisationLoss()(logits, image)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    probs = torch.zeros(1, 2, 4, 4)
    probs[:, 0] = 1.0  # exactly zero foreground
    probs.requires_grad_()
    loss = VarianceMinimisationLoss(from_logits=False)(probs, torch.randn(1, 1, 4, 4))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(probs.grad).all()


def test_vm_fp32_for_half_logits():
    logits = torch.randn(1, 2, 3, 4, 5).half()
    image = torch.randn(1, 1, 3, 4, 5).half()
    assert VarianceMinimisationLoss()(logits, image).dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert VarianceMinimisationLoss()(logits.float(), image.float()).dtype == torch.float32


def test_vm_rejects_bad_arguments():
    with pytest.raises(ValueError):
        VarianceMinimisationLoss(background_mask="otsu")
    with pytest.raises(ValueError):
        VarianceMinimisationLoss()(torch.randn(1, 2, 4, 4), torch.randn(1, 1, 4, 5))


def test_crf_pair_sum_gradient_matches_finite_differences():
    from nnunet_weak.losses.gated_crf import _PottsPairSum
    torch.manual_seed(11)
    probs = torch.softmax(torch.randn(2, 3, 2, 3, 4, dtype=torch.float64), dim=1).requires_grad_()
    feats = torch.randn(2, 2, 2, 3, 4, dtype=torch.float64)
    mask = (torch.rand(2, 1, 2, 3, 4) > 0.3).double()
    offsets = [((0, 1, 0), 0.8), ((0, 1, -2), 0.3), ((1, 0, 1), 1.5), ((0, 0, 3), 2.0)]
    for m in (None, mask):
        assert torch.autograd.gradcheck(lambda p: _PottsPairSum.apply(p, feats, m, offsets), (probs,))


def test_crf_custom_backward_equals_autograd_of_the_pair_loop():
    """The shifted-tensor autograd function's gradient against autograd through an explicit pair loop (2D)."""
    torch.manual_seed(0)
    b, c, h, w, r, s_xy, s_rgb = 2, 3, 7, 9, 2, 1.5, 0.5
    logits = torch.randn(b, c, h, w, dtype=torch.float64, requires_grad=True)
    image = torch.randn(b, 1, h, w, dtype=torch.float64)
    fast = logits.detach().float().requires_grad_()
    MultiViewGatedCRFLoss(sigma_rgb=s_rgb, sigma_xy=s_xy, radius=r, downsample=1)(fast, image.float()).backward()
    p = torch.softmax(logits, 1)
    total = 0
    for dy, dx in itertools.product(range(-r, r + 1), repeat=2):
        if dy == 0 and dx == 0:
            continue
        for i, j in itertools.product(range(h), range(w)):
            if 0 <= i + dy < h and 0 <= j + dx < w:
                k = torch.exp(-(dy * dy + dx * dx) / (2 * s_xy ** 2)
                              - ((image[:, :, i, j] - image[:, :, i + dy, j + dx]) ** 2).sum(1) / (2 * s_rgb ** 2))
                total = total + (k * (1 - (p[:, :, i, j] * p[:, :, i + dy, j + dx]).sum(1))).sum()
    (total / (b * h * w)).backward()
    assert torch.allclose(fast.grad.double(), logits.grad, atol=1e-7)


def test_vm_reference_classes_scales_the_class_sum():
    torch.manual_seed(0)
    logits, image = torch.randn(2, 4, 12, 12), torch.rand(2, 1, 12, 12)
    plain = VarianceMinimisationLoss()(logits, image)
    assert VarianceMinimisationLoss(reference_classes=2)(logits, image).item() == pytest.approx(plain.item() / 2)
    binary = torch.randn(2, 2, 12, 12)
    assert VarianceMinimisationLoss(reference_classes=2)(binary, image).item() == \
        pytest.approx(VarianceMinimisationLoss()(binary, image).item())
    with pytest.raises(ValueError, match="reference_classes"):
        VarianceMinimisationLoss(reference_classes=0)


def test_paseg_crf_kernel_is_physical_in_3d():
    """ACDC-like 3D spacing (10 mm slices, 1.5 mm in plane): in plane the kernel equals the spec's 6 pixels of the
    2x grid; along the slices voxels 50 mm apart no longer get weight 0.7 (pixel units) but almost none."""
    from nnunet_weak.training.paseg import paseg_crf
    crf = paseg_crf((10.0, 1.5, 1.5))
    shape = (8, 64, 64)
    grid = crf.grid_shape(shape)
    assert grid == (8, 32, 32) and crf.use_mm
    steps = crf._steps(3, shape, grid)

    def weight(offset_px, axis):
        return math.exp(-(offset_px * steps[axis]) ** 2 / (2 * crf.sigma_xy ** 2))
    in_plane_spec = [math.exp(-k ** 2 / (2 * 6.0 ** 2)) for k in range(1, 6)]
    assert [weight(k, 2) for k in range(1, 6)] == pytest.approx(in_plane_spec, rel=0.05)  # (n-1)/(m-1) steps
    assert math.exp(-5 ** 2 / (2 * 6.0 ** 2)) > 0.7 and weight(5, 0) < 0.05
    flat = paseg_crf((1.5, 1.5))
    assert not flat.use_mm and flat.sigma_xy == 6.0
