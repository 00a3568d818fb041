"""PacGAN packing and the minibatch-stddev feature on D's input (nets/packing.py), with every loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import tiny_fit, tiny_params
from ganforge.config import Train
from ganforge.data.toy import sample_points
from ganforge.errors import ConfigError
from ganforge.losses import LOSSES
from ganforge.nets.packing import check_batch, input_channels, minibatch_stddev, pack_input
from ganforge.train import trajectory_config, validate

MNIST = {"shape": [1, 28, 28], "classes": [str(c) for c in range(10)]}  # info.json of the tests' params


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
    with pytest.raises(ConfigError, match=r"train\.pack: 3 does not divide the 64 samples per process"):
        check_batch(64, 3, 0)
    with pytest.raises(ConfigError, match=r"train\.mbstd_group: 3 does not divide the 16 inputs"):
        check_batch(64, 4, 3)
    # the train stage's check (run.validate), per process: each rank packs its share of the batch
    tiles = tiny_params({"train.batch_size": 64, "train.pack": 4, "train.mbstd_group": 8})
    assert validate(tiles, MNIST, 1) == [] and validate(tiles, MNIST, 2) == []
    with pytest.raises(ConfigError, match=r"train\.pack: 3 does not divide the 64 samples per process"):
        validate(tiny_params({"train.batch_size": 64, "train.pack": 3}), MNIST, 1)
    with pytest.raises(ConfigError, match=r"train\.pack: 64 does not divide the 32 samples per process"):
        validate(tiny_params({"train.batch_size": 64, "train.pack": 64}), MNIST, 2)  # 64 would tile 1 process
    with pytest.raises(ConfigError, match=r"train\.mbstd_group: 3 does not divide the 16 inputs"):
        validate(tiny_params({"train.batch_size": 64, "train.pack": 4, "train.mbstd_group": 3}), MNIST, 1)


def test_packing_with_conditional_training_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"train\.pack: PacGAN packing does not combine with "
                                          r"train\.conditional"):
        validate(tiny_params({"train.conditional": True, "train.pack": 2}), MNIST, 1)


TOY = {"train.arch": "mlp", "train.z_dim": 8, "train.g_channels": 16, "train.d_channels": 16,
       "train.batch_size": 32, "train.kimg": 0.32}  # 10 steps


@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("reg", ["none", "r1", "gp", "r1+r2"])
def test_every_loss_trains_with_packing_and_minibatch_stddev(loss, reg):
    x, _ = sample_points("grid25", 1024, seed=0, split="train")
    result = tiny_fit(x, overrides={**TOY, "train.loss": loss, "train.reg.kind": reg, "train.pack": 4,
                                    "train.mbstd_group": 2, "train.image_every": 100})
    assert result.step == 10 and all(np.isfinite(r["loss_d"]) for r in result.history)


def test_packed_dcgan_on_images():
    """The same options on images: D gets pack * C + 1 input channels and trains."""
    images = np.random.default_rng(0).integers(0, 256, (64, 1, 28, 28), dtype=np.uint8)
    result = tiny_fit(images, overrides={"train.kimg": 0.096, "train.pack": 2, "train.mbstd_group": 4})
    assert result.step == 3 and np.isfinite(result.history[-1]["loss_d"])
    assert result.nets["D"].config()["channels"] == input_channels(1, 2, 4) == 3


def test_packing_changes_the_trajectory_and_the_checkpoint_config():
    x, _ = sample_points("ring8", 1024, seed=0, split="train")
    plain, packed = tiny_fit(x, overrides=TOY), tiny_fit(x, overrides={**TOY, "train.pack": 2})
    z = torch.randn(4, 8)
    assert not torch.equal(plain.nets["G"](z), packed.nets["G"](z))

    def config(overrides):
        return trajectory_config(tiny_params({**TOY, **overrides}), "toy", torch.device("cpu"))

    # a checkpoint of one is not resumed by the other: both keys are part of the trajectory
    assert not {"pack", "mbstd_group"} & set(Train.NOT_TRAJECTORY)
    assert config({}) != config({"train.pack": 2}) and config({}) != config({"train.mbstd_group": 2})
