"""x4 super-resolution: the degradation and the metric conventions against their references, the networks'
invariants (identity at initialisation, pixel shuffle, receptive radius, tiled = untiled), the relativistic
average loss against its formula, and a tiny run of the whole chain of stages through the real CLIs on real
photographs (scikit-image's), with resume bit for bit, the registered model and the bad-input cases."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import ROOT, set_params
from ganforge.superres.degrade import bicubic, downscale, to_unit
from ganforge.superres.nets import SRResNet, icnr_
from ganforge.superres.scores import PSNR_CAP, paired_scores, y_channel
from ganforge.superres.tiles import upscale


def photo(name: str, side: int) -> np.ndarray:
    """A real photograph from scikit-image's data, RGB, centre-cropped square and resized: uint8 [3, s, s]."""
    from skimage import data

    img = getattr(data, name)()
    img = np.repeat(img[..., None], 3, 2) if img.ndim == 2 else img[..., :3]
    h, w = img.shape[:2]
    c = min(h, w)
    img = img[(h - c) // 2 : (h + c) // 2, (w - c) // 2 : (w + c) // 2]
    return np.asarray(Image.fromarray(img).resize((side, side), Image.LANCZOS)).transpose(2, 0, 1).copy()


def pil_float(channel: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """PIL's bicubic resize of one float channel (mode F: no 8-bit rounding inside)."""
    return np.asarray(Image.fromarray(channel.astype(np.float32), mode="F").resize(size, Image.BICUBIC))


def trained_like(net: SRResNet, seed: int = 0) -> SRResNet:
    """The net with its zero-initialised last layer set to random weights (as training leaves it)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        net.tail[-1].weight.normal_(0, 0.05)
    return net.eval()


def test_downscaling_and_bicubic_are_pils_bicubic():
    hr = photo("astronaut", 64)
    lr = downscale(torch.from_numpy(hr)[None], 4)[0].numpy()
    assert lr.shape == (3, 16, 16) and lr.dtype == np.uint8
    for c in range(3):  # PIL in float, then rounded as the LR image is
        ref = np.clip(np.round(pil_float(hr[c] / 255, (16, 16)) * 255), 0, 255)
        assert np.abs(lr[c].astype(float) - ref).max() <= 1  # a rounding tie at most
    up = bicubic(to_unit(torch.from_numpy(lr)[None]), 4)[0].numpy()
    for c in range(3):
        np.testing.assert_allclose(up[c], pil_float(lr[c] / 255, (64, 64)), atol=1e-5)


def test_untrained_srresnet_is_bicubic_and_pixel_shuffle_shapes():
    net = SRResNet(3, 4, blocks=2, width=8).eval()
    x = to_unit(torch.from_numpy(photo("coffee", 48))[None])
    lr = to_unit(downscale((x * 255).round().to(torch.uint8), 4))
    with torch.no_grad():
        out = net(lr)
    assert out.shape == (1, 3, 48, 48)
    assert torch.equal(out, bicubic(lr, 4))  # the x4 identity: the untrained network is the baseline exactly
    # ICNR: a conv feeding PixelShuffle(2) starts as the nearest-neighbour upscale of a 4x narrower conv
    conv = torch.nn.Conv2d(8, 32, 3, 1, 1)
    icnr_(conv, 2)
    f = torch.randn(1, 8, 5, 7)
    shuffled = torch.nn.functional.pixel_shuffle(conv(f), 2)  # [1, 8, 10, 14]
    base = torch.nn.functional.conv2d(f, conv.weight[::4], conv.bias[::4], padding=1)
    assert torch.allclose(shuffled, base.repeat_interleave(2, -1).repeat_interleave(2, -2), atol=1e-6)


def test_receptive_radius_bounds_what_an_input_pixel_changes():
    net = trained_like(SRResNet(3, 4, blocks=2, width=8))
    r, s = net.receptive_radius(), net.scale
    lr = torch.rand(1, 3, 2 * r + 9, 2 * r + 9)
    bumped = lr.clone()
    i = j = r + 4  # an interior pixel
    bumped[..., i, j] += 0.5
    with torch.no_grad():
        diff = (net(bumped) - net(lr)).abs().amax(1)[0]  # [H, W]
    changed = torch.nonzero(diff > 1e-7)
    # every changed HR pixel lies within r LR pixels (r * s HR pixels) of the bumped pixel's HR cell
    centre = torch.tensor([i * s + s / 2, j * s + s / 2])
    assert len(changed) and ((changed.float() + 0.5 - centre).abs().max() <= r * s + s / 2)
    assert (changed.float() + 0.5 - centre).abs().max() > (r - 3) * s  # and the bound is not loose


@pytest.mark.parametrize("tile", [7, 16])
def test_tiled_upscaling_equals_untiled(tile):
    net = trained_like(SRResNet(3, 4, blocks=2, width=8))
    lr = downscale(torch.from_numpy(photo("chelsea", 172))[None], 4)[0].numpy()  # 43 x 43: ragged tiles
    whole = upscale(net, lr, tile=0)
    assert whole.shape == (3, 172, 172)
    np.testing.assert_array_equal(upscale(net, lr, tile=tile), whole)
    # too little context shows the seams: the overlap is what makes it exact
    assert not np.array_equal(upscale(net, lr, tile=tile, overlap=1), whole)


def basicsr_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """BasicSR's _ssim (basicsr/metrics/psnr_ssim.py), written out: the reference the scores must equal."""
    from scipy.ndimage import correlate

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g) / g.sum() ** 2

    def f(x):
        return correlate(x, w, mode="constant")[5:-5, 5:-5]  # cv2.filter2D then [5:-5, 5:-5]: valid

    mu_a, mu_b = f(a), f(b)
    var_a, var_b, cov = f(a * a) - mu_a**2, f(b * b) - mu_b**2, f(a * b) - mu_a * mu_b
    ssim = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim.mean())


