"""The training function in-process on a real MNIST subset: determinism, resume, divergence, checkpoints."""

import pickle
import re

import numpy as np
import pytest
import torch

from ganforge.data.prepared import load_split
from ganforge.errors import GanforgeError
from ganforge.train import train, trajectory_config
from ganforge.train.checkpoint import load_checkpoint, save_checkpoint
from ganforge.train.ema import make_ema, update_ema

# tiny but real: 8/8-channel DCGAN, batch 32; 0.32 kimg = 10 steps
TINY = dict(seed=0, data_hash="tiny", loss="ns", z_dim=16, g_channels=8, d_channels=8, batch_size=32, lr=2e-4,
            beta1=0.5, beta2=0.999, kimg=0.32, ema_enabled=True, ema_decay=0.999, device="cpu", fast="auto",
            log_every=5, image_every=10, ckpt_every=5, progress=False)


@pytest.fixture(scope="module")
def x_train(tiny_mnist_dir):
    return load_split(tiny_mnist_dir, "train")[0][:512]  # uint8 [512, 1, 28, 28]


def states_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_same_seed_same_weights_other_seed_other_weights(x_train):
    a, b = train(x_train, **TINY), train(x_train, **TINY)
    assert states_equal(a.G, b.G) and states_equal(a.G_ema, b.G_ema)
    assert [r["loss_d"] for r in a.history] == [r["loss_d"] for r in b.history]
    c = train(x_train, **{**TINY, "seed": 1})
    assert not states_equal(a.G, c.G)
    # the report: one row per log interval, D's outputs are probabilities, the grid is 8x8 images of 28 px
    assert [r["step"] for r in a.history] == [5, 10]
    assert all(0 < r["d_real"] < 1 and 0 < r["d_fake"] < 1 for r in a.history)
    assert a.grid.shape == (8 * 30 + 2, 8 * 30 + 2) and a.grid.dtype == np.uint8


def test_resume_continues_bit_for_bit_and_a_longer_run_extends_a_shorter_one(x_train, tmp_path):
    # reference: 20 steps in one go. Then 10 steps, checkpoint, and a 20-step run resumed from it.
    full = train(x_train, **{**TINY, "kimg": 0.64})
    ckpt_path = tmp_path / "train.pt"
    train(x_train, **{**TINY, "ckpt_every": 7}, checkpoint_path=ckpt_path)  # checkpoints at 7 and 10 (last)
    said = []
    ckpt = load_checkpoint(ckpt_path, trajectory_config({**TINY, "kimg": 0.64}), say=said.append)
    assert ckpt["step"] == 10 and "resuming" in said[0]
    resumed = train(x_train, **{**TINY, "kimg": 0.64}, checkpoint_path=ckpt_path, resume=ckpt)
    assert states_equal(full.G, resumed.G) and states_equal(full.G_ema, resumed.G_ema)
    for key in ("step", "loss_d", "loss_g", "d_real", "d_fake"):
        assert [r[key] for r in full.history] == [r[key] for r in resumed.history]
    assert load_checkpoint(ckpt_path, trajectory_config({**TINY, "kimg": 0.64}))["step"] == 20


def test_changed_config_starts_fresh_and_says_why(x_train, tmp_path):
    ckpt_path = tmp_path / "train.pt"
    train(x_train, **{**TINY, "kimg": 0.16}, checkpoint_path=ckpt_path)
    said = []
    assert load_checkpoint(ckpt_path, trajectory_config({**TINY, "lr": 1e-3}), say=said.append) is None
    assert "starting fresh" in said[0] and "lr: 0.0002 -> 0.001" in said[0]


def test_divergence_stops_naming_the_step_and_keeps_the_last_good_checkpoint(x_train, tmp_path):
    # lr 3e8 takes a few steps to blow up (step 6 here): the weights overflow, then the losses
    ckpt_path = tmp_path / "train.pt"
    absurd = {**TINY, "lr": 3e8, "kimg": 3.2, "ckpt_every": 1, "log_every": 1000}
    with pytest.raises(GanforgeError, match=r"diverged at step \d+: loss_d=.*, loss_g=.*") as e:
        train(x_train, **absurd, checkpoint_path=ckpt_path)
    bad_step = int(re.search(r"diverged at step (\d+)", str(e.value)).group(1))
    assert bad_step > 1 and f"last good checkpoint is kept in {ckpt_path}" in str(e.value)
    ckpt = load_checkpoint(ckpt_path, trajectory_config(absurd))
    assert ckpt["step"] == bad_step - 1  # checkpoints every step: the last one is the step before divergence
    for net in ("G", "D", "G_ema"):
        assert all(torch.isfinite(v).all() for v in ckpt[net].values() if v.is_floating_point())


def test_a_checkpoint_that_needs_unpickling_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("this ran on load",))

    path = tmp_path / "train.pt"
    path.write_bytes(pickle.dumps({"format": "x", "payload": Evil()}, protocol=2))
    with pytest.raises(GanforgeError, match="refusing to load .*arbitrary unpickling"):
        load_checkpoint(path, {})
    save_checkpoint(path, {"step": 1})
    assert load_checkpoint(path, {"a": 1}, say=lambda _: None) is None  # readable, other config: fresh start


def test_ema_warms_up_then_uses_the_decay():
    G = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(G.weight)
    G_ema = make_ema(G)
    with torch.no_grad():
        G.weight.fill_(1.0)
    update_ema(G_ema, G, torch.tensor(1), decay=0.999)  # beta = 2/11 in the warm-up
    assert G_ema.weight.item() == pytest.approx(9 / 11)
    update_ema(G_ema, G, torch.tensor(10_000), decay=0.5)  # warm-up over: beta = decay
    assert G_ema.weight.item() == pytest.approx(1 - (2 / 11) * 0.5)
