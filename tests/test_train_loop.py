"""The training engine in-process on a real MNIST subset: determinism, resume, divergence, checkpoints.

Each run is the train stage's own path without MLflow: validated params (conftest.TINY: 10 steps) ->
ganforge.train.build -> ganforge.train.train (conftest.tiny_fit)."""

import pickle
import re

import numpy as np
import pytest
import torch

from conftest import tiny_fit, tiny_params
from ganforge.data.prepared import load_split
from ganforge.errors import GanforgeError
from ganforge.train import Stopped, trajectory_config
from ganforge.train.checkpoint import load_checkpoint, save_checkpoint
from ganforge.train.ema import make_ema, update_ema


@pytest.fixture(scope="module")
def x_train(tiny_mnist_dir):
    return load_split(tiny_mnist_dir, "train")[0][:512]  # uint8 [512, 1, 28, 28]


def config_of(overrides: dict | None = None) -> dict:
    """The trajectory config a tiny_fit(overrides=...) run writes into its checkpoints."""
    return trajectory_config(tiny_params(overrides), "tiny", torch.device("cpu"))


def states_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def finite(state: dict) -> bool:
    return all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_same_seed_same_weights_other_seed_other_weights(x_train):
    a, b = tiny_fit(x_train), tiny_fit(x_train)
    assert states_equal(a.nets["G"], b.nets["G"]) and states_equal(a.ema, b.ema)
    assert states_equal(a.nets["D"], b.nets["D"])
    assert [r["loss_d"] for r in a.history] == [r["loss_d"] for r in b.history]
    c = tiny_fit(x_train, overrides={"base.seed": 1})
    assert not states_equal(a.nets["G"], c.nets["G"])
    # the report: one row per log interval, D's outputs are probabilities, the grid is 8x8 images of 28 px
    assert [r["step"] for r in a.history] == [5, 10] and a.step == 10 and a.kimg == 0.32
    assert all(0 < r["d_real"] < 1 and 0 < r["d_fake"] < 1 for r in a.history)
    assert a.grid.shape == (8 * 30 + 2, 8 * 30 + 2) and a.grid.dtype == np.uint8


def test_resume_continues_bit_for_bit_and_a_longer_run_extends_a_shorter_one(x_train, tmp_path):
    # reference: 20 steps in one go. Then 10 steps, checkpoint, and a 20-step run resumed from it.
    longer = {"train.kimg": 0.64}
    full = tiny_fit(x_train, overrides=longer)
    ckpt_path = tmp_path / "train.pt"
    tiny_fit(x_train, overrides={"train.ckpt_every": 7}, checkpoint_path=ckpt_path)  # at 7 and 10 (last)
    said = []
    ckpt = load_checkpoint(ckpt_path, config_of(longer), say=said.append)
    assert ckpt["step"] == 10 and "resuming" in said[0]
    resumed = tiny_fit(x_train, overrides=longer, checkpoint_path=ckpt_path, resume=ckpt)
    assert states_equal(full.nets["G"], resumed.nets["G"]) and states_equal(full.ema, resumed.ema)
    assert states_equal(full.nets["D"], resumed.nets["D"])
    for key in ("step", "loss_d", "loss_g", "d_real", "d_fake"):
        assert [r[key] for r in full.history] == [r[key] for r in resumed.history]
    assert load_checkpoint(ckpt_path, config_of(longer))["step"] == 20


def test_changed_config_starts_fresh_and_says_why(x_train, tmp_path):
    ckpt_path = tmp_path / "train.pt"
    tiny_fit(x_train, overrides={"train.kimg": 0.16}, checkpoint_path=ckpt_path)
    said = []
    assert load_checkpoint(ckpt_path, config_of({"train.g.lr": 1e-3}), say=said.append) is None
    # the message names the key that changed, as params.yaml spells it, with its old and new value
    assert "starting fresh" in said[0] and "train.g.lr: 0.0002 -> 0.001" in said[0], said[0]


def test_divergence_stops_naming_the_step_and_keeps_the_last_good_checkpoint(x_train, tmp_path):
    # lr 3e8 takes a few steps to blow up (step 6 here): the weights overflow, then the losses
    ckpt_path = tmp_path / "train.pt"
    absurd = {"train.g.lr": 3e8, "train.d.lr": 3e8, "train.kimg": 3.2, "train.ckpt_every": 1,
              "train.log_every": 1000}
    with pytest.raises(GanforgeError, match=r"diverged at step \d+: loss_d=.*, loss_g=.*") as e:
        tiny_fit(x_train, overrides=absurd, checkpoint_path=ckpt_path)
    bad_step = int(re.search(r"diverged at step (\d+)", str(e.value)).group(1))
    assert bad_step > 1 and f"last good checkpoint is kept in {ckpt_path}" in str(e.value)
    ckpt = load_checkpoint(ckpt_path, config_of(absurd))
    assert ckpt["step"] == bad_step - 1  # checkpoints every step: the last one is the step before divergence
    assert ckpt["nets"].keys() == {"G", "D"} and ckpt["ema"] is not None
    assert all(finite(state) for state in (ckpt["nets"]["G"], ckpt["nets"]["D"], ckpt["ema"]))


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