def test_paired_scores_conventions_against_references():
    from torchmetrics.functional.image import peak_signal_noise_ratio as tm_psnr
    from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

    # BT.601 luma (ITU-R BT.601 as BasicSR and MATLAB's rgb2ycbcr): black 16, white 235, the primaries
    prim = np.array([[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    np.testing.assert_allclose(y_channel(prim.T[:, None, :])[0], [16, 235, 81.481, 144.553, 40.966],
                               atol=1e-9)
    hr = photo("astronaut", 96)
    noise = np.random.default_rng(0).integers(-12, 13, hr.shape)
    sr = np.clip(hr.astype(int) + noise, 0, 255).astype(np.uint8)
    got = paired_scores(sr, hr, border=4)
    ys, yh = (torch.from_numpy(y_channel(x)[4:-4, 4:-4])[None, None] for x in (sr, hr))
    assert got["psnr_y"] == pytest.approx(float(tm_psnr(ys, yh, data_range=255.0)), abs=1e-4)  # its float32
    # SSIM: exactly BasicSR's calculate_ssim (Wang et al.'s formula, 11 x 11 Gaussian of sigma 1.5, the
    # window positions that fit), and near torchmetrics' (which differs in how it treats the borders)
    assert got["ssim_y"] == pytest.approx(basicsr_ssim(ys[0, 0].numpy(), yh[0, 0].numpy()), abs=1e-9)
    assert got["ssim_y"] == pytest.approx(float(tm_ssim(ys, yh, data_range=255.0, gaussian_kernel=True,
                                                        sigma=1.5, kernel_size=11)), abs=5e-3)
    # a uniform error of d grey levels in R, G and B is 219 d / 255 in Y: PSNR in closed form
    flat = np.full((3, 40, 40), 100, np.uint8)
    assert paired_scores(flat + 3, flat, 4)["psnr_y"] == pytest.approx(20 * math.log10(255 / (219 * 3 / 255)))
    assert paired_scores(flat + 3, flat, 4)["psnr_rgb"] == pytest.approx(20 * math.log10(255 / 3))
    # the border crop: differences only in the outer 4 pixels do not count
    framed = flat.copy()
    framed[:, :4] = 0
    assert paired_scores(framed, flat, 4)["psnr_y"] == PSNR_CAP
    assert paired_scores(framed, flat, 3)["psnr_y"] < 40
    from ganforge.errors import GanforgeError

    with pytest.raises(GanforgeError, match="cannot be scored"):
        paired_scores(flat[:, :36], flat, 4)


def test_relativistic_average_loss_matches_its_formula():
    from ganforge.losses import make_loss

    loss = make_loss("ragan")
    real, fake = torch.tensor([1.5, -0.3, 0.7]), torch.tensor([0.2, -1.1])
    sig = torch.sigmoid

    def log(t):
        return torch.log(t)

    d = -log(sig(real - fake.mean())).mean() - log(1 - sig(fake - real.mean())).mean()
    g = -log(1 - sig(real - fake.mean())).mean() - log(sig(fake - real.mean())).mean()
    got_d, stats = loss.d_loss(real, fake)
    got_g, _ = loss.g_loss(fake, real)
    assert float(got_d) == pytest.approx(float(d)) and float(got_g) == pytest.approx(float(g))
    assert float(stats["d_real_vs_fake"]) == pytest.approx(float(sig(real - fake.mean()).mean()))


def test_crops_are_windows_of_their_images_and_seeded():
    from ganforge.superres.crops import CropSampler

    images = [photo("astronaut", 40), photo("coffee", 64)[:, :, :48].copy()]
    sampler = CropSampler(images, 16, augment=False, device="cpu")
    crops = sampler.draw(50, torch.Generator().manual_seed(0)).numpy()
    assert crops.shape == (50, 3, 16, 16)
    windows = {np.ascontiguousarray(x[:, i : i + 16, j : j + 16]).tobytes() for x in images
               for i in range(x.shape[1] - 15) for j in range(x.shape[2] - 15)}
    assert all(c.tobytes() in windows for c in crops)
    again = sampler.draw(50, torch.Generator().manual_seed(0)).numpy()
    np.testing.assert_array_equal(crops, again)
    from ganforge.errors import ConfigError

    with pytest.raises(ConfigError, match="smaller than the HR crop"):
        CropSampler(images, 41, augment=False, device="cpu")


# --- the chain of stages on a tiny real set ------------------------------------------------------------
TRAIN_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera")
TEST_PHOTOS = ("coins", "moon")
TINY_SR = {"superres.device": "cpu", "superres.log_every": 2, "superres.image_every": 3,
           "superres.ckpt_every": 2}


def tiny_set(overrides: dict) -> dict:
    s = {"judge.n": 256, "judge.batch_size": 64, "judge.crop": 32, "judge.self_supervised.epochs": 1,
         "crop": 32, "blocks": 1, "width": 8, "psnr.kimg": 0.08, "psnr.batch_size": 8, "gan.kimg": 0.048,
         "gan.batch_size": 8, "gan.d_channels": 8, "test_n": None}
    return {f"superres.sets.photos.{k}": v for k, v in {**s, **overrides}.items()}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project dir with params.yaml (superres.sets: photos only, tiny) and data/superres/photos made of
    scikit-image photographs in the photos data set's prepared form."""
    from ganforge.data.photos import write_photos

    root = tmp_path_factory.mktemp("sr")
    shutil_copy = (ROOT / "params.yaml").read_text()
    (root / "params.yaml").write_text(shutil_copy)
    raw = yaml.safe_load(shutil_copy)
    raw["superres"]["sets"] = {"photos": raw["superres"]["sets"]["photos"]}
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    set_params(root / "params.yaml", {**TINY_SR, **tiny_set({})})
    splits = {"train": [(n, photo(n, 64)) for n in TRAIN_PHOTOS],
              "test": [(n, photo(n, 72)[:, :, :68].copy()) for n in TEST_PHOTOS]}
    rows = {n: {"shape": list(x.shape), "split": s} for s, ph in splits.items() for n, x in ph}
    write_photos(root / "data/superres/photos", splits, {"name": "photos", "kind": "photos", "classes": [],
                                                        "photos": rows})
    return root


def cli(stage: str, *args: str):
    """The stage's real Typer app, invoked in this process (CliRunner): the stage without a fresh
    interpreter's seconds of imports. -> (exit code, stdout + stderr)."""
    import importlib.util

    from typer.testing import CliRunner

    spec = importlib.util.spec_from_file_location(f"stage_{stage}", ROOT / "stages" / f"{stage}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = CliRunner().invoke(module.app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


@pytest.fixture
def in_project(project, store, monkeypatch) -> Path:
    monkeypatch.chdir(project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store["MLFLOW_TRACKING_URI"])
    return project


def sr(stage: str, *args: str) -> tuple[int, str]:
    return cli(f"superres_{stage}", "--set", "photos", *args)


@pytest.mark.slow
def test_the_chain_of_stages_resumes_bit_for_bit_and_serves(in_project, store):
    project = in_project
    for stage, args in (("judge", ()), ("train", ("--stage", "psnr")), ("train", ("--stage", "gan")),
                        ("upscale", ()), ("evaluate", ())):
        code, said = sr(stage, *args)
        assert code == 0, (stage, said[-3000:])
    res = project / "results/superres/photos"
    metrics = json.loads((res / "evaluate/metrics.json").read_text())
    assert set(metrics["bicubic"]) == {"psnr_y", "ssim_y", "psnr_rgb", "fid", "fid_ratio"}
    assert metrics["images"] == 2 and metrics["psnr"]["psnr_y"] > 15
    assert (res / "evaluate/table.tsv").read_text().splitlines()[0].split("\t")[:3] == ["method", "psnr_y",
                                                                                       "ssim_y"]
    for picture in ("evaluate/perception_distortion.png", "evaluate/crops.png", "psnr/crops.png"):
        assert Image.open(res / picture).size[0] > 100
    with np.load(res / "upscaled.npz") as z:
        assert z["gan"].shape == (2, 3, 72, 68)  # the test photos share a size: one stacked array

    # resume: 10 steps, then the same run lengthened to 15 from its checkpoint = 15 steps in one go
    psnr = project / "models/superres/photos-psnr.pt"
    set_params(project / "params.yaml", tiny_set({"psnr.kimg": 0.12}))
    code, said = sr("train", "--stage", "psnr")
    assert code == 0 and "(15 steps)" in said, said[-2000:]
    resumed = torch.load(psnr, weights_only=True)["state_dict"]
    import shutil

    shutil.rmtree(project / "checkpoints-superres/photos-psnr")
    code, said = sr("train", "--stage", "psnr")
    assert code == 0, said[-2000:]
    fresh = torch.load(psnr, weights_only=True)["state_dict"]
    assert all(torch.equal(resumed[k], fresh[k]) for k in fresh)

    # one image of any size by --image (tiled), and the registered model answering the same
    lr = photo("coffee", 60)[:, :52, :]  # 52 x 60 LR
    Image.fromarray(lr.transpose(1, 2, 0)).save(project / "lr.png")
    gan = project / "models/superres/photos-gan.pt"
    code, said = cli("superres_upscale", "--image", "lr.png", "--out", "sr.png", "--model", str(gan),
                     "--tile", "16")
    assert code == 0, said[-2000:]
    out = np.asarray(Image.open(project / "sr.png"))
    assert out.shape == (208, 240, 3)
    from mlflow import MlflowClient

    from ganforge.tracking.serving import load_verified, sr_model_name

    client = MlflowClient(store["MLFLOW_TRACKING_URI"])
    version = max(int(v.version) for v in client.search_model_versions(f"name='{sr_model_name('photos')}'")
                  if v.tags.get("stage") == "gan")
    model = load_verified(f"models:/{sr_model_name('photos')}/{version}",
                          tracking_uri=store["MLFLOW_TRACKING_URI"])
    answer = model.predict([{"image": lr.transpose(1, 2, 0)}])
    np.testing.assert_array_equal(np.asarray(answer["image"][0]), out)


@pytest.mark.slow  # after the chain (its models)
def test_bad_input_exits_2_and_writes_nothing(in_project, tmp_path, monkeypatch):
    project = in_project
    gan = project / "models/superres/photos-gan.pt"
    if not gan.exists():
        pytest.skip("needs the chain test's models (same module, run first)")
    (tmp_path / "notes.png").write_text("not an image")
    small = photo("coffee", 4)  # 4 x 4 LR: less than the tiny net's receptive radius (6)
    Image.fromarray(small.transpose(1, 2, 0)).save(tmp_path / "small.png")
    Image.fromarray(photo("coffee", 16).transpose(1, 2, 0)).save(tmp_path / "lr.png")
    Image.fromarray(photo("coffee", 60).transpose(1, 2, 0)).save(tmp_path / "hr60.png")
    cases = [
        (("--image", "notes.png"), "not a readable image"),
        (("--image", "lr.png", "--scale", "2"), "trained for x4"),
        (("--image", "small.png", "--tile", "2"), "smaller than the tiles' overlap"),
        (("--image", "lr.png", "--reference", "hr60.png"), "downscaled x4"),
    ]
    monkeypatch.chdir(tmp_path)
    for args, why in cases:
        code, said = cli("superres_upscale", *args, "--out", "out.png", "--model", str(gan))
        assert code == 2 and why in said, (args, said[-1500:])
        assert not (tmp_path / "out.png").exists()
    code, said = cli("superres_judge", "--set", "nope", "--params", str(project / "params.yaml"))
    assert code == 2 and "superres.sets has photos" in said
    params = tmp_path / "params.yaml"
    params.write_text((project / "params.yaml").read_text())
    set_params(params, {"superres.sets.photos.crop": 30})
    monkeypatch.chdir(project)
    before = sorted(p.name for p in (project / "models/superres").iterdir())
    code, said = cli("superres_train", "--set", "photos", "--stage", "psnr", "--params", str(params))
    assert code == 2 and "not a multiple of the scale" in said, said[-1500:]
    assert sorted(p.name for p in (project / "models/superres").iterdir()) == before


@pytest.mark.slow
def test_sigterm_checkpoints_the_sr_training_and_a_rerun_resumes(in_project, store, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    project = in_project
    params = tmp_path / "params.yaml"  # a long run, checkpoints only at the end or on the signal
    params.write_text((project / "params.yaml").read_text())
    set_params(params, {**tiny_set({"psnr.kimg": 50.0}), "superres.ckpt_every": 100000,
                        "superres.log_every": 1})
    ckpt = project / "checkpoints-superres/photos-psnr/train.pt"
    if ckpt.exists():
        ckpt.unlink()
    proc = subprocess.Popen([sys.executable, str(ROOT / "stages/superres_train.py"), "--set", "photos",
                             "--stage", "psnr", "--params", str(params)], cwd=project,
                            env={**os.environ, **store}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    for line in proc.stdout:  # one line per report (no terminal: no progress bar)
        if line.startswith("step 3 "):
            break
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "Traceback" not in err, err[-2000:]
    stopped_at = torch.load(ckpt, weights_only=False)["step"]
    assert stopped_at >= 3 and f"stopped by SIGTERM at step {stopped_at}" in err
    from mlflow import MlflowClient

    run_id = json.loads((project / "results/superres/photos/psnr/run.json").read_text())["run_id"]
    run = MlflowClient(store["MLFLOW_TRACKING_URI"]).get_run(run_id)
    assert run.info.status == "KILLED" and run.data.tags["ganforge.stopped_by"] == "SIGTERM"
    # the rerun continues from the step the signal reached (a shorter run: it ends right there)
    set_params(params, tiny_set({"psnr.kimg": (stopped_at + 1) * 8 / 1000}))
    code, said = sr("train", "--stage", "psnr", "--params", str(params))
    assert code == 0 and f"at step {stopped_at}" in said and f"({stopped_at + 1} steps)" in said, said[-2000:]
