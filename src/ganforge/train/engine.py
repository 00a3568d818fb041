"""The training engine: steps, phases and their optimisers, EMA, checkpoints, signals, DDP, the divergence
watch, reporting, in-training evaluation and the best snapshot. It knows nothing about z, classes or
images: a task object (ganforge.tasks) owns the maths of one kind of GAN, and the engine steps its phases.

A task provides (see `Task`): its networks and their optimisers, the random streams a step draws from, the
phases of a step (each stepping one optimiser, possibly several times: n_critic), accumulate_gradients(
phase, index, regularize) which runs that phase's forward and backward and returns its stats, and the
picture the report shows. A new kind of GAN is a new task; this file does not change.

The step (`train_step`) is written so that it can be captured as a CUDA graph (ganforge.train.fast): no host
reads inside it; the task draws its batches on the device from explicit torch.Generators, and the step
counter and the running stats sums are device tensors. The host reads the device only at sync points:
every log_every / image_every / ckpt_every steps, and at the in-training evaluations (which run between
steps, eagerly, never inside a captured step).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from ganforge.errors import GanforgeError
from ganforge.train.checkpoint import rng_states, save_checkpoint, set_rng_states
from ganforge.train.distributed import World
from ganforge.train.ema import make_ema, update_ema
from ganforge.train.fast import FastPath
from ganforge.train.fast import log as fast_log


def stream_seed(seed: int, stream: str) -> int:
    """Independent, stable seeds for each random stream (init, data, z, fixed z) from the master seed."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{stream}".encode()).digest()[:8], "little") >> 1


@dataclass(frozen=True)
class Phase:
    name: str  # what task.accumulate_gradients is asked to do ("D", "G", ...)
    optimizer: str  # the key of task.optimizers this phase steps
    repeat: int = 1  # consecutive times per step (n_critic); index 0 .. repeat - 1


class Task(Protocol):
    """What the engine needs of a kind of GAN (tasks/generation.py is the z -> image one)."""

    nets: dict[str, nn.Module]  # every trained network (plain modules), checkpointed under its name
    optimizers: dict[str, torch.optim.Optimizer]  # their optimisers, by the names phases use
    generators: dict[str, torch.Generator]  # every random stream a step draws from (checkpointed)
    phases: tuple[Phase, ...]  # the phases of one step, in order
    stat_keys: tuple[str, ...]  # every stats key a step returns, in report order
    watch: tuple[str, ...]  # the stats whose non-finite value is divergence (the phases' losses)
    output: str  # the network that is the product: averaged (EMA), evaluated, pictured, saved
    reg_every: int  # lazy regularisation: steps with step % reg_every == 0 are the regularising kind
    items_per_step: int  # real items a step shows (kimg counts them)
    divergence_hint: str  # what to try when training diverges (names the params keys)

    def accumulate_gradients(self, phase: str, index: int, regularize: bool) -> dict[str, torch.Tensor]:
        """Forward and backward of one phase (the engine zeroes the gradients before and steps the
        optimiser after); returns detached 0-dim stats on the device (no host sync)."""

    def picture(self, net: nn.Module) -> np.ndarray:
        """uint8 [H, W(, C)]: what the report shows of `net` (the output network or its EMA, eval mode)."""

    def on_resume(self, step: int) -> None:
        """Called after a checkpoint's RNG states are restored, at `step` (per-rank streams reseed here)."""


class Stopped(GanforgeError):
    """Training was asked to stop (SIGTERM, SIGINT) and wrote a checkpoint at the step it had reached."""

    def __init__(self, signal_name: str, step: int, checkpoint_path: str | Path | None):
        import signal

        self.signal_name, self.step = signal_name, step
        saved = f"checkpoint {checkpoint_path} saved at step {step}" if checkpoint_path else "no checkpoint"
        super().__init__(f"stopped by {signal_name} at step {step}: {saved}; run `dvc repro` (or this "
                         "command again) to resume", exit_code=128 + signal.Signals[signal_name].value)


