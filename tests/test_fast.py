"""The fast-path switch (ganforge.train.fast): bf16 autocast on CPUs with native bf16, plain fp32 elsewhere
and with fast: off; on CUDA, the same algorithm, faster.

The CPU tests run everywhere: GANFORGE_CPU_BF16 (a real environment setting, not a mock) makes the bf16 path
run on a CPU without native bf16 (emulated, slower) and the fallback run on one with it, so both kinds of
CPU are tested on whichever machine runs the tests. The CUDA test runs only where a GPU is visible
(bench/gpu_check.sh runs it on the GPU machine): it checks that the step really is captured and replayed,
and that the bf16 graph-replayed run follows the eager fp32 one.
"""

import contextlib
import logging
import platform
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_fit, tiny_params
from ganforge.data.prepared import load_split
from ganforge.errors import ConfigError, GanforgeError
from ganforge.nets import Discriminator, Generator
from ganforge.train import trajectory_config
from ganforge.train.checkpoint import load_checkpoint
from ganforge.train.fast import CPU_BF16_ENV, FastPath, cpu_bf16_supported

# tiny but real: conftest.TINY's 8/8-channel DCGAN, batch 32, here 12 steps on real MNIST (train.fast set by
# each test); dotted params keys
TINY = {"train.kimg": 0.384, "train.log_every": 4, "train.image_every": 6, "train.ckpt_every": 6}

ABSURD_LR = {"train.g.lr": 3e8, "train.d.lr": 3e8}  # weights overflow within a few steps (test_train_loop.py)


def fit(x_train, overrides: dict, **engine):
    """conftest.tiny_fit over TINY."""
    return tiny_fit(x_train, overrides={**TINY, **overrides}, **engine)


def config_of(overrides: dict, device: str = "cpu") -> dict:
    """The trajectory config a fit(overrides=...) run writes into its checkpoints."""
    return trajectory_config(tiny_params({**TINY, **overrides}), "tiny", torch.device(device))


def finite(state: dict) -> bool:
    return all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def state_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def conv_weights_channels_last(*nets: torch.nn.Module) -> bool:
    return all(p.is_contiguous(memory_format=torch.channels_last)
               for net in nets for p in net.parameters() if p.dim() == 4)


def fast_said(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "ganforge.train.fast"]


def curve(result) -> np.ndarray:  # [rows, 2]: (loss_d, loss_g) means of each report interval
    return np.array([[r["loss_d"], r["loss_g"]] for r in result.history])


def test_cpu_choices_off_is_plain_fp32_auto_is_bf16_only_where_the_cpu_has_it(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="ganforge.train.fast")

    def train_step():
        pass

    for fast, env in (("off", "1"), ("auto", "0"), ("auto", "1")):
        monkeypatch.setenv(CPU_BF16_ENV, env)
        caplog.clear()
        fp = FastPath.choose(fast, torch.device("cpu"))
        # no CUDA graph and no fused Adam on the CPU, whatever the mode
        assert not fp.enabled and fp.adam_options == {} and fp.step(train_step, [], []) is train_step
        assert fp.channels_last  # oneDNN's faster layout, in both modes
        G, D = Generator(16, 1, 28, 8, False), Discriminator(1, 28, 8, False)
        fp.prepare(G, D)
        assert conv_weights_channels_last(G, D)
        with fp.autocast():
            x = G(torch.randn(4, 16))  # [4, 1, 28, 28]
        if fast == "auto" and env == "1":
            assert fp.bf16 and x.dtype == torch.bfloat16  # the forward pass really ran in bf16
            assert fast_said(caplog) == []
        else:
            assert not fp.bf16 and isinstance(fp.autocast(), contextlib.nullcontext)
            assert x.dtype == torch.float32
            # off is silent; auto on a CPU without bf16 says once that it trains in fp32
            fallback = "train.fast: auto: this CPU has no native bf16 (avx512_bf16 or AMX); training in fp32"
            assert fast_said(caplog) == ([] if fast == "off" else [fallback])
        assert all(p.dtype == torch.float32 for p in (*G.parameters(), *D.parameters()))  # master weights

    monkeypatch.setenv(CPU_BF16_ENV, "yes")
    with pytest.raises(ConfigError, match="GANFORGE_CPU_BF16='yes': use 1 .* or 0"):
        FastPath.choose("auto", "cpu")
    with pytest.raises(ConfigError, match="unknown train.fast 'turbo' .*allowed: auto, off"):
        FastPath.choose("turbo", "cpu")


