"""Adaptive discriminator augmentation (ganforge/ada.py) and limited-data runs (train.limit_images).

The pipeline: the identity at p = 0, exactly; each transform keeps the image's range and mean where it
should; gradients reach the input (to second order: R1 through the augmentation). The controller: p rises
while D's sign statistic is above the target and falls below it (a hand-made D chooses the outputs). In
training: p is a stat of the report, and a run cut in half and resumed is bit for bit the run in one go.
Bad settings exit 2 naming the key; the first N images change the data hash."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import yaml

from conftest import ROOT, copy_params, set_params, tiny_fit, tiny_params
from ganforge.ada import GROUPS, TRANSFORMS, AdaptiveAugment, _affine, _rotation_inv, parse_transforms
from ganforge.errors import ConfigError

ALL = parse_transforms("blit+geom+color")


def ada(transforms=ALL, p=1.0, **kw) -> AdaptiveAugment:
    settings = {"p_init": p, "target": 0.6, "speed_kimg": 1.0, "interval": 1, "batch_size": 32, **kw}
    return AdaptiveAugment(tuple(transforms), **settings)


def images(channels: int, n: int = 64, side: int = 16, seed: int = 0) -> torch.Tensor:
    """[n, C, side, side] in [-1, 1], each image its own mean."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, channels, side, side, generator=g) * 2 - 1).clamp(-1, 1)


def run(aug: AdaptiveAugment, x: torch.Tensor, seed: int = 1) -> torch.Tensor:
    return aug(x, torch.Generator().manual_seed(seed))


def per_image(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1)


# --- the pipeline ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("channels", [1, 3])
def test_p_zero_is_the_identity_exactly(channels):
    x = images(channels).requires_grad_(True)
    y = run(ada(ALL, p=0.0), x)
    assert torch.equal(y, x)
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))  # and its gradient is the identity's


def test_transform_names_groups_and_order():
    assert parse_transforms("color+xflip") == ("xflip", "brightness", "contrast", "lumaflip", "hue",
                                               "saturation")
    assert parse_transforms("blit, geom") == GROUPS["blit"] + GROUPS["geom"]
    assert ALL == TRANSFORMS
    for bad in ("zoom", "", "xflip+"):
        with pytest.raises(ConfigError, match="transform"):
            parse_transforms(bad)


@pytest.mark.parametrize("name", ["xflip", "rotate90"])
def test_flips_and_quarter_turns_rearrange_each_images_pixels(name):
    """The same multiset of values per image: mean and range exactly kept; and some images moved."""
    x = images(3)
    y = run(ada([name]), x)
    assert torch.equal(per_image(y).sort(dim=1).values, per_image(x).sort(dim=1).values)
    assert (per_image(y) != per_image(x)).any(dim=1).float().mean() > 0.3


def test_integer_translation_reads_only_the_images_own_pixels():
    x = images(1)
    y = run(ada(["xint"]), x)
    assert all(torch.isin(y[i], x[i]).all() for i in range(len(x)))  # reflection: no new values, no zeros
    assert (per_image(y) != per_image(x)).any(dim=1).float().mean() > 0.5


@pytest.mark.parametrize("name", GROUPS["geom"])
def test_general_geometry_stays_within_each_images_range(name):
    """Bilinear resampling with reflection is a convex combination of the image's own pixels."""
    x = images(3)
    y = run(ada([name]), x)
    lo, hi = per_image(x).min(1).values, per_image(x).max(1).values
    assert (per_image(y).min(1).values >= lo - 1e-6).all() and (per_image(y).max(1).values <= hi + 1e-6).all()
    assert (per_image(y) != per_image(x)).any(dim=1).all()  # p = 1: every image is moved


def test_the_resampler_agrees_with_exact_pixel_moves():
    """A quarter turn and a 2-pixel shift through the bilinear path equal torch.rot90 and the reflected
    integer shift (the coordinate convention: pixels from the image centre, reflection about edge pixels)."""
    x = images(1, n=2, side=8)
    zero, one = torch.zeros(2), torch.ones(2)
    turned = AdaptiveAugment._resample(x, _rotation_inv(torch.full((2,), math.pi / 2)))
    torch.testing.assert_close(turned, torch.rot90(x, -1, dims=(2, 3)), atol=1e-6, rtol=0)
    shifted = AdaptiveAugment._resample(x, _affine(one, zero, zero, one, -2 * one, zero))  # 2 px right
    torch.testing.assert_close(shifted[..., 2:], x[..., :-2], atol=1e-6, rtol=0)
    torch.testing.assert_close(shifted[..., :2], x[..., [2, 1]], atol=1e-6, rtol=0)  # mirrored in