@dataclass
class TrainResult:
    nets: dict[str, nn.Module]  # the trained networks (train mode)
    ema: nn.Module | None  # the output network's moving average (eval mode), None when EMA is off
    history: list[dict]  # one row per log interval: step, kimg, the task's stats, img_per_s
    grid: np.ndarray  # uint8 [H, W(, C)]: the last picture
    step: int  # steps done
    kimg: float  # thousands of real items shown
    evals: list[dict]  # one row per in-training evaluation: step, kimg, the evaluation's metrics
    best: dict | None  # the evaluation with the lowest best_key: step, kimg, that metric, weights (CPU)


def train(
    task: Task,  # the kind of GAN, built (tasks/): its networks, optimisers, streams and phase maths
    *,
    steps: int,  # steps of the whole run (a resumed run continues to it)
    config: dict,  # what a checkpoint must match to be resumed (validated params, data hash, code)
    ema_decay: float | None,  # per-step decay of the output network's moving average; None = no EMA
    lr_decay: str,  # none | linear: every optimiser's learning rate falls linearly to 0 over the run
    fast_path: FastPath,  # how the step is launched (CUDA graph, bf16): train.fast, resolved for the device
    log_every: int,  # steps between stats reports (each one host sync)
    image_every: int,  # steps between pictures
    ckpt_every: int,  # steps between checkpoints
    eval_every: int = 0,  # steps between in-training evaluations (and at the last step); 0 = none
    evaluate: Callable[[nn.Module], dict] | None = None,  # evaluate(output net, eval mode) -> metrics
    best_key: str = "fid",  # the evaluation's metric whose lowest value is kept as TrainResult.best
    checkpoint_path: str | Path | None = None,  # where checkpoints go; None = no checkpoints
    resume: dict | None = None,  # a checkpoint from checkpoint.load_checkpoint with the same config
    checkpoint_meta: dict | None = None,  # stored as is in each checkpoint (e.g. the MLflow run id)
    log: Callable[[int, dict], None] | None = None,  # log(step, stats) at each stats report and evaluation
    log_grid: Callable[[int, np.ndarray], None] | None = None,  # log_grid(step, task.picture(...))
    stop: Callable[[], str | None] | None = None,  # polled after each step; a signal name = checkpoint
                                                   # that step and raise Stopped (cli.GracefulStop)
    progress: bool = True,  # show a rich progress bar
    world: World | None = None,  # this process among several (train/distributed.py); None = the only one.
                                 # Every rank calls train(); only rank 0 is given log, log_grid, evaluate.
) -> TrainResult:
    world = world or World()
    assert not eval_every or evaluate is not None or not world.main, "eval_every needs an evaluate function"
    nets, optimizers, generators = task.nets, task.optimizers, task.generators
    output = nets[task.output]
    ema = make_ema(output) if ema_decay is not None else None  # after fast_path.prepare (the task's layout)
    base_lrs = {name: [g["lr"] for g in opt.param_groups] for name, opt in optimizers.items()}
    dev = next(output.parameters()).device

    # Device-side loop state: nothing here is read by the host inside a step.
    step_t = torch.zeros((), dtype=torch.int64, device=dev)  # steps done (the EMA warm-up reads it)
    sums = torch.zeros(len(task.stat_keys) + 1, device=dev)  # stat_keys summed since the last report, steps
    # [step, the watched stats..., sum of weights] of the first step that left something non-finite; -1 = none
    first_bad = torch.tensor([-1.0, *[0.0] * (len(task.watch) + 1)], dtype=torch.float64, device=dev)
    weights = [p for net in nets.values() for p in net.parameters()]

    def train_step(regularize: bool) -> None:
        stats: dict[str, torch.Tensor] = {}
        for phase in task.phases:
            opt = optimizers[phase.optimizer]
            for index in range(phase.repeat):
                opt.zero_grad(set_to_none=True)
                stats.update(task.accumulate_gradients(phase.name, index, regularize))
                opt.step()
        step_t.add_(1)
        if ema is not None:
            update_ema(ema, output, step_t, ema_decay)
        sums.add_(torch.stack([*(stats[k].float() for k in task.stat_keys), torch.ones_like(sums[0])]))
        # Divergence watch: non-finite values only (a WGAN critic's outputs are unbounded by design). The
        # weights are watched too: a finite loss can still have overflowing gradients (NaN weights after this
        # step), and the checkpoint of this step must not hold them.
        weight_sum = torch.stack([w.detach().sum() for w in weights]).sum()  # NaN/inf iff some weight is
        watched = (step_t, *(stats[k] for k in task.watch), weight_sum)
        watch = torch.stack([t.detach().double() for t in watched])
        newly_bad = (first_bad[0] < 0) & ~torch.isfinite(watch).all()
        first_bad.copy_(torch.where(newly_bad, watch, first_bad))

    # On the fast path a step is replayed as a CUDA graph (after eager warm-up steps). Lazy regularisation
    # (reg_every > 1) makes two kinds of step: the plain one is graphed, the regularised one runs eagerly on
    # the same tensors. A learning-rate schedule changes a value a graph would have baked in: all eager.
    # Several processes: no graph (DDP's all-reduce runs eagerly here); bf16, channels_last, fused Adam kept.
    lazy = task.reg_every > 1
    if fast_path.enabled and world.size > 1 and world.main:
        fast_log.warning("fast path: no CUDA graph with %d processes (DDP); training eagerly (bf16, "
                         "channels_last and fused Adam kept)", world.size)
    plain_step = fast_path.step(lambda: train_step(regularize=not lazy), generators.values(),
                                nets.values()) if lr_decay == "none" and world.size == 1 else None

    def step_fn(step: int) -> None:
        regularize = step % task.reg_every == 0
        if plain_step is not None and (not lazy or not regularize):
            plain_step()
        else:
            train_step(regularize)
        if lr_decay == "linear":  # the lr for the next step: lr * (1 - step / steps), 0 after the last
            for name, opt in optimizers.items():
                for group, lr in zip(opt.param_groups, base_lrs[name], strict=True):
                    group["lr"] = lr * (1 - step / steps)

    def picture() -> np.ndarray:
        net = ema if ema is not None else output.eval()
        grid = task.picture(net)
        output.train()
        return grid

    def checkpoint_state(step: int) -> dict:
        def cpu(sd):  # plain CPU tensors: the file loads on any machine
            return {k: v.detach().cpu() for k, v in sd.items()}

        return {"step": step, "config": config, "meta": dict(checkpoint_meta or {}), "history": history,
                "nets": {name: cpu(net.state_dict()) for name, net in nets.items()},
                "ema": cpu(ema.state_dict()) if ema is not None else None,
                "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
                "loop": {"step_t": step_t.cpu(), "sums": sums.cpu()},
                "rng": rng_states(generators), "evals": evals, "best": best, "world_size": world.size}

    start_step, history, evals, best = 0, [], [], None
    if resume is not None:
        assert resume["config"] == config, "resume was given a checkpoint written with a different config"
        start_step, history = int(resume["step"]), list(resume["history"])
        evals, best = list(resume["evals"]), resume["best"]
        for name, net in nets.items():
            net.load_state_dict(resume["nets"][name])
        if ema is not None:
            ema.load_state_dict(resume["ema"])
        for name, opt in optimizers.items():
            opt.load_state_dict(resume["optimizers"][name])
        step_t.copy_(resume["loop"]["step_t"])
        sums.copy_(resume["loop"]["sums"])
        set_rng_states(resume["rng"], generators)  # rank 0's streams
        task.on_resume(start_step)
        if start_step > steps:
            raise GanforgeError(f"the checkpoint is at step {start_step}, beyond this run's {steps} steps; "
                                f"delete {checkpoint_path} to train a shorter run")

    def check_finite() -> None:
        bad = world.earliest_bad(first_bad).tolist()  # note: a host sync point
        if bad[0] >= 0:
            values = dict(zip(task.watch, bad[1:-1], strict=True))
            what = ("is not finite" if not all(map(math.isfinite, values.values())) else
                    f"but its update made the weights non-finite (sum {bad[-1]})")
            kept = f"; the last good checkpoint is kept in {checkpoint_path}" if checkpoint_path else ""
            shown = ", ".join(f"{k}={v}" for k, v in values.items())
            raise GanforgeError(f"training diverged at step {int(bad[0])}: {shown} {what} "
                                f"({task.divergence_hint}){kept}")

    def kimg_at(step: int) -> float:
        return step * task.items_per_step / 1000

    columns = [TextColumn("[bold]train step"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[info]}"), TimeRemainingColumn()]
    bar = Progress(*columns, disable=not progress, console=Console(stderr=True))
    bar_task = bar.add_task("train", total=steps, completed=start_step, info="")
    t_last, step_last = time.perf_counter(), start_step
    with bar:
        for step in range(start_step + 1, steps + 1):  # step = steps done once this one finishes
            step_fn(step)
            bar.advance(bar_task)
            stopping = stop() if stop is not None else None  # a signal arrived: checkpoint this step, end
            last = step == steps
            if world.size > 1:  # all ranks stop at one step: they agree at each report (a sync point anyway)
                stopping = world.agree_on_stop(stopping) if step % log_every == 0 or last else None
            at_log, at_image = step % log_every == 0 or last, step % image_every == 0 or last
            at_ckpt = checkpoint_path is not None and (step % ckpt_every == 0 or last or stopping is not None)
            at_eval = bool(eval_every) and (step % eval_every == 0 or last)
            if not (at_log or at_image or at_ckpt or at_eval or stopping):
                continue
            check_finite()  # before anything is reported or saved: a checkpoint never holds diverged weights
            world.average_(sums)  # the mean over the ranks of their sums (the step count stays the same)
            row = None
            if at_log:
                means = (sums[:-1] / sums[-1]).tolist()  # host sync
                sums.zero_()
                img_per_s = (step - step_last) * task.items_per_step / max(time.perf_counter() - t_last, 1e-9)
                row = {"step": step, "kimg": kimg_at(step), **dict(zip(task.stat_keys, means, strict=True)),
                       "img_per_s": img_per_s}
                history.append(row)
                shown = "  ".join(f"{k} {row[k]:.3f}" for k in task.watch)
                bar.update(bar_task, info=f"kimg {row['kimg']:.1f}  {shown}  {img_per_s:.0f} img/s")
            if at_eval and world.main:  # between steps, eagerly: never inside a captured step
                net = ema if ema is not None else output
                result = {"step": step, "kimg": kimg_at(step), **evaluate(net)}
                output.train()  # evaluate() puts the network in eval mode (the EMA lives there anyway)
                evals.append(result)
                if best is None or result[best_key] < best[best_key]:  # the snapshot to keep (a late
                    best = {"step": step, "kimg": result["kimg"], best_key: result[best_key],  # collapse
                            "weights": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}}
            if at_ckpt and world.main:  # before reporting: the checkpoint's history holds this row, so a
                save_checkpoint(checkpoint_path, checkpoint_state(step))  # report lost to a crash is resent
            if row is not None and log is not None:
                log(step, {k: v for k, v in row.items() if k != "step"})
            if at_eval and log is not None:
                log(step, {f"eval_{k}": v for k, v in evals[-1].items() if k != "step"})
            if at_image and log_grid is not None:
                log_grid(step, picture())
            if stopping:
                raise Stopped(stopping, step, checkpoint_path)
            t_last, step_last = time.perf_counter(), step  # img/s counts training steps, not reporting

    return TrainResult(nets=nets, ema=ema, history=history, grid=picture(), step=steps, kimg=kimg_at(steps),
                       evals=evals, best=best)
