"""The fast-path switch (ganforge.train.fast): a clean no-op off CUDA; on CUDA, the same algorithm, faster.

The CPU tests run everywhere. The CUDA test runs only where a GPU is visible (bench/gpu_check.sh runs it on
the GPU machine): it checks that the step really is captured and replayed, and that the bf16 graph-replayed
run follows the eager fp32 one.
"""

import contextlib
import logging

import numpy as np
import pytest
import torch

from conftest import tiny_train_kwargs
from ganforge.data.prepared import load_split
from ganforge.errors import ConfigError
from ganforge.nets import Discriminator, Generator
from ganforge.train import train
from ganforge.train.fast import FastPath

# tiny but real: 8/8-channel DCGAN, batch 32, 12 steps on real MNIST (fast set by each test)
TINY = {k: v for k, v in tiny_train_kwargs(kimg=0.384, log_every=4, image_every=6, ckpt_every=6).items()
        if k != "fast"}


def state_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_off_cuda_the_fast_path_is_disabled_and_every_helper_is_the_identity():
    for fast, device in (("auto", "cpu"), ("off", "cpu"), ("auto", torch.device("cpu"))):
        fp = FastPath.choose(fast, device)
        assert not fp.enabled
        assert fp.adam_options == {}
        assert isinstance(fp.autocast(), contextlib.nullcontext)

        def train_step():
            pass

        assert fp.step(train_step, [], []) is train_step  # the loop calls its own step, no wrapper
        # the one thing shared with the fast path on the CPU, in both modes: channels_last networks
        assert fp.channels_last
        G, D = Generator(16, 1, 28, 8, False), Discriminator(1, 28, 8, False)
        fp.prepare(G, D)
        convs = [p for p in (*G.parameters(), *D.parameters()) if p.dim() == 4]
        assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    with pytest.raises(ConfigError, match="unknown train.fast 'turbo' .*allowed: auto, off"):
        FastPath.choose("turbo", "cpu")


def test_fast_auto_on_cpu_trains_exactly_like_fast_off(tiny_mnist_dir, tmp_path):
    x_train = load_split(tiny_mnist_dir, "train")[0][:512]  # uint8 [512, 1, 28, 28]
    auto = train(x_train, **TINY, fast="auto", checkpoint_path=tmp_path / "auto.pt")
    off = train(x_train, **TINY, fast="off", checkpoint_path=tmp_path / "off.pt")
    assert state_equal(auto.G, off.G) and state_equal(auto.G_ema, off.G_ema)
    for key in ("step", "loss_d", "loss_g", "d_real", "d_fake"):
        assert [r[key] for r in auto.history] == [r[key] for r in off.history]
    assert np.array_equal(auto.grid, off.grid)
    # on the CPU both modes use channels_last (oneDNN's faster layout): the same computation bit for bit
    assert all(p.is_contiguous(memory_format=torch.channels_last)
               for m in (auto.G, off.G) for p in m.parameters() if p.dim() == 4)
    assert all(p.dtype == torch.float32 for p in auto.G.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run bench/gpu_check.sh there)")
def test_cuda_fast_path_is_captured_and_follows_the_eager_fp32_run(tiny_mnist_dir, caplog):
    # The default 28x28 DCGAN at batch 128 for 200 steps, reported every 10 steps (20 rows of losses).
    x_train = load_split(tiny_mnist_dir, "train")[0]
    run = dict(TINY, z_dim=100, g_channels=64, d_channels=64, batch_size=128, kimg=200 * 128 / 1000,
               log_every=10, image_every=1000, ckpt_every=1000, device="cuda")
    caplog.set_level(logging.INFO, logger="ganforge.train.fast")
    fast = train(x_train, **run, fast="auto")
    said = [r.getMessage() for r in caplog.records if r.name == "ganforge.train.fast"]
    assert any("captured as a CUDA graph" in line for line in said), said  # replayed, not the fallback
    assert all(p.dtype == torch.float32 for p in fast.G.parameters())  # fp32 master weights under bf16
    eager = train(x_train, **run, fast="off")
    other_seed = train(x_train, **{**run, "seed": 1}, fast="off")

    def curve(result):  # [20, 2]: (loss_d, loss_g) means of each 10-step interval
        return np.array([[r["loss_d"], r["loss_g"]] for r in result.history])

    # Stated tolerance: the fast path may drift from the eager run of the same seed (bf16 rounding makes
    # a GAN's trajectory diverge slowly) by no more than eager runs of two seeds differ from each other.
    deviation = np.abs(curve(fast) - curve(eager)).mean()
    seed_noise = np.abs(curve(other_seed) - curve(eager)).mean()
    assert np.isfinite(curve(fast)).all()
    assert deviation <= 1.5 * seed_noise + 0.05, (deviation, seed_noise)
    assert fast.step == eager.step == 200
