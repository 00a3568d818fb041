"""PacGAN packing and the minibatch-stddev feature on D's input (nets/packing.py), with every loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import tiny_train_kwargs
from ganforge.data.toy import sample_points
from ganforge.errors import ConfigError
from ganforge.losses import LOSSES
from ganforge.nets.packing import check_batch, input_channels, minibatch_stddev, pack_input
from ganforge.train import train


def test_packing_concatenates_consecutive_samples_along_channels():
    x = torch.arange(8 * 2, dtype=torch.float32).reshape(8, 2, 1, 1)
    packed = pack_input(x, pack=4, mbstd_group=0)
    assert packed.shape == (2, 8, 1, 1) and input_channels(2, 4, 0) == 8
    for i in range(2):
        for j in range(4):  # sample j of pack i sits in channels 2j, 2j+1
            assert torch.equal(packed[i, 2 * j : 2 * j + 2], x[4 * i + j])
    images = torch.randn(6, 3, 4, 4)
    assert torch.equal(pack_input(images, 3, 0)[1, 3:6], images[4])


def test_minibatch_stddev_is_the_groups_mean_std():
    a, b = torch.zeros(1, 2, 3, 3), torch.full((1, 2, 3, 3), 4.0)
    x = torch.cat([a, b, a, a])  # group 1: {0, 4} -> std 2 everywhere; group 2: identical -> 0
    s = minibatch_stddev(x, group=2)
    assert s.shape == (4, 1, 3, 3)
    assert torch.allclose(s[:2], torch.full((2, 1, 3, 3), 2.0)) and s[2:].abs().max() < 1e-3
    out = pack_input(x, 1, 2)
    assert out.shape == (4, 3, 3, 3) and torch.equal(out[:, :2], x) and input_channels(2, 1, 2) == 3


def test_packs_and_groups_must_tile_the_batch():
    check_batch(64, 4, 8)
    with pytest.raises(ConfigError, match=r"train\.pack: 3 does not divide train\.batch_size 64"):
        check_batch(64, 3, 0)
    with pytest.raises(ConfigError, match=r"train\.mbstd_group: 3 does not divide the 16 inputs"):
        check_batch(64, 4, 3)


@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("reg", ["none", "r1", "gp"])
def test_every_loss_trains_with_packing_and_minibatch_stddev(loss, reg):
    x, _ = sample_points("grid25", 1024, seed=0, split="train")
    result = train(x, **tiny_train_kwargs(arch="mlp", z_dim=8, g_channels=16, d_channels=16, batch_size=32,
                                          kimg=0.32, loss=loss, reg=reg, pack=4, mbstd_group=2,
                                          image_every=100))
    assert result.step == 10 and all(np.isfinite(r["loss_d"]) for r in result.history)


def test_packed_dcgan_on_images():
    """The same options on images: D gets pack * C + 1 input channels and trains."""
    images = np.random.default_rng(0).integers(0, 256, (64, 1, 28, 28), dtype=np.uint8)
    result = train(images, **tiny_train_kwargs(kimg=0.096, pack=2, mbstd_group=4))
    assert result.step == 3 and np.isfinite(result.history[-1]["loss_d"])


def test_packing_changes_the_trajectory_and_the_checkpoint_config():
    x, _ = sample_points("ring8", 1024, seed=0, split="train")
    kw = dict(arch="mlp", z_dim=8, g_channels=16, d_channels=16, batch_size=32, kimg=0.32)
    plain, packed = train(x, **tiny_train_kwargs(**kw)), train(x, **tiny_train_kwargs(**kw, pack=2))
    z = torch.randn(4, 8)
    assert not torch.equal(plain.G(z), packed.G(z))
    from ganforge.train.loop import TRAJECTORY_KEYS

    assert {"pack", "mbstd_group"} <= set(TRAJECTORY_KEYS)