@pytest.mark.skipif(platform.system() != "Linux" or platform.machine() != "x86_64",
                    reason="compares with the x86 flags Linux lists in /proc/cpuinfo")
def test_bf16_detection_agrees_with_the_kernels_cpu_flags(monkeypatch):
    monkeypatch.delenv(CPU_BF16_ENV, raising=False)
    flags = set(re.search(r"^flags\s*:(.*)$", Path("/proc/cpuinfo").read_text(), re.M).group(1).split())
    assert cpu_bf16_supported() == bool(flags & {"avx512_bf16", "amx_bf16"})


@pytest.fixture(scope="module")
def x_train(tiny_mnist_dir):
    return load_split(tiny_mnist_dir, "train")[0][:512]  # uint8 [512, 1, 28, 28]


def test_fast_off_and_auto_without_bf16_are_the_same_fp32_computation(x_train, monkeypatch, tmp_path):
    monkeypatch.setenv(CPU_BF16_ENV, "0")  # a CPU without native bf16: auto falls back to plain fp32
    auto = fit(x_train, {"train.fast": "auto"}, checkpoint_path=tmp_path / "auto.pt")
    off = fit(x_train, {"train.fast": "off"}, checkpoint_path=tmp_path / "off.pt")
    assert state_equal(auto.nets["G"], off.nets["G"]) and state_equal(auto.ema, off.ema)
    assert state_equal(auto.nets["D"], off.nets["D"])
    for key in ("step", "loss_d", "loss_g", "d_real", "d_fake"):
        assert [r[key] for r in auto.history] == [r[key] for r in off.history]
    assert np.array_equal(auto.grid, off.grid)
    assert conv_weights_channels_last(auto.nets["G"], off.nets["G"])
    assert all(p.dtype == torch.float32 for p in auto.nets["G"].parameters())


def test_cpu_bf16_follows_the_fp32_run_within_the_seed_to_seed_spread(x_train, monkeypatch):
    # 120 steps of the tiny DCGAN, reported every 10 (12 rows of loss means)
    run = {"train.kimg": 120 * 32 / 1000, "train.log_every": 10, "train.image_every": 1000,
           "train.ckpt_every": 1000}
    monkeypatch.setenv(CPU_BF16_ENV, "1")
    bf16 = fit(x_train, {**run, "train.fast": "auto"})
    fp32 = fit(x_train, {**run, "train.fast": "off"})
    other_seed = fit(x_train, {**run, "train.fast": "off", "base.seed": 1})
    # Stated tolerance, as on CUDA: bf16 rounding makes a GAN's trajectory drift slowly from the fp32 run of
    # the same seed; it may drift no further than two fp32 runs of different seeds are apart.
    deviation = np.abs(curve(bf16) - curve(fp32)).mean()
    seed_noise = np.abs(curve(other_seed) - curve(fp32)).mean()
    assert np.isfinite(curve(bf16)).all() and bf16.step == fp32.step == 120
    assert deviation <= 1.5 * seed_noise + 0.05, (deviation, seed_noise)
    assert deviation > 0  # autocast did change the computation (else this test would test nothing)
    assert all(0 < r["d_real"] < 1 and 0 < r["d_fake"] < 1 for r in bf16.history)
    # fp32 master weights; BatchNorm's running statistics and G_ema stay fp32 (and finite) under autocast
    for net in (bf16.nets["G"], bf16.ema):
        state = net.state_dict()
        assert all(v.dtype == torch.float32 and torch.isfinite(v).all()
                   for v in state.values() if v.is_floating_point())
        assert any(k.endswith("running_var") for k in state)


