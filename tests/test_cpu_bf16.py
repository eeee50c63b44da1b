"""The CPU fast path (bf16 autocast): capability check, the switch, where it is taken and where not, precision of
the bf16 forward, float32 losses, the hooks that give nnUNetv2_predict the same path, and the CUDA path left as
nnU-Net has it."""
import pytest
import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet

from conftest import TINY_ID
from nnunet_weak.utilities import cpu_bf16
from nnunet_weak.utilities.errors import NNWError


def small_unet(deep_supervision=False):
    return PlainConvUNet(1, 4, [8, 16, 32, 64], torch.nn.Conv2d, 3, [1, 2, 2, 2], 2, 4, [2, 2, 2], False,
                         torch.nn.InstanceNorm2d, {"eps": 1e-5, "affine": True}, None, None, torch.nn.LeakyReLU,
                         {"inplace": True}, deep_supervision=deep_supervision)


@pytest.fixture
def native(monkeypatch):
    """Ask for the fast path (NNW_CPU_BF16=1) and pretend the CPU has (name) or lacks (None) native bf16."""
    def set_native(name):
        monkeypatch.setattr(cpu_bf16, "native_bf16_instructions", lambda *a, **k: name)
    monkeypatch.setenv(cpu_bf16.VARIABLE, "1")
    return set_native


def test_capability_read_from_cpu_flags(tmp_path):
    def flags(text):
        path = tmp_path / "cpuinfo"
        path.write_text(f"processor\t: 0\nflags\t\t: {text}\n\nprocessor\t: 1\nflags\t\t: {text}\n")
        cpu_bf16.native_bf16_instructions.cache_clear()
        return cpu_bf16.native_bf16_instructions(str(path))
    assert flags("fpu sse2 avx512f avx512_bf16 amx_tile amx_bf16") == "AMX-BF16"
    assert flags("fpu sse2 avx512f avx512_bf16") == "AVX512-BF16"
    assert flags("fpu sse2 avx2 avx512f avx512bw") is None       # bf16 only emulated: stay in fp32
    cpu_bf16.native_bf16_instructions.cache_clear()
    assert cpu_bf16.native_bf16_instructions(str(tmp_path / "absent")) is None
    cpu_bf16.native_bf16_instructions.cache_clear()


def test_switch_off_by_default_on_when_asked_where_native(native, monkeypatch):
    native("AMX-BF16")
    assert cpu_bf16.cpu_bf16_enabled() and "AMX-BF16" in cpu_bf16.describe()
    for off in ("0", ""):
        monkeypatch.setenv(cpu_bf16.VARIABLE, off)
        assert not cpu_bf16.cpu_bf16_enabled() and "off" in cpu_bf16.describe()
    monkeypatch.delenv(cpu_bf16.VARIABLE)
    assert not cpu_bf16.cpu_bf16_enabled()                        # default: nnU-Net's fp32 path
    monkeypatch.setenv(cpu_bf16.VARIABLE, "1")
    native(None)
    assert not cpu_bf16.cpu_bf16_enabled() and "no native bf16" in cpu_bf16.describe()   # emulated: stay fp32
    monkeypatch.setenv(cpu_bf16.VARIABLE, "fast")
    with pytest.raises(NNWError, match="NNW_CPU_BF16"):
        cpu_bf16.cpu_bf16_enabled()


def test_three_d_networks_stay_float32(native, monkeypatch):
    """oneDNN's bf16 Conv3d backward aborts the process on nnU-Net-sized 3D shapes (torch 2.13): 3D is never
    switched to bf16, not even with NNW_CPU_BF16=1 on a CPU with native bf16."""
    native("AMX-BF16")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    net3d = PlainConvUNet(1, 2, [8, 16], torch.nn.Conv3d, 3, [1, 2], 1, 3, [1], False, torch.nn.InstanceNorm3d,
                          {"eps": 1e-5, "affine": True}, None, None, torch.nn.LeakyReLU, {"inplace": True})
    assert not cpu_bf16.cpu_bf16_enabled(3) and cpu_bf16.cpu_bf16_enabled(2)
    assert not cpu_bf16.has_inference_hooks(cpu_bf16.install_inference_hooks(net3d))
    assert "Conv3d backward" in cpu_bf16.describe(3)


@pytest.mark.filterwarnings("ignore:CUDA is not available")
def test_autocast_context_per_device():
    cpu = cpu_bf16.autocast(torch.device("cpu"), True)
    assert isinstance(cpu, torch.autocast) and cpu.device == "cpu" and cpu.fast_dtype == torch.bfloat16
    assert not isinstance(cpu_bf16.autocast(torch.device("cpu"), False), torch.autocast)
    # CUDA keeps nnU-Net's own autocast (fp16), whatever the CPU setting says
    cuda = cpu_bf16.autocast(torch.device("cuda"), True)
    assert isinstance(cuda, torch.autocast) and cuda.device == "cuda" and cuda.fast_dtype == torch.float16
    assert not isinstance(cpu_bf16.autocast(torch.device("mps"), True), torch.autocast)