def test_brightness_offsets_have_zero_mean_and_contrast_scales_about_grey():
    x = images(1, n=4096, side=4)
    offset = run(ada(["brightness"]), x) - x  # one offset per image
    assert torch.allclose(offset, offset[:, :, :1, :1].expand_as(offset), atol=1e-6)
    assert abs(offset.mean().item()) < 4 * 0.2 / math.sqrt(len(x))  # the mean is kept in expectation
    assert abs(offset[:, 0, 0, 0].std().item() - 0.2) < 0.02
    factor = run(ada(["contrast"]), x) / x  # one factor per image, about 0 (grey): signs kept
    assert torch.allclose(factor, factor[:, :, :1, :1].expand_as(factor), rtol=1e-4)
    log2 = factor[:, 0, 0, 0].log2()
    assert (factor > 0).all() and abs(log2.mean().item()) < 4 * 0.5 / math.sqrt(len(x))


def test_luma_flip_hue_and_saturation():
    grey = images(1)
    flipped = run(ada(["lumaflip"]), grey)  # grey: x -> -x for about half the images, range [-1, 1] kept
    same, negated = [((flipped - s).abs() < 1e-6).flatten(1).all(1) for s in (grey, -grey)]
    assert (same | negated).all() and 0.3 < negated.float().mean() < 0.7
    assert torch.equal(run(ada(["hue", "saturation"]), grey), grey)  # nothing to turn on one channel
    rgb = images(3)
    luma = rgb.mean(dim=1)  # [B, H, W]: the pixels' grey levels
    for name in ("hue", "saturation"):  # both act off the luma axis: every pixel keeps its grey level
        y = run(ada([name]), rgb)
        torch.testing.assert_close(y.mean(dim=1), luma, atol=1e-5, rtol=0)
        assert not torch.allclose(y, rgb, atol=1e-3)
    chroma = (rgb - luma[:, None]).square().sum(1)  # a hue rotation keeps each pixel's distance from grey
    turned = run(ada(["hue"]), rgb)
    torch.testing.assert_close((turned - turned.mean(1, keepdim=True)).square().sum(1), chroma, atol=1e-5,
                               rtol=1e-5)


def test_gradients_reach_the_input_to_second_order():
    """<dL/dx, d> equals the change of L along d (the pipeline is affine in x for drawn parameters), and a
    gradient penalty through it (R1 on augmented reals) has a gradient of its own."""
    x, d = images(3, n=8), images(3, n=8, seed=5)
    w = images(3, n=8, seed=6)
    aug = ada(ALL, p=0.8)
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad((run(aug, xg) * w).sum(), xg)
    change = ((run(aug, x + d) - run(aug, x)) * w).sum()
    torch.testing.assert_close((grad * d).sum(), change, rtol=1e-3, atol=1e-3)
    # second order: a penalty on the input gradient of a D behind the pipeline
    D = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Softplus(), torch.nn.Flatten(),
                            torch.nn.LazyLinear(1))
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(D(run(aug, xg)).sum(), xg, create_graph=True)
    g.square().sum().backward()
    assert D[0].weight.grad.abs().sum() > 0 and D[3].weight.grad.abs().sum() > 0


# --- the controller ----------------------------------------------------------------------------------------

class HandMadeD(torch.nn.Module):
    """D whose output on every image is the sign we choose: +1 for the first `share` of the batch, -1 else."""

    def __init__(self, share: float):
        super().__init__()
        self.share = share

    def forward(self, x):
        out = -torch.ones(len(x))
        out[: round(self.share * len(x))] = 1
        return out


