"""The generator as a prior: projector, masks, inpainting, stroke measures and the stages' bad input.

The projector and the inpainting invariants run on tiny random-weight generators (what they promise holds
for any G); the measures on hand-drawn strokes of known thickness, slant and width; the stages through the
real CLI. A whole tiny invert -> inpaint -> edit run on real MNIST is part of tests/test_pipeline.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, copy_params, set_params
from ganforge.invert import masks as M
from ganforge.invert.edit import fit_direction, monotone
from ganforge.invert.inpaint import biharmonic, compose, nearest
from ganforge.invert.morpho import measure
from ganforge.invert.projector import project
from ganforge.invert.scores import psnr
from ganforge.nets import Generator, init_dcgan_weights, save_generator
from ganforge.sampling import latents, to_uint8


def tiny_g(num_classes: int = 0, seed: int = 0) -> Generator:
    """A random DCGAN whose images vary: BatchNorm statistics calibrated on a batch, and the last layer
    scaled so that its pixels spread over [-1, 1] (at init they are all near 0)."""
    torch.manual_seed(seed)
    G = Generator(z_dim=8, channels=1, resolution=28, g_channels=8, spectral_norm=False,
                  num_classes=num_classes)
    init_dcgan_weights(G)
    last = [m for m in G.modules() if isinstance(m, torch.nn.ConvTranspose2d | torch.nn.Conv2d)][-1]
    z = torch.randn(512, 8)
    y = torch.randint(0, num_classes, (512,)) if num_classes else None

    def run():
        return G(z, y) if num_classes else G(z)

    with torch.no_grad():
        for m in G.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None  # the exact mean over the calibration pass
        G.train()
        run()
        G.eval()
        last.weight.mul_(0.6 / run().atanh().std())
    return G


def settings(**kw):
    base = dict(steps=300, lr=0.1, lr_rampup=0.05, lr_rampdown=0.25, noise=0.05, noise_ramp=0.5,
                perceptual=0.0, prior=0.0, judge=None, seed=7, batch_size=8)
    return {**base, **kw}


def test_the_projector_recovers_a_latent_it_generated():
    G = tiny_g()
    z_true = latents(1000, 8, 8)
    with torch.no_grad():
        target = to_uint8(G(z_true)).numpy()
    P = project(G, target, None, **settings())  # starts from latents(7 + i): far from z_true
    start_err = ((to_uint8(G(latents(7, 8, 8))).numpy().astype(float) - target) ** 2).mean()
    err = ((P.images.astype(float) - target) ** 2).mean()
    assert err < start_err / 50 and psnr(P.images, target).mean() > 35, (start_err, err)
    # deterministic from its seed, and independent of the batch it shares
    again = project(G, target[:3], None, **settings(batch_size=3))
    np.testing.assert_allclose(again.z, P.z[:3], atol=1e-4)


def test_a_conditional_projection_finds_the_class_it_generated():
    G = tiny_g(num_classes=4, seed=1)
    y = np.array([0, 1, 2, 3, 3, 2])
    with torch.no_grad():
        target = to_uint8(G(latents(50, 6, 8), torch.as_tensor(y))).numpy()
    P = project(G, target, None, **settings(steps=150))
    assert (P.labels == y).mean() >= 5 / 6 and P.images.shape == target.shape


def test_masked_inversion_never_changes_a_known_pixel():
    G = tiny_g()
    rng = np.random.default_rng(0)
    target = rng.integers(0, 256, (5, 1, 28, 28), dtype=np.uint8)
    hole = M.draw_masks("thick", 5, 28, 0, 0.5)
    P = project(G, target, ~hole, **settings(steps=10))
    other = target[:, :, ::-1].copy()  # a train set without the targets
    h = np.broadcast_to(hole, target.shape)
    for filled in (compose(target, P.images, hole), biharmonic(target, hole), nearest(target, hole, other)):
        assert (filled[~h] == target[~h]).all() and (filled[h] != target[h]).any()


def test_the_nearest_baseline_finds_the_image_the_hole_was_cut_from():
    rng = np.random.default_rng(1)
    train = rng.integers(0, 256, (300, 1, 28, 28), dtype=np.uint8)
    hole = M.draw_masks("centre", 4, 28, 0, 0.5)
    filled = nearest(train[[5, 77, 123, 299]], hole, train)
    assert (filled == train[[5, 77, 123, 299]]).all()


@pytest.mark.parametrize("kind", list(M.MASKS))
def test_mask_hole_shares_match_their_bins(kind):
    bins = [0.0, 0.1, 0.2, 0.3, 0.4, 1.0]
    masks = M.draw_masks(kind, 300, 28, 3, 0.5)
    share = M.hole_share(masks)
    assert ((share > 0) & (share < 1)).all()  # always a hole and always a known pixel
    k = M.bin_index(share, bins)
    lo, hi = np.asarray(bins)[k], np.asarray(bins)[k + 1]
    assert ((lo <= share) & ((share < hi) | (k == len(bins) - 2))).all()
    # mask i does not depend on how many are drawn
    assert (M.draw_masks(kind, 7, 28, 3, 0.5) == masks[:7]).all()
    if kind == "centre":
        assert np.allclose(share, 14 * 14 / 784)
    widths = {"thin": 0, "medium": 1, "thick": 2}
    if kind in widths:  # wider strokes, larger holes
        means = [M.hole_share(M.draw_masks(w, 300, 28, 3, 0.5)).mean() for w in widths]
        assert means[0] < means[1] < means[2]


def bar(width: int, slope: float = 0.0, height: int = 18) -> np.ndarray:
    """A stroke `width` px wide, leaning right by `slope` px per px up."""
    img = np.zeros((1, 28, 28), np.uint8)
    for y in range(5, 5 + height):
        x0 = 14 - width // 2 + round(slope * (14 - y))
        img[0, y, x0 : x0 + width] = 255
    return img


def test_stroke_measures_of_hand_drawn_strokes():
    m = measure(np.stack([bar(2), bar(4), bar(6)]))
    assert np.abs(m["thickness"] - [2, 4, 6]).max() < 1 and np.all(np.diff(m["thickness"]) > 0)
    assert np.abs(m["slant"]).max() < 1  # upright
    assert np.all(np.diff(m["width"]) > 0)
    slanted = measure(np.stack([bar(3, s) for s in (-0.4, 0.2, 0.5)]))
    assert np.abs(slanted["slant"] - np.degrees(np.arctan([-0.4, 0.2, 0.5]))).max() < 3
    assert np.isnan(measure(np.zeros((1, 1, 28, 28), np.uint8))["thickness"]).all()  # no ink


def test_psnr_agrees_with_scikit_image_and_masks_select_pixels():
    from skimage.metrics import peak_signal_noise_ratio

    rng = np.random.default_rng(2)
    a, b = (rng.integers(0, 256, (3, 1, 28, 28), dtype=np.uint8) for _ in range(2))
    ours = psnr(a, b)
    theirs = [peak_signal_noise_ratio(x, y, data_range=255) for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(ours, theirs, rtol=1e-10)
    where = np.zeros((3, 1, 28, 28), bool)
    where[:, :, :10] = True
    c = b.copy()
    c[~np.broadcast_to(where, c.shape)] = a[~np.broadcast_to(where, c.shape)]  # c = a outside `where`
    np.testing.assert_allclose(psnr(a, c, where), psnr(a[..., :10, :], b[..., :10, :]), rtol=1e-10)
    assert psnr(a, a).max() == 100.0  # capped, finite


def test_a_direction_fitted_to_a_linear_attribute_is_recovered_and_edits_rise_along_it():
    rng = np.random.default_rng(3)
    z = rng.standard_normal((2000, 16)).astype(np.float32)
    true = np.zeros(16, np.float32)
    true[[2, 5]] = [3, -4]
    values = z @ true + 0.1 * rng.standard_normal(2000)
    n, r2 = fit_direction(z, values)
    assert np.dot(n, true / np.linalg.norm(true)) > 0.999 and r2 > 0.99
    steps = np.array([-2, -1, 0, 1, 2], np.float32)
    assert monotone((z[:5, None, :] + steps[None, :, None] * n) @ true).all()


# --- the stages: bad input exits 2 and writes nothing ---------------------------------------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from ganforge.metrics import Evaluator, save_evaluator
    from ganforge.nets import MLPGenerator

    d = tmp_path_factory.mktemp("prior")
    save_generator(d / "generator.pt", tiny_g(), {"dataset": "mnist"})
    torch.manual_seed(0)
    save_evaluator(d / "evaluator.pt", Evaluator(1, 28, 10, 16).eval())
    save_generator(d / "points.pt", MLPGenerator(z_dim=2, channels=2, resolution=1, g_channels=8,
                                                 spectral_norm=False, num_classes=0))
    params = copy_params(d / "params.yaml")
    set_params(params, {"invert.device": "cpu", "invert.project.steps": 20, "invert.project.bank": 200,
                        "invert.project.perceptual": 0.02})
    from PIL import Image

    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:16] = 255
    Image.fromarray(digit).save(d / "digit.png")
    hole = np.zeros((28, 28), np.uint8)
    hole[10:18, 8:20] = 255
    Image.fromarray(hole).save(d / "mask.png")
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(d / "nohole.png")
    Image.fromarray(np.full((28, 28), 255, np.uint8)).save(d / "allhole.png")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(d / "mask32.png")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(d / "rgb32.png")
    colour = np.zeros((28, 28, 3), np.uint8)
    colour[..., 0] = 200  # red: not a grey image saved as RGB
    Image.fromarray(colour).save(d / "rgb28.png")
    return d


def inpaint_cli(d: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "stages/inpaint.py"), "--params", str(d / "params.yaml"),
           "--evaluator", str(d / "evaluator.pt"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=d,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})


def test_inpainting_ones_own_image_keeps_its_known_pixels(files):
    from PIL import Image

    out = files / "out.png"
    proc = inpaint_cli(files, "--model", str(files / "generator.pt"), "--image", str(files / "digit.png"),
                       "--mask", str(files / "mask.png"), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    got = np.asarray(Image.open(out))
    digit = np.asarray(Image.open(files / "digit.png"))
    hole = np.asarray(Image.open(files / "mask.png")) >= 128
    assert got.shape == (28, 28) and (got[~hole] == digit[~hole]).all()


@pytest.mark.parametrize("case", ["mask of another size", "no hole", "no known pixel", "another resolution",
                                  "another channel count", "no latent space", "not a generator"])
def test_bad_input_exits_2_and_writes_nothing(files, case):
    model, image, mask = "generator.pt", "digit.png", "mask.png"
    expect = {"mask of another size": "same size", "no hole": "no hole", "no known pixel": "all hole",
              "another resolution": "generator draws", "another channel count": "generator draws",
              "no latent space": "no image latent space",
              "not a generator": "not a ganforge generator"}[case]
    if case == "mask of another size":
        mask = "mask32.png"
    elif case == "no hole":
        mask = "nohole.png"
    elif case == "no known pixel":
        mask = "allhole.png"
    elif case == "another resolution":
        image, mask = "rgb32.png", "mask32.png"
    elif case == "another channel count":
        image = "rgb28.png"
    elif case == "no latent space":
        model = "points.pt"
    elif case == "not a generator":
        model = "evaluator.pt"
    out = files / f"out-{case}.png"
    proc = inpaint_cli(files, "--model", str(files / model), "--image", str(files / image),
                       "--mask", str(files / mask), "--out", str(out))
    assert proc.returncode == 2 and expect in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not out.exists()


@pytest.mark.parametrize(("key", "value", "message"), [
    ("invert.inpaint.masks", ["centre", "hexagon"], "unknown mask 'hexagon' (allowed: centre, boxes, thin"),
    ("invert.inpaint.bins", [0.0, 0.3, 0.2, 1.0], "must rise strictly from 0 to 1"),
    ("invert.edit.sigmas", [-1, 1], "include 0"),
    ("invert.edit.attributes", ["curliness"], "invert.edit.attributes.0"),
    ("invert.project.steps", 0, "invert.project.steps"),
])
def test_bad_invert_params_name_the_key(key, value, message):
    import yaml

    from ganforge.config import parse_params, set_dotted
    from ganforge.errors import ConfigError

    raw = set_dotted(yaml.safe_load((ROOT / "params.yaml").read_text()), {key: value})
    with pytest.raises(ConfigError, match="invalid params") as e:
        parse_params(raw, ROOT / "params.yaml", ("invert",))
    assert message in str(e.value) and key.rsplit(".", 1)[0] in str(e.value)


def test_the_registered_inpainting_model_answers_requests_and_refuses_bad_ones(files, tmp_path, monkeypatch):
    from ganforge.config import load_params
    from ganforge.tracking import serving
    from ganforge.tracking.store import Run

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    project = load_params(files / "params.yaml", "invert").invert.project
    run = Run.start("inpaint-test", {"invert": {"seed": 0}}, root=tmp_path)
    version = serving.log_inpainting_model(run, files / "generator.pt", files / "evaluator.pt", "mnist",
                                           project.model_dump())
    run.finish()
    model = serving.load_verified(f"models:/ganforge-mnist-inpaint/{version}", dst=tmp_path / "copy")
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (28, 28)).astype(np.uint8)
    hole = np.zeros((28, 28), np.uint8)
    hole[8:20, 8:20] = 1
    out = model.predict([{"image": image.tolist(), "mask": hole.tolist()},
                         {"image": image.tolist(), "mask": (1 - hole).tolist()}])
    assert out.shape == (2, 28, 28, 1) and out.dtype == np.uint8
    known = hole == 0
    assert (out[0, ..., 0][known] == image[known]).all() and (out[1, ..., 0][~known] == image[~known]).all()
    assert (out[0, ..., 0][~known] != image[~known]).any()
    bad_masks = ((np.zeros((28, 28), np.uint8), "no hole"), (np.ones((28, 28), np.uint8), "no known pixel"),
                 (np.ones((14, 14), np.uint8), "mask of shape"))
    for bad, message in bad_masks:
        with pytest.raises(Exception, match=message):
            model.predict([{"image": image.tolist(), "mask": bad.tolist()}])
    with pytest.raises(Exception, match="generator draws"):
        model.predict([{"image": np.zeros((32, 32)).tolist(), "mask": np.ones((32, 32)).tolist()}])