def test_bf16_forward_close_to_fp32():
    """bf16 keeps 8 significand bits: each of the ~12 convolutions rounds its inputs and weights with a relative
    error up to 2^-9 (accumulation stays in float32), and InstanceNorm re-normalises after each. Measured on this
    network: softmax differs by <= 0.008, logits by <= 0.04 at a logit std of ~0.5. The bounds below are about 4x
    that, far below what would change a segmentation, yet a broken cast (e.g. fp16 overflow, a missing float32
    output, wrong weights) fails them."""
    torch.manual_seed(0)
    net = small_unet().eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        reference = net(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = net(x)
    assert fast.dtype == torch.bfloat16
    fast = fast.float()
    assert (reference.softmax(1) - fast.softmax(1)).abs().max() < 0.03
    assert (reference - fast).abs().max() < 0.15 * reference.std()
    assert (reference.argmax(1) == fast.argmax(1)).float().mean() > 0.97


def test_inference_hooks_bf16_inside_float32_out_state_dict_unchanged(native, monkeypatch):
    native("AMX-BF16")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    torch.manual_seed(0)
    plain = small_unet(deep_supervision=True)
    hooked = cpu_bf16.install_inference_hooks(small_unet(deep_supervision=True))
    assert cpu_bf16.has_inference_hooks(hooked) and not cpu_bf16.has_inference_hooks(plain)
    hooked.load_state_dict(plain.state_dict(), strict=True)
    assert list(hooked.state_dict()) == list(plain.state_dict())
    seen = []
    hooked.encoder.register_forward_hook(lambda m, a, o: seen.append(torch.is_autocast_enabled("cpu")))
    x = torch.randn(2, 1, 32, 32)
    out = hooked(x)
    assert seen == [True] and not torch.is_autocast_enabled("cpu")     # on inside, off again after
    assert isinstance(out, list) and all(o.dtype == torch.float32 for o in out)
    with torch.no_grad():
        ref = plain(x)
    assert (ref[0].softmax(1) - out[0].detach().softmax(1)).abs().max() < 0.03
    # a tensor on another device (meta stands in for CUDA here) passes untouched
    seen.clear()
    hooked.to("meta")(torch.empty(2, 1, 32, 32, device="meta"))
    assert seen == [False]


def test_hooks_not_installed_when_off_or_cuda_visible(native, monkeypatch):
    native(None)
    assert not cpu_bf16.has_inference_hooks(cpu_bf16.install_inference_hooks(small_unet()))
    native("AVX512-BF16")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    # a process that sees a GPU builds nnU-Net's exact network (prediction on CUDA unchanged) ...
    assert not cpu_bf16.has_inference_hooks(cpu_bf16.install_inference_hooks(small_unet()))
    # ... unless a trainer runs with -device cpu there
    assert cpu_bf16.has_inference_hooks(cpu_bf16.install_inference_hooks(small_unet(), on_cpu=True))


def test_hook_leaves_autocast_after_an_exception(native, monkeypatch):
    native("AMX-BF16")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    net = cpu_bf16.install_inference_hooks(small_unet())
    with pytest.raises(RuntimeError):
        net(torch.randn(2, 3, 32, 32))   # wrong channel count
    assert not torch.is_autocast_enabled("cpu")


def test_float32_loss_sees_float32_with_autocast_off():
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
    from nnunet_weak.training.loss_factory import float32_loss

    class Probe(torch.nn.Module):
        def forward(self, x, y):
            assert x.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")
            return (x.softmax(1) * y).sum()

    wrapped = float32_loss(DeepSupervisionWrapper(Probe(), [1.0, 0.5]))
    assert isinstance(wrapped, DeepSupervisionWrapper) and isinstance(wrapped.loss, cpu_bf16.Float32Loss)
    assert float32_loss(wrapped).loss is wrapped.loss                  # idempotent
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x = [torch.randn(2, 3, 4, 4).bfloat16(), torch.randn(2, 3, 2, 2).bfloat16()]
        y = [torch.ones(2, 3, 4, 4), torch.ones(2, 3, 2, 2)]
        value = wrapped(x, y)
    assert value.dtype == torch.float32


def make_trainer(name, device="cpu"):
    from nnunetv2.run.run_training import get_trainer_from_args
    return get_trainer_from_args(str(TINY_ID), "2d", 0, name, device=torch.device(device))


@pytest.mark.parametrize("name", ["nnUNetTrainerBudget", "nnUNetTrainerPCE"])
def test_trainer_takes_fast_path_where_supported(use_env, native, monkeypatch, name):
    native("AMX-BF16")
    trainer = make_trainer(name)
    trainer.initialize()
    assert trainer.cpu_bf16 and trainer.precision == "bf16 autocast (CPU)"
    assert cpu_bf16.has_inference_hooks(trainer.network)
    loss = trainer.loss
    assert isinstance(getattr(loss, "loss", loss), cpu_bf16.Float32Loss)
    native(None)
    trainer = make_trainer(name)
    trainer.initialize()
    assert not trainer.cpu_bf16 and trainer.precision == "fp32"
    assert not cpu_bf16.has_inference_hooks(trainer.network)
    assert not isinstance(getattr(trainer.loss, "loss", trainer.loss), cpu_bf16.Float32Loss)


def test_trainer_step_on_fast_path_runs_bf16_convolutions(use_env, native):
    native("AMX-BF16")
    trainer = make_trainer("nnUNetTrainerPCE")
    trainer.initialize()
    dtypes = []
    first_conv = next(m for m in trainer.network.modules() if isinstance(m, torch.nn.Conv2d))
    first_conv.register_forward_hook(lambda m, a, o: dtypes.append(o.dtype))
    loader, _ = trainer.get_dataloaders()
    trainer.on_train_epoch_start()
    out = trainer.train_step(next(loader))
    assert dtypes == [torch.bfloat16] and torch.isfinite(torch.as_tensor(out["loss"]))
    assert trainer._loader_wait >= 0.0


def test_a_trainer_the_fast_path_hurts_trains_in_float32_and_predicts_on_it(use_env, native):
    native("AMX-BF16")
    trainer = make_trainer("nnUNetTrainerPCLMix_noContrast")
    trainer.initialize()
    assert not trainer.cpu_bf16 and trainer.precision == "fp32"
    assert not isinstance(getattr(trainer.loss, "loss", trainer.loss), cpu_bf16.Float32Loss)
    dtypes = []
    first_conv = next(m for m in trainer.network.modules() if isinstance(m, torch.nn.Conv2d))
    first_conv.register_forward_hook(lambda m, a, o: dtypes.append(o.dtype))
    loader, _ = trainer.get_dataloaders()
    trainer.on_train_epoch_start()
    trainer.train_step(next(loader))
    trainer.network(torch.randn(2, 1, *trainer.configuration_manager.patch_size))  # the builder's hooks: off
    assert dtypes and set(dtypes) == {torch.float32}
    log = open(trainer.log_file).read()
    assert "CPU fast path off for nnUNetTrainerPCLMix_noContrast" in log
    # what nnUNetv2_predict rebuilds still computes in bf16
    predicting = type(trainer).build_network_architecture(
        trainer.plans_manager, trainer.configuration_manager, 1, trainer.label_manager.num_segmentation_heads, False)
    assert cpu_bf16.has_inference_hooks(predicting)
    seen = []
    next(m for m in predicting.modules() if isinstance(m, torch.nn.Conv2d)).register_forward_hook(
        lambda m, a, o: seen.append(o.dtype))
    with torch.no_grad():
        predicting.eval()(torch.randn(1, 1, *trainer.configuration_manager.patch_size))
    assert seen == [torch.bfloat16]


def test_depthwise_conv3d_trains_under_bf16_autocast_where_onednn_crashed():
    """oneDNN's bf16 channels-last depthwise 3D backward segfaulted for this shape (torch 2.13); UX-Net's blocks
    keep that convolution in float32. Run in a child process: a crash must fail this test, not end the session."""
    import subprocess
    import sys
    code = ("import torch\n"
            "from nnunet_weak.networks.blocks import DepthwiseConv3d\n"
            "torch.manual_seed(0)\n"
            "m = DepthwiseConv3d(32, 32, 7, padding=3, groups=32)\n"
            "x = torch.randn(2, 32, 4, 12, 12, requires_grad=True)\n"
            "with torch.autocast('cpu', dtype=torch.bfloat16):\n"
            "    y = m(x)\n"
            "assert y.dtype == torch.float32\n"
            "y.sum().backward()\n"
            "ref = torch.nn.functional.conv3d(x, m.weight, m.bias, padding=3, groups=32)\n"
            "assert torch.allclose(y, ref, atol=1e-4)\n"
            "print('ok')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-500:]


@pytest.mark.parametrize("name", ["nnUNetTrainerBudget", "nnUNetTrainerPCE", "nnUNetTrainerPASegAux",
                                  "nnUNetTrainerPCLMix", "nnUNetTrainerKMaX_lite"])
def test_inference_contract_on_the_fast_path(use_env, native, name):
    """What nnUNetv2_predict rebuilds computes in bf16 like the trainer's network (every build_network_architecture
    override installs the hooks) and loads strictly."""
    from nnunet_weak.training.contract import check_inference_contract
    native("AMX-BF16")
    trainer = make_trainer(name)
    assert trainer.cpu_bf16 == (type(trainer).cpu_bf16_refused is None)   # PCLMix trains in fp32, predicts in bf16
    check_inference_contract(trainer)
