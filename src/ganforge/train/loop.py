"""The training loop: one function, read top to bottom. Its signature is its schema.

The GAN maths lives in ganforge.losses; this file builds the networks, keeps the data on the device, steps
the two phases, and reports. The step itself (`train_step`) is written so that it could be captured as a
CUDA graph (ganforge.train.fast): no host reads inside it, batches and z are drawn on the device
from explicit torch.Generators, the step counter and the running loss sums are device tensors.
The host reads the device only at sync points: every log_every / image_every / ckpt_every steps.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ganforge.errors import GanforgeError
from ganforge.losses import make_loss
from ganforge.nets import build_networks
from ganforge.sampling import make_grid, to_uint8
from ganforge.train.checkpoint import rng_states, save_checkpoint, set_rng_states
from ganforge.train.ema import make_ema, update_ema
from ganforge.train.fast import FastPath

# The arguments that determine the training trajectory: a checkpoint is resumed only when all of them
# match. kimg is not one of them (a longer run continues a shorter one), nor are the report intervals.
TRAJECTORY_KEYS = ("seed", "data_hash", "loss", "z_dim", "g_channels", "d_channels", "batch_size", "lr",
                   "beta1", "beta2", "ema_enabled", "ema_decay", "device", "fast")
LOSS_STATS = ("loss_d", "loss_g")  # then the loss object's stats: summed on the device, averaged per report
GRID_SIZE = 8  # the fixed-z grid is 8 x 8 images


def code_fingerprint() -> str:
    """Hash of the code that defines the trajectory (losses, nets, train/). A checkpoint written by other
    code is not resumed: after a fix to the loss, `dvc repro` must not quietly continue the old run."""
    package = Path(__file__).resolve().parents[1]  # src/ganforge
    files = [*sorted(package.glob("losses/*.py")), package / "augment.py", *sorted(package.glob("nets/*.py")),
             *sorted(package.glob("train/*.py"))]
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{f.relative_to(package)}\n".encode() + f.read_bytes())
    return digest.hexdigest()[:16]


def trajectory_config(args: dict) -> dict:
    """What a checkpoint must match to be resumed: the trajectory arguments of train() and the code."""
    config = {k: args[k] for k in TRAJECTORY_KEYS}
    config["device"] = torch.device(config["device"]).type
    config["code"] = code_fingerprint()
    return config


def stream_seed(seed: int, stream: str) -> int:
    """Independent, stable seeds for each random stream (init, data, z, fixed z) from the master seed."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{stream}".encode()).digest()[:8], "little") >> 1


@dataclass
class TrainResult:
    G: torch.nn.Module  # the trained generator (train mode)
    G_ema: torch.nn.Module | None  # its moving average (eval mode), None when EMA is off
    history: list[dict]  # one row per log interval: step, kimg, loss_d, loss_g, the loss's stats, img_per_s
    grid: np.ndarray  # uint8 [H, W] (grey) or [H, W, C]: the last fixed-z 8x8 grid
    step: int  # steps done
    kimg: float  # thousands of real images shown to D


