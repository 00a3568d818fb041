"""Image-to-image translation's networks and task object (issue 31): the PatchGAN's receptive field equals its
design, the U-Net's skips reach the output, the pool of fakes swaps with probability 1/2 once full, the
CycleGAN and pix2pix G losses equal their hand-computed terms, and a CycleGAN trained by the engine resumes
bit for bit (the pools included)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ganforge.tasks.translation import ImageTranslation, Settings
from ganforge.train.engine import train
from ganforge.train.fast import FastPath
from ganforge.translate.nets import ImagePool, PatchDiscriminator, UnetGenerator


def settings(**kw) -> Settings:
    base = {"model": "cyclegan", "g_width": 4, "g_blocks": 1, "g_downs": 5, "d_width": 4, "d_layers": 2,
            "batch_size": 2, "lr": 2e-4, "loss": "lsgan", "l1": 100.0, "cycle": 10.0, "identity": 0.5,
            "pool": 3}
    return Settings(**{**base, **kw})


def digits(n: int, seed: int) -> np.ndarray:
    """Little images with structure (a bright square at a random place): uint8 [n, 1, 28, 28]."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 1, 28, 28), np.uint8)
    for i, (r, c) in enumerate(rng.integers(2, 18, (n, 2))):
        x[i, 0, r : r + 8, c : c + 8] = 255
    return x


@pytest.mark.parametrize(("layers", "rf"), [(3, 70), (2, 34), (1, 16)])
def test_patchgan_receptive_field_is_its_design(layers, rf):
    D = PatchDiscriminator(1, 4, layers)
    assert D.receptive_field() == rf  # junyanz's n_layers = 3: 70 x 70
    # measured: the input pixels that one central score depends on span exactly rf x rf (through the
    # convolutions: instance norm's image-wide statistics, left out here, make every score see all of it)
    D.net = torch.nn.Sequential(*(torch.nn.Identity() if isinstance(m, torch.nn.InstanceNorm2d) else m
                                  for m in D.net))
    side = 2 * rf + 32
    x = torch.randn(1, 1, side, side, requires_grad=True)
    scores = D.score_map(x)
    h, w = scores.shape[-2:]
    scores[0, 0, h // 2, w // 2].backward()
    rows, cols = torch.nonzero(x.grad[0, 0].abs() > 0, as_tuple=True)
    assert int(rows.max() - rows.min() + 1) == rf and int(cols.max() - cols.min() + 1) == rf


def test_unet_skips_reach_the_output():
    torch.manual_seed(0)
    G = UnetGenerator(1, 1, 4, downs=5, dropout=False).eval()
    x = torch.randn(1, 1, 32, 32, requires_grad=True)
    G(x)[0, 0, 5, 7].backward()
    assert x.grad[0, 0, 5, 7].abs() > 0
    # cut the bottleneck (the innermost level returns zeros): the output still follows the input, through
    # the skips alone
    from ganforge.translate.nets import _UnetLevel

    level = G.net
    while inner := [m for m in level.model if isinstance(m, _UnetLevel)]:
        level = inner[0]
    level.model = _Zeros()  # its output beside its skip: zeros of the skip's shape
    x.grad = None
    G(x)[0, 0, 5, 7].backward()
    assert x.grad.abs().sum() > 0


class _Zeros(torch.nn.Module):
    def forward(self, x):
        return torch.zeros_like(x)


def test_pool_returns_past_fakes_half_the_time_once_full():
    pool, gen = ImagePool(5, (1, 1, 1)), torch.Generator().manual_seed(0)
    for k in range(5):  # until full: every fake is stored and returned
        assert float(pool(torch.full((1, 1, 1, 1), float(k)), gen)) == k
    past, n = 0, 4000
    for k in range(5, 5 + n):
        past += float(pool(torch.full((1, 1, 1, 1), float(k)), gen)) != k
    assert abs(past / n - 0.5) < 0.03
    assert int(pool.count) == 5 and ImagePool(0, (1, 1, 1))(torch.ones(2, 1, 1, 1), gen).shape == (2, 1, 1, 1)


def test_g_losses_equal_their_hand_computed_terms():
    x_a, x_b = digits(6, 0), digits(6, 1)
    for s in (settings(), settings(model="pix2pix", loss="ns", pool=0)):
        task = ImageTranslation(s, x_a, x_b, paired=True, seed=0, device="cpu", fast_path=FastPath(False))
        for m in task.G.modules():  # eval-free nets: no dropout, so a second forward is the same
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        state = task.generators["data"].get_state()
        stats = task.accumulate_gradients("G", 0, True)
        task.generators["data"].set_state(state)
        a, b = task.draw()
        G, D, mse = task.G, task.D, lambda t, v: 0.5 * (t - v).square().mean()
        with torch.no_grad():
            if s.model == "cyclegan":
                fb, fa = G(a, "ab"), G(b, "ba")
                want = (mse(D["b"](fb), 1) + mse(D["a"](fa), 1)
                        + 10 * ((G(fb, "ba") - a).abs().mean() + (G(fa, "ab") - b).abs().mean())
                        + 10 * 0.5 * ((G(a, "ba") - a).abs().mean() + (G(b, "ab") - b).abs().mean()))
            else:
                fb = G(a)
                adv = torch.nn.functional.binary_cross_entropy_with_logits(
                    D["b"](torch.cat([a, fb], 1)), torch.ones_like(D["b"](torch.cat([a, fb], 1))))
                want = adv + 100 * (fb - b).abs().mean()
        assert float(stats["loss_g"]) == pytest.approx(float(want), rel=1e-5)
        assert set(stats) | set(task.accumulate_gradients("D", 0, True)) == set(task.stat_keys)


def test_cyclegan_resumes_bit_for_bit_pools_included(tmp_path):
    x_a, x_b = digits(8, 0), digits(10, 1)

    def run(steps, resume=None, path=None):
        task = ImageTranslation(settings(), x_a, x_b, paired=False, seed=3, device="cpu",
                                fast_path=FastPath(False))
        return train(task, steps=steps, config={"t": 1}, ema_decay=0.99, lr_decay="none",
                     fast_path=task.fast_path, log_every=2, image_every=4, ckpt_every=2, checkpoint_path=path,
                     resume=resume, progress=False), task

    whole, _ = run(6)
    from ganforge.train.checkpoint import load_checkpoint

    run(4, path=tmp_path / "ck.pt")
    ck = load_checkpoint(tmp_path / "ck.pt", {"t": 1})
    assert int(ck["nets"]["pools"]["a.count"]) == 3  # full: 4 steps x 2 fakes > 3
    resumed, _ = run(6, resume=ck)
    for name in ("G", "D", "pools"):
        a, b = whole.nets[name].state_dict(), resumed.nets[name].state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert whole.grid.shape == resumed.grid.shape and (whole.grid == resumed.grid).all()
