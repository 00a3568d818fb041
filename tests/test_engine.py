"""The engine trains any task object: a task that is not a GAN of images, written here, is trained,
checkpointed, stopped and resumed bit for bit by the same engine the train stage uses.

The task: two linear maps in a minimax game on 2-D points (a "critic" phase repeated twice per step, then a
"mover" phase), drawing its batches from its own device generator. It shares no code with the z -> image
task, so everything the engine does for it (phases and their optimisers, EMA, lr decay, checkpoints of nets,
optimisers and RNG streams, the divergence watch, reports) is the engine's alone.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ganforge.errors import GanforgeError
from ganforge.train.checkpoint import load_checkpoint
from ganforge.train.engine import Phase, Stopped, train
from ganforge.train.fast import FastPath


class PointGame:
    """min over the mover M, max over the critic C of E[C(x)] - E[C(M(z))] - |C|^2 on points."""

    output = "mover"
    reg_every = 1
    items_per_step = 16
    stat_keys = ("loss_critic", "loss_mover", "gap")
    watch = ("loss_critic", "loss_mover")
    divergence_hint = "lower the learning rates?"

    def __init__(self, seed: int, lr: float = 0.05):
        torch.manual_seed(seed)
        self.nets = {"critic": nn.Linear(2, 1), "mover": nn.Linear(2, 2)}
        self.optimizers = {name: torch.optim.Adam(net.parameters(), lr=lr) for name, net in self.nets.items()}
        self.phases = (Phase("critic", "critic", repeat=2), Phase("mover", "mover"))
        self.generators = {"data": torch.Generator().manual_seed(seed + 1)}
        self.resumed_at = None

    def draw(self) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(16, 2, generator=self.generators["data"]) + 3.0  # the "real" points
        z = torch.randn(16, 2, generator=self.generators["data"])
        return x, z

    def accumulate_gradients(self, phase: str, index: int, regularize: bool) -> dict[str, torch.Tensor]:
        C, M = self.nets["critic"], self.nets["mover"]
        x, z = self.draw()
        if phase == "critic":
            gap = C(x).mean() - C(M(z).detach()).mean()
            loss = -gap + C.weight.square().sum()
            loss.backward()
            return {"loss_critic": loss.detach(), "gap": gap.detach()}
        loss = -C(M(z)).mean()
        loss.backward()
        return {"loss_mover": loss.detach()}

    def picture(self, net: nn.Module) -> np.ndarray:
        with torch.no_grad():
            w = net.weight.abs().sum().item()
        return np.full((4, 4), min(255, int(w * 10)), dtype=np.uint8)

    def on_resume(self, step: int) -> None:
        self.resumed_at = step


def fit(tmp_path, steps: int, **kwargs):
    task = PointGame(seed=kwargs.pop("seed", 0), lr=kwargs.pop("lr", 0.05))
    engine = dict(steps=steps, config={"task": "point-game"}, ema_decay=0.9, lr_decay="linear",
                  fast_path=FastPath.choose("off", "cpu"), log_every=3, image_every=5, ckpt_every=4,
                  checkpoint_path=tmp_path / "game.pt", progress=False)
    return task, train(task, **{**engine, **kwargs})


def state(task, result) -> list[torch.Tensor]:
    return [*(p.detach().clone() for net in task.nets.values() for p in net.parameters()),
            *(p.clone() for p in result.ema.parameters())]


def mover_distance(mover: nn.Module) -> float:
    """How far the mover's mean point is from the reals' mean (3, 3)."""
    with torch.no_grad():
        return (mover(torch.zeros(1, 2)) - 3.0).norm().item()


def test_the_engine_trains_a_task_that_is_not_an_image_gan(tmp_path):
    before = mover_distance(PointGame(seed=0).nets["mover"])
    task, result = fit(tmp_path, steps=30)
    assert result.step == 30 and result.kimg == 30 * 16 / 1000
    assert [row["step"] for row in result.history] == [*range(3, 31, 3)]
    assert set(result.history[0]) == {"step", "kimg", "loss_critic", "loss_mover", "gap", "img_per_s"}
    assert mover_distance(task.nets["mover"]) < before - 0.5  # the mover learnt to move toward the reals
    assert result.grid.dtype == np.uint8 and result.ema is not task.nets["mover"]
    lr = task.optimizers["mover"].param_groups[0]["lr"]
    assert lr == 0.0  # linear decay of every optimiser of the task, to 0 at the last step


def test_a_stopped_task_resumes_bit_for_bit(tmp_path):
    full_task, full = fit(tmp_path / "full", steps=20)
    stops = iter([None] * 6 + ["SIGTERM"])  # a signal after step 7: checkpoint that step and stop
    with pytest.raises(Stopped) as e:
        fit(tmp_path / "cut", steps=20, stop=lambda: next(stops, None))
    assert e.value.step == 7
    ckpt = load_checkpoint(tmp_path / "cut" / "game.pt", {"task": "point-game"}, say=lambda s: None)
    assert ckpt["step"] == 7 and set(ckpt["nets"]) == {"critic", "mover"}
    assert set(ckpt["optimizers"]) == {"critic", "mover"} and "data" in ckpt["rng"]["generators"]
    task, resumed = fit(tmp_path / "cut", steps=20, resume=ckpt)
    assert task.resumed_at == 7
    for a, b in zip(state(full_task, full), state(task, resumed), strict=True):
        assert torch.equal(a, b)
    strip = [{k: v for k, v in row.items() if k != "img_per_s"} for row in full.history]
    assert strip == [{k: v for k, v in row.items() if k != "img_per_s"} for row in resumed.history]


def test_the_divergence_watch_names_the_tasks_losses(tmp_path):
    with pytest.raises(GanforgeError, match=r"diverged at step \d+: loss_critic=.*, loss_mover=.* "
                                            r"\(lower the learning rates\?\); the last good checkpoint"):
        fit(tmp_path, steps=40, lr=1e30)


def test_in_training_evaluation_keeps_the_best_snapshot(tmp_path):
    scores = iter([3.0, 1.0, 2.0, 5.0])
    task, result = fit(tmp_path, steps=20, eval_every=5, evaluate=lambda net: {"fid": next(scores)})
    assert [e["step"] for e in result.evals] == [5, 10, 15, 20]
    assert result.best["step"] == 10 and result.best["fid"] == 1.0
    assert set(result.best["weights"]) == {"weight", "bias"}  # the EMA of the output net at step 10