def train(
    x_train: np.ndarray,  # uint8 [N, C, H, W]: the prepared train split (H = W = 28, or a power of two)
    *,
    seed: int,  # master seed: init, batches, z and the fixed grid z all derive from it
    data_hash: str,  # content hash of the data set: a checkpoint resumes only on the same data
    loss: str,  # a key of ganforge.losses.LOSSES (ns, minimax, hinge, wgan, lsgan)
    z_dim: int,  # length of z ~ N(0, I)
    g_channels: int,  # DCGAN width of G (channels of its last hidden layer)
    d_channels: int,  # DCGAN width of D (channels of its first layer)
    batch_size: int,  # k: real images and z per step
    lr: float,  # Adam learning rate, both networks
    beta1: float,  # Adam beta1
    beta2: float,  # Adam beta2
    kimg: float,  # length: thousands of real images shown to D (steps = ceil(kimg * 1000 / batch_size))
    ema_enabled: bool,  # keep G_ema, the moving average of G's weights
    ema_decay: float,  # its per-step decay (after a warm-up, see ema.py)
    device: str | torch.device,  # a resolved device (ganforge.io.resolve_device)
    fast: str,  # auto | off: on CUDA, auto = bf16 + channels_last + fused Adam + CUDA graph (fast.py)
    log_every: int,  # steps between stats reports (each one host sync)
    image_every: int,  # steps between fixed-z grids
    ckpt_every: int,  # steps between checkpoints
    checkpoint_path: str | Path | None = None,  # where checkpoints go; None = no checkpoints
    resume: dict | None = None,  # a checkpoint from checkpoint.load_checkpoint with the same config
    checkpoint_meta: dict | None = None,  # stored as is in each checkpoint (e.g. the MLflow run id)
    log: Callable[[int, dict], None] | None = None,  # log(step, stats) at each stats report
    log_grid: Callable[[int, np.ndarray], None] | None = None,  # log_grid(step, uint8 [H, W(, C)])
    progress: bool = True,  # show a rich progress bar
) -> TrainResult:
    config = trajectory_config(locals())
    dev = torch.device(device)
    if x_train.dtype != np.uint8 or x_train.ndim != 4 or len(x_train) == 0:
        raise GanforgeError(f"training data must be uint8 [N, C, H, W], got {x_train.dtype} {x_train.shape}")
    n_data, channels, resolution, _ = x_train.shape
    steps_total = math.ceil(kimg * 1000 / batch_size)

    # Networks: initialised from the seed on the CPU, then moved: every device starts from the same weights.
    torch.manual_seed(stream_seed(seed, "init"))
    G, D = build_networks("dcgan", z_dim=z_dim, channels=channels, resolution=resolution,
                          g_channels=g_channels, d_channels=d_channels, g_spectral_norm=False,
                          d_spectral_norm=False)
    G, D = G.to(dev).train(), D.to(dev).train()
    fast_path = FastPath.choose(fast, dev)  # enabled on CUDA with fast == "auto"; else changes nothing
    fast_path.prepare(G, D)  # channels_last on the fast path and the CPU (before G_ema copies G's layout)
    G_ema = make_ema(G) if ema_enabled else None
    opt_G = torch.optim.Adam(G.parameters(), lr=lr, betas=(beta1, beta2), **fast_path.adam_options)
    opt_D = torch.optim.Adam(D.parameters(), lr=lr, betas=(beta1, beta2), **fast_path.adam_options)
    loss_fn = make_loss(loss)
    stat_keys = (*LOSS_STATS, *loss_fn.stat_keys())  # the report's columns, in order

    # The whole data set lives on the device as uint8 (MNIST: 47 MB); batches are gathered there.
    data = torch.as_tensor(np.ascontiguousarray(x_train)).to(dev)  # uint8 [N, C, H, W]
    generators = {"data": torch.Generator(dev).manual_seed(stream_seed(seed, "data")),
                  "z": torch.Generator(dev).manual_seed(stream_seed(seed, "z"))}
    fixed_z = torch.randn(GRID_SIZE**2, z_dim, generator=torch.Generator().manual_seed(
        stream_seed(seed, "fixed_z"))).to(dev)  # [64, z_dim], the same on every device

    # Device-side loop state: nothing here is read by the host inside a step.
    step_t = torch.zeros((), dtype=torch.int64, device=dev)  # steps done (the EMA warm-up reads it)
    sums = torch.zeros(len(stat_keys) + 1, device=dev)  # stat_keys summed since the last report, step count
    # [step, loss_d, loss_g, sum of weights] of the first step that left something non-finite; -1 = none yet
    first_bad = torch.tensor([-1.0, 0.0, 0.0, 0.0], dtype=torch.float64, device=dev)
    weights = [*G.parameters(), *D.parameters()]

    def train_step() -> None:
        # i.i.d. minibatches (with replacement): static shapes, no epoch bookkeeping on the host
        idx = torch.randint(n_data, (batch_size,), device=dev, generator=generators["data"])  # [B]
        x_real = data[idx].float().div_(127.5).sub_(1)  # uint8 [B, C, H, W] -> float in [-1, 1]
        z = torch.randn(batch_size, z_dim, device=dev, generator=generators["z"])  # [B, z_dim]
        with fast_path.autocast():  # bf16 forward passes on the fast path (fp32 weights); else no-op
            x_fake = G(z)  # [B, C, H, W]; one G forward serves both phases

        # D phase: descend L_d on real and (detached) fake images.
        with fast_path.autocast():
            loss_d, d_stats = loss_fn.d_loss(D, x_real, x_fake.detach())
        opt_D.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_D.step()

        # G phase: through the updated D; D is frozen so this backward computes no D gradients.
        D.requires_grad_(False)
        with fast_path.autocast():
            loss_g, g_stats = loss_fn.g_loss(D, x_fake)
        opt_G.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_G.step()
        D.requires_grad_(True)

        step_t.add_(1)
        if G_ema is not None:
            update_ema(G_ema, G, step_t, ema_decay)
        stats = {"loss_d": loss_d.detach(), "loss_g": loss_g.detach(), **d_stats, **g_stats}
        sums.add_(torch.stack([*(stats[k].float() for k in stat_keys), torch.ones_like(sums[0])]))
        # Divergence watch. The weights are watched too: a finite loss can still have overflowing gradients
        # (NaN weights after this step), and the checkpoint of this step must not hold them.
        weight_sum = torch.stack([w.detach().sum() for w in weights]).sum()  # NaN/inf iff some weight is
        watch = torch.stack([t.detach().double() for t in (step_t, loss_d, loss_g, weight_sum)])
        newly_bad = (first_bad[0] < 0) & ~torch.isfinite(watch).all()
        first_bad.copy_(torch.where(newly_bad, watch, first_bad))

    # On the fast path train_step is replayed as a CUDA graph (after eager warm-up steps); else it is itself.
    step_fn = fast_path.step(train_step, generators.values(), (G, D))

    @torch.no_grad()
    def fixed_z_grid() -> np.ndarray:
        net = G_ema if G_ema is not None else G.eval()
        x = net(fixed_z)  # [64, C, H, W] in [-1, 1]; eval mode: BatchNorm running stats, as sampling uses
        G.train()
        return make_grid(to_uint8(x).cpu().numpy(), nrow=GRID_SIZE)  # uint8 [H', W'] or [H', W', C]

    def checkpoint_state(step: int) -> dict:
        def cpu(sd):  # plain CPU tensors: the file loads on any machine
            return {k: v.detach().cpu() for k, v in sd.items()}

        return {"step": step, "config": config, "meta": dict(checkpoint_meta or {}), "history": history,
                "G": cpu(G.state_dict()), "D": cpu(D.state_dict()),
                "G_ema": cpu(G_ema.state_dict()) if G_ema is not None else None,
                "opt_G": opt_G.state_dict(), "opt_D": opt_D.state_dict(),
                "loop": {"step_t": step_t.cpu(), "sums": sums.cpu()},
                "rng": rng_states(generators)}

    start_step, history = 0, []
    if resume is not None:
        if resume["config"] != config:
            raise GanforgeError("internal: resume was given a checkpoint written with a different config")
        start_step, history = int(resume["step"]), list(resume["history"])
        G.load_state_dict(resume["G"])
        D.load_state_dict(resume["D"])
        if G_ema is not None:
            G_ema.load_state_dict(resume["G_ema"])
        opt_G.load_state_dict(resume["opt_G"])
        opt_D.load_state_dict(resume["opt_D"])
        step_t.copy_(resume["loop"]["step_t"])
        sums.copy_(resume["loop"]["sums"])
        set_rng_states(resume["rng"], generators)
        if start_step > steps_total:
            raise GanforgeError(f"the checkpoint is at step {start_step}, beyond this run's {steps_total} "
                                f"steps (kimg={kimg}); delete {checkpoint_path} to train a shorter run")

    def check_finite() -> None:
        bad_step, bad_d, bad_g, weight_sum = first_bad.tolist()  # note: a host sync point
        if bad_step >= 0:
            what = ("is not finite" if not math.isfinite(bad_d + bad_g) else
                    f"but its update made the weights non-finite (sum {weight_sum})")
            kept = f"; the last good checkpoint is kept in {checkpoint_path}" if checkpoint_path else ""
            raise GanforgeError(f"training diverged at step {int(bad_step)}: loss_d={bad_d}, loss_g={bad_g} "
                                f"{what} (lower train.lr?){kept}")

    columns = [TextColumn("[bold]train step"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[info]}"), TimeRemainingColumn()]
    bar = Progress(*columns, disable=not progress, console=Console(stderr=True))
    task = bar.add_task("train", total=steps_total, completed=start_step, info="")
    t_last, step_last = time.perf_counter(), start_step
    with bar:
        for step in range(start_step + 1, steps_total + 1):  # step = steps done once this one finishes
            step_fn()
            bar.advance(task)
            last = step == steps_total
            at_log, at_image = step % log_every == 0 or last, step % image_every == 0 or last
            at_ckpt = checkpoint_path is not None and (step % ckpt_every == 0 or last)
            if not (at_log or at_image or at_ckpt):
                continue
            check_finite()  # before anything is reported or saved: a checkpoint never holds diverged weights
            if at_log:
                means = (sums[:-1] / sums[-1]).tolist()  # host sync
                sums.zero_()
                img_per_s = (step - step_last) * batch_size / max(time.perf_counter() - t_last, 1e-9)
                row = {"step": step, "kimg": step * batch_size / 1000,
                       **dict(zip(stat_keys, means, strict=True)), "img_per_s": img_per_s}
                history.append(row)
                bar.update(task, info=f"kimg {row['kimg']:.1f}  loss_d {row['loss_d']:.3f}  "
                                      f"loss_g {row['loss_g']:.3f}  {img_per_s:.0f} img/s")
                if log is not None:
                    log(step, {k: v for k, v in row.items() if k != "step"})
            if at_image and log_grid is not None:
                log_grid(step, fixed_z_grid())
            if at_ckpt:
                save_checkpoint(checkpoint_path, checkpoint_state(step))
            t_last, step_last = time.perf_counter(), step  # img/s counts training steps, not reporting

    return TrainResult(G=G, G_ema=G_ema, history=history, grid=fixed_z_grid(), step=steps_total,
                       kimg=steps_total * batch_size / 1000)