def test_cpu_bf16_resumes_bit_for_bit(x_train, monkeypatch, tmp_path):
    monkeypatch.setenv(CPU_BF16_ENV, "1")
    run = {"train.kimg": 0.64, "train.fast": "auto"}  # 20 steps: in one go, and as 12 + a resumed 8
    full = fit(x_train, run)
    ckpt_path = tmp_path / "train.pt"
    fit(x_train, {**run, "train.kimg": 0.384}, checkpoint_path=ckpt_path)
    ckpt = load_checkpoint(ckpt_path, config_of(run))
    assert ckpt["step"] == 12
    resumed = fit(x_train, run, checkpoint_path=ckpt_path, resume=ckpt)
    assert state_equal(full.nets["G"], resumed.nets["G"]) and state_equal(full.ema, resumed.ema)
    assert state_equal(full.nets["D"], resumed.nets["D"])
    for key in ("step", "loss_d", "loss_g", "d_real", "d_fake"):
        assert [r[key] for r in full.history] == [r[key] for r in resumed.history]


def test_cpu_bf16_divergence_is_caught_and_the_checkpoint_is_finite(x_train, monkeypatch, tmp_path):
    # the divergence watch reads fp32 losses and fp32 weights, also when the forward passes are bf16
    monkeypatch.setenv(CPU_BF16_ENV, "1")
    ckpt_path = tmp_path / "train.pt"
    absurd = {**ABSURD_LR, "train.fast": "auto", "train.kimg": 3.2, "train.ckpt_every": 1,
              "train.log_every": 1000}
    with pytest.raises(GanforgeError, match=r"diverged at step \d+: loss_d=.*, loss_g=.*") as e:
        fit(x_train, absurd, checkpoint_path=ckpt_path)
    bad_step = int(re.search(r"diverged at step (\d+)", str(e.value)).group(1))
    ckpt = load_checkpoint(ckpt_path, config_of(absurd))
    assert ckpt["step"] == bad_step - 1
    assert all(finite(state) for state in (ckpt["nets"]["G"], ckpt["nets"]["D"], ckpt["ema"]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run bench/gpu_check.sh there)")
def test_cuda_fast_path_is_captured_and_follows_the_eager_fp32_run(tiny_mnist_dir, caplog):
    # The default 28x28 DCGAN at batch 128 for 200 steps, reported every 10 steps (20 rows of losses).
    x_train = load_split(tiny_mnist_dir, "train")[0]
    run = {"train.z_dim": 100, "train.g_channels": 64, "train.d_channels": 64, "train.batch_size": 128,
           "train.kimg": 200 * 128 / 1000, "train.log_every": 10, "train.image_every": 1000,
           "train.ckpt_every": 1000, "train.device": "cuda"}
    caplog.set_level(logging.INFO, logger="ganforge.train.fast")
    fast = fit(x_train, {**run, "train.fast": "auto"})
    said = [r.getMessage() for r in caplog.records if r.name == "ganforge.train.fast"]
    assert any("captured as a CUDA graph" in line for line in said), said  # replayed, not the fallback
    assert all(p.dtype == torch.float32 for p in fast.nets["G"].parameters())  # fp32 master weights (bf16)
    eager = fit(x_train, {**run, "train.fast": "off"})
    other_seed = fit(x_train, {**run, "train.fast": "off", "base.seed": 1})

    # Stated tolerance: the fast path may drift from the eager run of the same seed (bf16 rounding makes
    # a GAN's trajectory diverge slowly) by no more than eager runs of two seeds differ from each other.
    deviation = np.abs(curve(fast) - curve(eager)).mean()
    seed_noise = np.abs(curve(other_seed) - curve(eager)).mean()
    assert np.isfinite(curve(fast)).all()
    assert deviation <= 1.5 * seed_noise + 0.05, (deviation, seed_noise)
    assert fast.step == eager.step == 200