@pytest.mark.parametrize("share,direction", [(1.0, 1), (0.9, 1), (0.8, 0), (0.5, -1), (0.0, -1)])
def test_the_controller_moves_p_toward_the_target(share, direction):
    """r_t = 2 * share - 1 against the target 0.6: above raises p, below lowers it, on target keeps it; by
    batch * interval / (speed_kimg * 1000) per interval, clamped to [0, 1]."""
    aug = ada(["xflip"], p=0.5, interval=4, speed_kimg=0.64)  # adjust = 32 * 4 / 640 = 0.2 per 4 steps
    D, x = HandMadeD(share), images(1, n=20)
    trace = []
    for _ in range(16):
        out = D(run(aug, x))
        aug.observe(out.sign().mean())
        aug.step()
        trace.append(aug.p.item())
    moves = [trace[i] - trace[i - 1] for i in range(1, 16)]
    assert all(m == 0 for i, m in enumerate(moves, start=1) if (i + 1) % 4)  # only every interval steps
    expected = [min(max(0.5 + direction * 0.2 * (k + 1), 0), 1) for k in range(4)]
    assert trace[3::4] == pytest.approx(expected, abs=1e-6)
    assert 0 <= min(trace) and max(trace) <= 1


def test_training_reports_p_and_follows_the_rule(tiny_x):
    """In a real run (every loss's D phase feeds it): the report's ada_p follows r_t, step by step."""
    over = {"train.ada.enabled": True, "train.ada.p_init": 0.5, "train.ada.interval": 1,
            "train.ada.speed_kimg": 0.32, "train.log_every": 1}  # adjust = 32 / 320 = 0.1 per step
    r = tiny_fit(tiny_x, overrides=over)
    assert "ada_p" in r.history[0] and "ada_rt" in r.history[0]
    for before, after in zip(r.history, r.history[1:], strict=False):
        step = 0.1 * np.sign(before["ada_rt"] - 0.6)
        assert after["ada_p"] == pytest.approx(min(max(before["ada_p"] + step, 0), 1), abs=1e-6)


# --- checkpoints -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_x() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (256, 1, 28, 28), dtype=np.uint8)


def states_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_resume_mid_ada_is_bit_for_bit(tiny_x, tmp_path):
    """10 steps in one go vs 5, a checkpoint, and a resume to 10: the same p, controller sums, weights and
    report. p moves (interval 2), the cut falls mid-interval, and lazy R1 differentiates through T_p."""
    from ganforge.train import trajectory_config
    from ganforge.train.checkpoint import load_checkpoint

    over = {"train.ada.enabled": True, "train.ada.p_init": 0.4, "train.ada.interval": 2,
            "train.ada.speed_kimg": 0.5, "train.reg.kind": "r1", "train.reg.every": 2, "train.log_every": 1}
    full = tiny_fit(tiny_x, overrides=over)
    ckpt_path = tmp_path / "train.pt"
    tiny_fit(tiny_x, overrides={**over, "train.kimg": 0.16}, checkpoint_path=ckpt_path)  # 5 steps
    config = trajectory_config(tiny_params(over), "tiny", torch.device("cpu"))
    ckpt = load_checkpoint(ckpt_path, config, say=lambda _: None)
    assert ckpt["step"] == 5 and set(ckpt["nets"]["ada"]) == {"p", "sign_sum", "sign_count", "steps"}
    assert ckpt["nets"]["ada"]["sign_count"] == 1  # mid-interval: one step of r_t's sum is in the file
    resumed = tiny_fit(tiny_x, overrides=over, checkpoint_path=ckpt_path, resume=ckpt)
    for name in ("G", "D", "ada"):
        assert states_equal(full.nets[name], resumed.nets[name]), name
    assert states_equal(full.ema, resumed.ema)
    strip = [{k: v for k, v in row.items() if k != "img_per_s"} for row in full.history]
    assert strip == [{k: v for k, v in row.items() if k != "img_per_s"} for row in resumed.history]
    assert len({row["ada_p"] for row in full.history}) > 2  # p did move


# --- validation and limited data ---------------------------------------------------------------------------

