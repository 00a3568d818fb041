"""StyleGAN2 (nets/stylegan2.py): its layers against their definitions, the path-length penalty against
autograd, style mixing and truncation, and the recipe through the real train stage (resume bit for bit, bad
input exits 2)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import ROOT, copy_params, run_stage, set_params
from ganforge.io import load_torch
from ganforge.nets import build_networks, load_generator
from ganforge.nets.stylegan2 import (
    EqualConv2d,
    EqualLinear,
    StyleGAN2Settings,
    StyleTerms,
    modulated_conv2d,
    modulated_weight,
    path_lengths,
)

SMALL = {"w_dim": 16, "mapping_layers": 2}


def small_pair(resolution: int = 28, num_classes: int = 0, seed: int = 0, **settings):
    torch.manual_seed(seed)
    own = StyleGAN2Settings(**{**SMALL, **settings}).model_dump()
    return build_networks("stylegan2", z_dim=8, channels=1, resolution=resolution, g_channels=8, d_channels=8,
                          g_spectral_norm=False, d_spectral_norm=False, num_classes=num_classes, settings=own)


def test_demodulated_weights_have_unit_norm_per_output_channel():
    g = torch.Generator().manual_seed(0)
    weight, styles = torch.randn(6, 5, 3, 3, generator=g), torch.randn(4, 5, generator=g) * 3 + 1
    w = modulated_weight(weight, styles, demodulate=True)  # [N, O, I, k, k]
    norms = w.square().sum(dim=(2, 3, 4)).sqrt()  # [N, O]
    torch.testing.assert_close(norms, torch.ones(4, 6), atol=1e-6, rtol=0)
    undemodulated = modulated_weight(weight, styles, demodulate=False)
    torch.testing.assert_close(undemodulated, weight[None] * styles[:, None, :, None, None])


@pytest.mark.parametrize("demodulate,kernel", [(True, 3), (False, 1)])
def test_grouped_convolution_equals_a_per_sample_loop(demodulate, kernel):
    g = torch.Generator().manual_seed(1)
    x, weight = torch.randn(3, 4, 7, 7, generator=g), torch.randn(5, 4, kernel, kernel, generator=g)
    styles = torch.randn(3, 4, generator=g)
    out = modulated_conv2d(x, weight, styles, demodulate=demodulate)
    for n in range(3):
        w = weight * styles[n][None, :, None, None]  # this sample's weight [O, I, k, k]
        if demodulate:
            w = w / (w.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8).sqrt()
        torch.testing.assert_close(out[n], F.conv2d(x[n : n + 1], w, padding=kernel // 2)[0], atol=1e-5,
                                   rtol=1e-5)


def test_equalised_learning_rate_scales_as_hes_constant():
    torch.manual_seed(0)
    x = torch.randn(5, 256)
    for lr_mul in (1.0, 0.01):  # the mapping network's multiplier
        fc = EqualLinear(256, 128, lr_mul=lr_mul)
        # stored N(0, 1) / lr_mul, used as lr_mul / sqrt(fan_in) times that: He's N(0, 1 / fan_in)
        assert abs(fc.weight.std().item() * lr_mul - 1) < 0.02
        torch.testing.assert_close(fc(x), x @ (fc.weight * lr_mul / math.sqrt(256)).T + fc.bias * lr_mul)
        assert abs((fc.weight * fc.weight_gain).std().item() * math.sqrt(256) - 1) < 0.02
        # the gradient of the stored weight is the effective one's times the gain: Adam's step on the stored
        # weight (scale-free) moves the effective weight by lr x gain, i.e. lr x lr_mul / sqrt(fan_in)
        fc(x).sum().backward()
        effective_grad = (x.sum(0)[None, :]).expand(128, -1)  # d sum(x W^T) / dW
        torch.testing.assert_close(fc.weight.grad, effective_grad * fc.weight_gain)
    conv = EqualConv2d(16, 8, 3, activation=False)
    assert conv.weight_gain == 1 / math.sqrt(16 * 9)
    xi = torch.randn(2, 16, 5, 5)
    torch.testing.assert_close(conv(xi), F.conv2d(xi, conv.weight / math.sqrt(16 * 9), conv.bias, padding=1))
    # every weight of G and D is stored N(0, 1) (the mapping's / 0.01): no layer starts at another scale
    G, D = small_pair(resolution=32)
    for name, p in [*G.named_parameters(), *D.named_parameters()]:
        if name.endswith("weight") and p.dim() >= 2 and p.numel() >= 256 and "embed" not in name:
            scale = 0.01 if name.startswith("mapping.layers") else 1.0
            assert abs(p.std().item() * scale - 1) < 0.15, name


def test_path_length_against_autograd_and_a_hand_computed_jacobian():
    # a linear "synthesis": img[n] = sum_l A_l^T ws[n, l], so J^T y at layer l is A_l y (by hand)
    g = torch.Generator().manual_seed(0)
    N, L, Dw, P = 3, 4, 5, 6
    A = torch.randn(L, Dw, P, generator=g)
    ws = torch.randn(N, L, Dw, generator=g, requires_grad=True)
    img = torch.einsum("nld,ldp->np", ws, A).reshape(N, 1, 2, 3)
    y = torch.randn(N, 1, 2, 3, generator=g)
    by_hand = torch.stack([torch.stack([(A[layer] @ y[n].flatten()).square().sum() for layer in range(L)])
                           .mean().sqrt() for n in range(N)])
    torch.testing.assert_close(path_lengths(img, ws, y), by_hand)

    # the real (tiny) synthesis network against torch.autograd.functional.jacobian, per sample
    G, _ = small_pair()
    z = torch.randn(2, 8, generator=g)
    ws = G.ws(z).detach().requires_grad_(True)
    img = G.synthesis(ws)  # fixed noise buffers: a function of ws only
    y = torch.randn(img.shape, generator=g)
    lengths = path_lengths(img, ws, y)
    for n in range(2):
        J = torch.autograd.functional.jacobian(lambda w, n=n: G.synthesis(w[None])[0], ws[n].detach())
        jty = torch.einsum("chw,chwld->ld", y[n], J)  # [num_ws, w_dim]
        torch.testing.assert_close(lengths[n], jty.square().sum(1).mean().sqrt(), atol=1e-5, rtol=1e-4)
    assert lengths.requires_grad  # the penalty is trained through it


def test_path_length_penalty_keeps_its_moving_mean():
    G, _ = small_pair()
    terms = StyleTerms(**StyleGAN2Settings(**SMALL, style_mixing=0.0).model_dump())
    streams = {name: torch.Generator().manual_seed(i) for i, name in enumerate(("mix", "noise", "pl"))}
    again = {name: torch.Generator().manual_seed(i) for i, name in enumerate(("mix", "noise", "pl"))}
    z = torch.randn(8, 8)
    loss, stats = terms.path_length_penalty(G, G, z, None, streams)
    # the same draws by hand: the first 8 / 2 z, noise then the projection y from the same streams
    img, ws = G(z[:4], noise=again["noise"], return_ws=True)
    y = torch.randn(img.shape, generator=again["pl"]) / math.sqrt(28 * 28)
    lengths = path_lengths(img, ws, y)
    mean = 0.01 * lengths.mean()  # lerp from 0 by pl_decay
    torch.testing.assert_close(terms.pl_mean, mean.detach())
    torch.testing.assert_close(loss, (lengths - mean).square().mean() * 2.0 * 4)  # weight 2, every 4
    torch.testing.assert_close(stats["pl_penalty"], (lengths - mean).square().mean().detach() * 4)
    assert "pl_mean" in dict(terms.named_buffers())  # checkpointed with the nets


def test_style_mixing_switches_w_at_the_drawn_layer():
    G, _ = small_pair()  # 28 px: 6 ws
    G.eval()
    terms = StyleTerms(**StyleGAN2Settings(**SMALL, style_mixing=1.0).model_dump())
    z = torch.randn(4, 8)
    cutoffs = set()
    for seed in range(12):
        mix = terms.mixing(G, 4, slice(None), torch.Generator().manual_seed(seed))
        # the draws, again from the same seed: z2, then the cutoff in [1, num_ws)
        g = torch.Generator().manual_seed(seed)
        z2 = torch.randn(4, 8, generator=g)
        cutoff = int(torch.randint(1, G.num_ws, (), generator=g))
        torch.testing.assert_close(mix[1], torch.tensor(cutoff))
        ws = G.ws(z, mix=mix)
        w1, w2 = G.mapping(z), G.mapping(z2)
        torch.testing.assert_close(ws[:, :cutoff], w1[:, None].expand(-1, cutoff, -1))
        torch.testing.assert_close(ws[:, cutoff:], w2[:, None].expand(-1, G.num_ws - cutoff, -1))
        cutoffs.add(cutoff)
    assert len(cutoffs) > 2 and min(cutoffs) >= 1 and max(cutoffs) < G.num_ws
    # probability 0: no draw at all; a cutoff of num_ws mixes nothing
    assert StyleTerms(**StyleGAN2Settings(**SMALL, style_mixing=0.0).model_dump()).mixing(
        G, 4, slice(None), torch.Generator()) is None
    torch.testing.assert_close(G(z, mix=(torch.randn(4, 8), torch.tensor(G.num_ws))), G(z))


def test_mixing_does_not_move_the_tracked_mean_and_truncation_pulls_to_it():
    G, _ = small_pair()
    G.train()
    z = torch.randn(6, 8)
    with torch.no_grad():
        w = G.mapping(z)
        G.mapping.w_avg.zero_()
        G(z, mix=(torch.randn(6, 8), torch.tensor(2)))
    torch.testing.assert_close(G.mapping.w_avg, w.mean(0) * (1 - 0.995))
    G.eval()
    with torch.no_grad():
        assert torch.equal(G(z, psi=1.0), G(z))
        far = G(z, psi=0.0)  # every image is the mean w's (fixed noise)
        torch.testing.assert_close(far, far[:1].expand_as(far))
        half = G.ws(z, psi=0.5)
        torch.testing.assert_close(half, (G.mapping.w_avg + 0.5 * (G.mapping(z) - G.mapping.w_avg))[:, None]
                                   .expand_as(half))


def test_generate_truncates_in_w_for_stylegan2_only():
    from ganforge.sampling import generate, latents, to_uint8

    G, _ = small_pair(num_classes=10)
    with torch.no_grad():
        G.mapping.w_avg.copy_(torch.randn(16))
        images = generate(G, 6, seed=3, batch_size=4, psi=0.5)
        z, c = latents(3, 6, 8), torch.arange(6) % 10
        assert (images == to_uint8(G(z, c, psi=0.5)).numpy()).all()
        assert (generate(G, 6, seed=3, batch_size=6) == to_uint8(G(z, c)).numpy()).all()
    from conftest import untrained_generator

    with pytest.raises(ValueError, match="style-based G"):
        generate(untrained_generator(), 2, seed=0, batch_size=2, psi=0.7)


def test_the_generator_file_rebuilds_it_with_its_mean_w(tmp_path):
    from ganforge.nets import save_generator

    G, D = small_pair(resolution=32, num_classes=10)
    with torch.no_grad():
        G.train()(torch.randn(16, 8), torch.arange(16) % 10)  # moves w_avg off 0
    G.eval()
    assert G.mapping.w_avg.abs().sum() > 0
    loaded, _ = load_generator(save_generator(tmp_path / "generator.pt", G))
    z, c = torch.randn(3, 8), torch.tensor([0, 4, 9])
    with torch.no_grad():
        assert type(loaded) is type(G) and torch.equal(loaded(z, c, psi=0.7), G(z, c, psi=0.7))
    twin = type(D)(**D.config())
    assert twin.state_dict().keys() == D.state_dict().keys()


def cell(grid, row: int, col: int, side: int = 28, pad: int = 2):
    """Image (row, col) of a one-channel sampling.make_grid picture."""
    top, left = pad + row * (side + pad), pad + col * (side + pad)
    return grid[top : top + side, left : left + side]


def test_style_mixing_figure_and_truncation_strip():
    from ganforge.sampling import STYLE_BANDS, TRUNCATION_PSIS, generate, latent, style_pictures, to_uint8

    G, _ = small_pair(num_classes=10)
    with torch.no_grad():
        G.mapping.w_avg.copy_(torch.randn(16))
    cols, rows, seed = 4, 2, 11
    pics = style_pictures(G, seed, columns=cols, rows=rows)
    mixing, strip = pics["style_mixing"], pics["truncation"]
    assert mixing.shape == (2 + (1 + 3 * rows) * 30, 2 + (1 + cols) * 30)
    assert strip.shape == (2 + cols * 30, 2 + len(TRUNCATION_PSIS) * 30)
    a = generate(G, cols, seed=seed, batch_size=cols)[:, 0]  # the header row: seeds seed.., class i mod K
    b = generate(G, 3 * rows, seed=seed + cols, batch_size=3 * rows)[:, 0]  # the left column
    assert (cell(mixing, 0, 0) == 0).all()
    for k in range(cols):
        assert (cell(mixing, 0, 1 + k) == a[k]).all()
        assert (cell(strip, k, len(TRUNCATION_PSIS) - 1) == a[k]).all()  # psi 1: the image itself
        assert (cell(strip, k, 0) == cell(strip, 0, 0)).all()  # psi 0: every row the mean w's image
    for r in range(3 * rows):
        assert (cell(mixing, 1 + r, 0) == b[r]).all()
    # the coarse band's first row, built by hand: A's w with B's in the first third of the layers
    with torch.no_grad():
        wa = G.ws(torch.stack([latent(seed + k, 8) for k in range(cols)]), torch.arange(cols)).clone()
        wb = G.ws(latent(seed + cols, 8)[None], torch.tensor([0]))
        coarse = round(G.num_ws / len(STYLE_BANDS))
        wa[:, :coarse] = wb[:, :coarse]
        mixed = to_uint8(G.synthesis(wa)).numpy()[:, 0]
    for k in range(cols):
        assert (cell(mixing, 1, 1 + k) == mixed[k]).all()
        assert not (mixed[k] == a[k]).all()  # B's coarse styles changed the image


def test_conditional_pair_and_every_resolution():
    for resolution in (28, 32, 64):
        G, D = small_pair(resolution, num_classes=10)
        c = torch.arange(4)
        x = G(torch.randn(4, 8), c, noise=torch.Generator().manual_seed(0))
        assert x.shape == (4, 1, resolution, resolution) and D(x, c).shape == (4,)
        assert D(x, classes=True).shape == (4, 10)
    with pytest.raises(ValueError, match="class-conditional"):
        G(torch.randn(2, 8))


# The recipe through the real train stage, on 2048 real MNIST digits: 16 steps of batch 16 (the path-length
# penalty at steps 4, 8, 12, 16; R1 at 16), conditional (the projection D) with every random stream in play.
STEPS = 16
RUN = {"recipe": "stylegan2", "train.device": "cpu", "train.batch_size": 16, "train.kimg": STEPS * 16 / 1000,
       "train.conditional": True, "train.log_every": 4, "train.image_every": 8, "train.ckpt_every": 4,
       "train.eval.every_kimg": 0}


def project(path: Path, overrides: dict) -> Path:
    path.mkdir(parents=True)
    copy_params(path / "params.yaml")
    shutil.copytree(ROOT / "recipes", path / "recipes")
    set_params(path / "params.yaml", {**RUN, **overrides})
    return path


def train(cwd: Path, data: Path, env: dict):
    return run_stage("train", "--params", "params.yaml", "--data", str(data), cwd=cwd, env=env)


@pytest.mark.slow
def test_the_recipe_trains_through_the_stage_and_resumes_bit_for_bit(tmp_path, tiny_mnist_dir, store):
    whole = project(tmp_path / "whole", {})
    proc = train(whole, tiny_mnist_dir, store)
    assert proc.returncode == 0, proc.stderr
    G, meta = load_generator(whole / "models/generator.pt")
    assert type(G).__name__ == "StyleGAN2Generator" and G.w_dim == 64 and G.mapping_layers == 2
    assert G(torch.randn(2, 64), torch.tensor([3, 7])).shape == (2, 1, 28, 28)
    header, *rows = [r.split("\t") for r in (whole / "results/train/losses.tsv").read_text().splitlines()]
    assert {"pl_penalty", "pl_mean", "r1_penalty"} <= set(header)
    pl = [float(r[header.index("pl_penalty")]) for r in rows]
    assert all(v > 0 for v in pl)  # one application in every 4-step report
    assert float(rows[-1][header.index("pl_mean")]) > 0
    from PIL import Image  # the style-based G's pictures (6 seeds, 2 rows per band; 5 psis)

    assert Image.open(whole / "results/train/style_mixing.png").size == (2 + 7 * 30, 2 + 7 * 30)
    assert Image.open(whole / "results/train/truncation.png").size == (2 + 5 * 30, 2 + 6 * 30)
    # the sample stage truncates in w: psi 0 draws the mean w's image for every seed and class
    set_params(whole / "params.yaml", {"sample.psi": 0.0, "evaluate.n": 20})
    proc = run_stage("sample", "--params", "params.yaml", cwd=whole, env=store)
    assert proc.returncode == 0, proc.stderr
    images = np.load(whole / "samples/images.npz")["images"]
    assert len(images) == 20 and (images == images[0]).all()
    set_params(whole / "params.yaml", {"sample.psi": 1.0})
    assert run_stage("sample", "--params", "params.yaml", cwd=whole, env=store).returncode == 0
    assert len(np.unique(np.load(whole / "samples/images.npz")["images"].reshape(20, -1), axis=0)) == 20

    # half the run, then the whole run continues its checkpoint: the same weights and report, bit for bit
    parts = project(tmp_path / "parts", {"train.kimg": STEPS // 2 * 16 / 1000})
    assert train(parts, tiny_mnist_dir, store).returncode == 0
    assert load_torch(parts / "checkpoints/train.pt")["step"] == STEPS // 2
    set_params(parts / "params.yaml", {"train.kimg": STEPS * 16 / 1000})
    proc = train(parts, tiny_mnist_dir, store)
    assert proc.returncode == 0, proc.stderr
    a, b = load_torch(whole / "checkpoints/train.pt"), load_torch(parts / "checkpoints/train.pt")
    assert a["step"] == b["step"] == STEPS
    for name in a["nets"]:
        for key, value in a["nets"][name].items():
            assert torch.equal(value, b["nets"][name][key]), (name, key)
    assert torch.equal(a["nets"]["style"]["pl_mean"], b["nets"]["style"]["pl_mean"])
    strip = [[c for i, c in enumerate(r) if header[i] != "img_per_s"] for r in rows]
    header_b, *rows_b = [r.split("\t") for r in (parts / "results/train/losses.tsv").read_text().splitlines()]
    assert header_b == header
    assert [[c for i, c in enumerate(r) if header[i] != "img_per_s"] for r in rows_b] == strip


def test_bad_input_exits_2_naming_the_key(tmp_path, tiny_mnist_dir, store):
    # 48 px images: stylegan2 makes 28, 32 and 64 px; the check runs on info.json, before any data is read
    data = tmp_path / "data48"
    data.mkdir()
    info = json.loads((tiny_mnist_dir / "info.json").read_text())
    (data / "info.json").write_text(json.dumps({**info, "shape": [1, 48, 48]}))
    proc = train(project(tmp_path / "p48", {}), data, store)
    assert proc.returncode == 2, proc.stderr
    assert "train.arch" in proc.stderr and "stylegan2" in proc.stderr and "28, 32, 64" in proc.stderr
    # without the recipe (its keys win over params.yaml's): an unknown setting of the architecture
    def arch():  # fresh mappings: set_params lays the dotted keys into them
        return {"recipe": None, "train.arch": {"kind": "stylegan2", **SMALL}, "train.spectral_norm.d": False}

    proc = train(project(tmp_path / "unknown", {**arch(), "train.arch.pl_wieght": 1.0}), tiny_mnist_dir,
                 store)
    assert proc.returncode == 2 and "train.arch" in proc.stderr and "pl_wieght" in proc.stderr, proc.stderr
    # spectral norm: equalised learning rate and demodulation replace it
    proc = train(project(tmp_path / "sn", {**arch(), "train.spectral_norm.d": True}), tiny_mnist_dir, store)
    assert proc.returncode == 2 and "train.spectral_norm.d" in proc.stderr, proc.stderr