@pytest.fixture(scope="module")
def judge(tiny_mnist_dir):
    """A real (tiny) in-training evaluation: a one-epoch evaluator and the test split's reference."""
    from ganforge.metrics import Reference, Settings, extract, in_training_evaluation
    from ganforge.metrics.evaluator import train_evaluator

    x, y = load_split(tiny_mnist_dir, "train")
    x_test, _ = load_split(tiny_mnist_dir, "test")
    net = train_evaluator(x, y, num_classes=10, feature_dim=32, epochs=1, batch_size=256, lr=3e-3, seed=0,
                          device="cpu", progress=False)
    ref = Reference.of(extract(net, x_test, torch.device("cpu")))
    settings = Settings(kid_subsets=1, kid_subset_size=2, pr_k=3, dc_k=5, seed=0, device="cpu")
    return in_training_evaluation(net, ref, settings, seed=0)


# every toolbox option at once: R1 (lazy, every 2), DiffAugment, TTUR, two D steps, linear decay, hinge + SN,
# and an in-training evaluation (every 4 steps, on 64 images: engine arguments, bound by the caller)
TOOLBOX = {"train.reg.kind": "r1", "train.reg.weight": 1.0, "train.reg.every": 2,
           "train.augment": "color,translation,cutout", "train.g.lr": 1e-4, "train.d.lr": 4e-4,
           "train.g.beta1": 0.0, "train.g.beta2": 0.9, "train.d.beta1": 0.0, "train.d.beta2": 0.9,
           "train.d_steps": 2, "train.lr_decay": "linear", "train.spectral_norm.d": True,
           "train.loss": "hinge", "train.kimg": 0.64}  # 0.64 kimg / (32 x 2 per step) = 10 steps
EVAL_EVERY, EVAL_N = 4, 64


def test_every_toolbox_option_resumes_bit_for_bit_and_keeps_the_best_snapshot(x_train, tmp_path, judge):
    def evaluate(G):
        return judge(G, EVAL_N)

    run = dict(overrides=TOOLBOX, eval_every=EVAL_EVERY, evaluate=evaluate)
    full = tiny_fit(x_train, **run)
    assert full.step == 10 and full.kimg == 0.64
    ckpt_path = tmp_path / "train.pt"
    with pytest.raises(Stopped, match="stopped by SIGTERM at step 6"):  # as a signal would; checkpointed
        signals = iter([None] * 5 + ["SIGTERM"])
        tiny_fit(x_train, **run, checkpoint_path=ckpt_path, stop=lambda: next(signals))
    ckpt = load_checkpoint(ckpt_path, config_of(TOOLBOX))
    assert ckpt["step"] == 6 and [e["step"] for e in ckpt["evals"]] == [4]
    resumed = tiny_fit(x_train, **run, checkpoint_path=ckpt_path, resume=ckpt)
    assert states_equal(full.nets["G"], resumed.nets["G"]) and states_equal(full.ema, resumed.ema)
    assert states_equal(full.nets["D"], resumed.nets["D"])

    def measured(rows):  # img_per_s is a measurement, not a result
        return [{k: v for k, v in r.items() if k != "img_per_s"} for r in rows]

    assert measured(full.history) == measured(resumed.history)
    assert [e["fid"] for e in full.evals] == [e["fid"] for e in resumed.evals]
    assert [e["step"] for e in full.evals] == [4, 8, 10]  # every 4 steps and at the end

    # the report has the loss's and the regulariser's own stats; the penalty is applied every 2nd step
    row = full.history[-1]
    assert {"logit_real", "logit_fake", "r1_penalty", "r1_grad_norm"} <= set(row) and row["r1_penalty"] > 0
    # linear decay: both learning rates reach 0 at the last step
    last = load_checkpoint(ckpt_path, config_of(TOOLBOX))
    assert last["step"] == 10
    assert all(last["optimizers"][net]["param_groups"][0]["lr"] == 0 for net in ("G", "D"))

    # the best snapshot is the evaluation with the lowest FID, and its weights give that FID again
    best = min(full.evals, key=lambda e: e["fid"])
    assert (full.best["step"], full.best["fid"]) == (best["step"], best["fid"])
    assert (resumed.best["step"], resumed.best["fid"]) == (best["step"], best["fid"])
    G = full.ema
    G.load_state_dict(full.best["weights"])
    assert evaluate(G)["fid"] == pytest.approx(best["fid"], rel=1e-9)


def test_wgan_losses_and_resnet_train_and_their_stats_are_reported(x_train):
    wgan_gp = {"train.arch": "resnet", "train.loss": "wgan", "train.reg.kind": "gp", "train.reg.weight": 10.0,
               "train.kimg": 0.16}
    result = tiny_fit(x_train, overrides=wgan_gp)
    row = result.history[-1]
    assert {"critic_real", "critic_fake", "wasserstein", "gp_penalty", "gp_grad_norm"} <= set(row)
    assert all(np.isfinite(v) for v in row.values())