@pytest.mark.parametrize("key,value,message", [
    ("target", 1.0, "train.ada.target: Input should be less than 1"),
    ("target", 0.0, "train.ada.target: Input should be greater than 0"),
    ("interval", 0, "train.ada.interval: Input should be greater than or equal to 1"),
    ("p_init", 1.5, "train.ada.p_init: Input should be less than or equal to 1"),
    ("speed_kimg", 0, "train.ada.speed_kimg: Input should be greater than 0"),
    ("transforms", "xflip+zoom", "train.ada.transforms: unknown transform 'zoom'"),
    ("transforms", "", "train.ada.transforms: no transforms given"),
])
def test_invalid_ada_settings_are_named(key, value, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        tiny_params({f"train.ada.{key}": value})


@pytest.fixture(scope="module")
def fake_mnist(tmp_path_factory):
    """A prepared 'mnist' of 64 random train images (the stage only checks names and shapes)."""
    from ganforge.data.prepared import write_prepared

    out = tmp_path_factory.mktemp("data") / "mnist"
    x = np.random.default_rng(1).integers(0, 256, (64, 1, 28, 28), dtype=np.uint8)
    y = np.arange(64) % 10
    info = write_prepared(out, {"train": (x, y), "test": (x[:16], y[:16])},
                          {"name": "mnist", "classes": [str(i) for i in range(10)]})
    return out, info


def test_bad_ada_settings_exit_2_before_training(tmp_path, fake_mnist, monkeypatch):
    """The train stage's real Typer app, in this process (CliRunner: no fresh interpreter's imports)."""
    import importlib.util

    from typer.testing import CliRunner

    params = copy_params(tmp_path / "params.yaml")
    set_params(params, {"train.device": "cpu", "train.ada.target": 1.5, "train.ada.transforms": "blit+zoom"})
    spec = importlib.util.spec_from_file_location("train_stage", ROOT / "stages" / "train.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(stage.app, ["--params", str(params), "--data", str(fake_mnist[0])])
    assert result.exit_code == 2, result.output
    for message in ("train.ada.target: Input should be less than 1",
                    "train.ada.transforms: unknown transform 'zoom'"):
        assert message in result.stderr, result.output
    assert not (tmp_path / "results").exists() and not (tmp_path / "checkpoints").exists()


def test_ada_on_points_and_a_limit_beyond_the_data_are_refused(fake_mnist):
    from ganforge.train import validate

    info = fake_mnist[1]
    validate(tiny_params({"train.limit_images": 64, "train.ada.enabled": True}), info, 1)  # all 64: fine
    with pytest.raises(ConfigError, match="train.limit_images: 100 is more than the 64 images of mnist's"):
        validate(tiny_params({"train.limit_images": 100}), info, 1)
    points = tiny_params({"base.dataset": "ring8", "train.arch": "mlp", "train.ada.enabled": True})
    with pytest.raises(ConfigError, match="train.ada: adaptive augmentation transforms images"):
        validate(points, {"shape": [2, 1, 1], "classes": [], "counts": {"train": 100}}, 1)


def test_the_first_n_images_are_their_own_data_hash(fake_mnist, tmp_path):
    """A checkpoint of the full data is never resumed on the first N images: the data hash (MLflow's tag,
    the generator file's and the checkpoint config's) differs, and the checkpoint is refused."""
    from ganforge.data.prepared import content_hash
    from ganforge.train import trajectory_config
    from ganforge.train.checkpoint import load_checkpoint, save_checkpoint
    from ganforge.train.run import training_data_hash

    info = fake_mnist[1]
    full, first32, first16 = (training_data_hash(info, n) for n in (None, 32, 16))
    assert full == content_hash(info) and len({full, first32, first16}) == 3
    assert training_data_hash(info, 32) == first32  # reproducible
    path = tmp_path / "train.pt"
    save_checkpoint(path, {"step": 3, "config": trajectory_config(tiny_params(), full, torch.device("cpu"))})
    small = trajectory_config(tiny_params({"train.limit_images": 32}), first32, torch.device("cpu"))
    said = []
    assert load_checkpoint(path, small, say=said.append) is None
    assert "data_hash" in said[0] and "train.limit_images" in said[0]


def test_the_small_data_ada_recipe_is_small_data_with_ada_instead_of_diffaugment():
    from ganforge.config import parse_params

    def merged(recipe):
        raw = yaml.safe_load((ROOT / "params.yaml").read_text())
        return parse_params({**raw, "recipe": recipe}, ROOT / "params.yaml").model_dump()

    ada_run, diffaug = merged("small-data-ada"), merged("small-data")
    assert ada_run["train"]["ada"]["enabled"] and ada_run["train"]["augment"] == ""
    assert not diffaug["train"]["ada"]["enabled"] and diffaug["train"]["augment"]
    for section in ("evaluator", "evaluate"):
        assert ada_run[section] == diffaug[section]
    strip = ("ada", "augment")
    assert {k: v for k, v in ada_run["train"].items() if k not in strip} == \
        {k: v for k, v in diffaug["train"].items() if k not in strip}
