"""The mode-collapse lab's toy 2-D data sets, the MLP and the mode metrics (issue 14)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import tiny_fit
from ganforge.data.toy import MIXTURES, sample_points, toy_splits
from ganforge.errors import ConfigError
from ganforge.metrics.modes import ModeTable, kl_from_uniform, mode_metrics
from ganforge.train import validate


def table(name: str) -> ModeTable:
    mix = MIXTURES[name]
    return ModeTable(np.asarray(mix.centres, np.float64), mix.std)


def at_modes(t: ModeTable, per_mode: dict[int, int], jitter: bool = False, seed: int = 0) -> np.ndarray:
    """Hand-placed points [N, 2, 1, 1]: per_mode[k] points at mode k's centre; with jitter, anywhere in the
    square of +-2 std around it (all within 3 std: at most 2.83 std from the centre)."""
    rng = np.random.default_rng(seed)
    xy = np.concatenate([np.zeros((0, 2))]
                        + [np.repeat(t.centres[k][None], n, 0) for k, n in per_mode.items()])
    if jitter:
        xy = xy + rng.uniform(-2 * t.std, 2 * t.std, xy.shape)
    return xy.astype(np.float32).reshape(-1, 2, 1, 1)


def test_mixtures_are_the_published_ones():
    ring, grid = MIXTURES["ring8"], MIXTURES["grid25"]
    assert len(ring.centres) == 8 and ring.std == 0.02
    assert np.allclose(np.linalg.norm(ring.centres, axis=1), 2.0)
    assert len(grid.centres) == 25 and grid.std == 0.05
    assert sorted({x for x, _ in grid.centres}) == [-4, -2, 0, 2, 4]


def test_points_come_from_the_seed_and_their_labelled_mode():
    x, y = sample_points("ring8", 4000, seed=3, split="train")
    x2, y2 = sample_points("ring8", 4000, seed=3, split="train")
    assert x.dtype == np.float32 and x.shape == (4000, 2, 1, 1) and y.dtype == np.int64
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert not np.array_equal(x, sample_points("ring8", 4000, seed=4, split="train")[0])
    assert not np.array_equal(x, sample_points("ring8", 4000, seed=3, split="test")[0])
    t = table("ring8")
    modes = t.assign(x)
    assert ((modes == y) | (modes == -1)).all()  # a point is never near a mode it was not drawn from
    # in 2-D, P(|x - centre| > 3 std) = exp(-9/2) = 1.1%: the high-quality share of real data
    assert abs((modes == -1).mean() - math.exp(-4.5)) < 0.005
    offsets = x.reshape(-1, 2) - t.centres[y]
    assert abs(offsets.std() - 0.02) < 0.002 and np.bincount(y).min() > 400  # modes drawn uniformly


def test_toy_splits_info_has_the_mode_table():
    splits, info = toy_splits("grid25", seed=0)
    assert len(splits["train"][0]) == 100_000 and len(splits["test"][0]) == 10_000
    assert len(info["centres"]) == 25 and info["std"] == 0.05 and len(info["classes"]) == 25
    assert ModeTable.of(info).centres.shape == (25, 2)


@pytest.mark.parametrize("k", [0, 1, 5, 8])
def test_hand_placed_samples_cover_exactly_k_modes(k):
    t = table("ring8")
    covered = at_modes(t, {m: 20 for m in range(k)}, jitter=True)
    short = at_modes(t, {m: 19 for m in range(k, 8)})  # one sample short of min_count at the other modes
    far = np.full((30, 2, 1, 1), 0.5, np.float32)  # at the ring's centre: near no mode
    m = mode_metrics(t.assign(np.concatenate([covered, short, far])), 8, min_count=20)
    assert m["modes_covered"] == k and m["modes_total"] == 8
    assert m["high_quality"] == pytest.approx((20 * k + 19 * (8 - k)) / (20 * k + 19 * (8 - k) + 30))


def test_three_sigma_boundary():
    t = table("grid25")
    centre = t.centres[7]
    inside = centre + [2.99 * t.std, 0.0]
    outside = centre + [0.0, 3.01 * t.std]
    assert list(t.assign(np.array([inside, outside]))) == [7, -1]


def test_kl_of_known_histograms():
    assert kl_from_uniform(np.array([5, 5, 5, 5])) == pytest.approx(0.0)
    # q = (3/4, 1/4) against (1/2, 1/2): 3/4 log(3/2) + 1/4 log(1/2)
    assert kl_from_uniform(np.array([3, 1])) == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5))
    assert kl_from_uniform(np.array([0, 7, 0, 0, 0])) == pytest.approx(math.log(5))
    assert kl_from_uniform(np.array([0, 0, 0])) == pytest.approx(math.log(3))  # no sample: as one mode


def test_one_mode_generator_is_reported_as_collapsed():
    """A generator whose every sample lands on one mode: 1 mode, KL = log K (the metric can fail)."""
    for name in ("ring8", "grid25"):
        t = table(name)
        k = len(t.centres)
        m = mode_metrics(t.assign(at_modes(t, {3: 2500}, jitter=True)), k, min_count=20)
        assert m["modes_covered"] == 1 and m["high_quality"] == 1.0
        assert m["mode_kl"] == pytest.approx(math.log(k)) and m["mode_kl"] > 2
    # and the real data, judged the same way, cover all modes with a KL near 0
    x, _ = sample_points("grid25", 2500, seed=0, split="test")
    m = mode_metrics(table("grid25").assign(x), 25, min_count=20)
    assert m["modes_covered"] == 25 and m["high_quality"] > 0.98 and m["mode_kl"] < 0.02


@pytest.mark.parametrize("arch, g_hidden, d_hidden", [("mlp", 2, 1), ("mlp-pacgan", 4, 3),
                                                      ("mlp-pacgan-paper", 4, 3)])
def test_mlp_trains_on_points_and_records_itself(arch, g_hidden, d_hidden, tmp_path):
    from torch import nn

    from ganforge.nets import architecture_name, build_networks, load_generator, save_generator

    x, _ = sample_points("ring8", 2048, seed=0, split="train")
    result = tiny_fit(x, overrides={"train.arch": arch, "train.z_dim": 8, "train.g_channels": 16,
                                    "train.d_channels": 16, "train.batch_size": 64, "train.kimg": 0.64,
                                    "train.image_every": 5})
    z = torch.randn(5, 8)
    out = result.ema(z)
    assert out.shape == (5, 2, 1, 1) and result.step == 10
    assert result.grid.shape == (256, 256, 3)  # 2-D data: the plane picture replaces the image grid
    assert architecture_name(result.nets["G"]) == arch
    # the entry's depths (Metz et al.; PacGAN): hidden layers + the output layer
    G, D = build_networks(arch, z_dim=8, channels=2, resolution=1, g_channels=16, d_channels=16,
                          g_spectral_norm=False, d_spectral_norm=False)
    linear = [sum(isinstance(m, nn.Linear) for m in net.modules()) for net in (G, D)]
    assert linear == [g_hidden + 1, d_hidden + 1]
    # the PacGAN authors' G normalises each hidden layer and their D is maxout; the others are plain ReLU
    pacgan = arch == "mlp-pacgan-paper"
    assert sum(isinstance(m, nn.BatchNorm1d) for m in G.modules()) == (g_hidden if pacgan else 0)
    assert sum(isinstance(m, nn.ReLU) for m in D.modules()) == (0 if pacgan else d_hidden)
    # the generator file rebuilds the same architecture, drawing the same points
    save_generator(tmp_path / "g.pt", result.ema, meta={"dataset": "ring8"})
    G2, _ = load_generator(tmp_path / "g.pt")
    assert architecture_name(G2) == arch and torch.equal(G2.eval()(z), out)


def params_for(dataset: str, arch: str, **train_overrides):
    import yaml

    from conftest import ROOT, TEST_BASELINE, apply_overrides
    from ganforge.config import parse_params

    raw = apply_overrides(yaml.safe_load((ROOT / "params.yaml").read_text()), TEST_BASELINE)
    raw["base"]["dataset"], raw["train"]["arch"] = dataset, arch
    raw["train"].update(train_overrides)
    return parse_params(raw, sections=("base", "train"))


# info.json of each kind of data set, as run.validate reads it (the shape and the classes)
RING8 = {"shape": [2, 1, 1], "classes": [str(k) for k in range(8)]}
MNIST = {"shape": [1, 28, 28], "classes": [str(c) for c in range(10)]}


def test_toy_data_with_a_cnn_or_mlp_on_images_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"train\.arch: .*'dcgan' models images.*2-D points.*use mlp"):
        validate(params_for("ring8", "dcgan"), RING8, 1)
    with pytest.raises(ConfigError, match=r"train\.arch: .*'mlp' models points.*28 px .*dcgan or resnet"):
        validate(params_for("mnist", "mlp"), MNIST, 1)
    with pytest.raises(ConfigError, match=r"train\.augment"):
        validate(params_for("ring8", "mlp", augment="translation"), RING8, 1)
    with pytest.raises(ConfigError, match=r"train\.eval\.every_kimg: .*ring8"):  # no CNN judge: no FID
        validate(params_for("ring8", "mlp", eval={"every_kimg": 5, "n": 2000}), RING8, 1)
    assert validate(params_for("ring8", "mlp"), RING8, 1) == []  # accepted, without a warning


def test_toy_dataset_names_are_params_values():
    assert params_for("grid25", "mlp").base.dataset == "grid25"
    with pytest.raises(ConfigError, match=r"base\.dataset: unknown dataset 'ring9' \(allowed: .*ring8"):
        params_for("ring9", "mlp")


def test_maxout_is_the_largest_of_its_linear_pieces():
    from ganforge.nets.mlp import Maxout

    torch.manual_seed(0)
    layer = Maxout(3, width=4, pieces=5)
    x = torch.randn(7, 3)
    pieces = (x @ layer.linear.weight.T + layer.linear.bias).reshape(7, 4, 5)  # unit u: rows 5u..5u+4
    expected = torch.stack([pieces[:, u, :].max(1).values for u in range(4)], 1)
    assert torch.allclose(layer(x), expected)
    # each output depends on its own row only (R1/GP and packing need per-sample D outputs)
    assert torch.allclose(layer(x[2:3]), layer(x)[2:3], atol=1e-6)
