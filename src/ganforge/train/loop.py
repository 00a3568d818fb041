"""The training loop: one function, read top to bottom. Its signature is its schema.

The GAN maths lives in ganforge.losses; this file builds the networks, keeps the data on the device, steps
the two phases, and reports. The step itself (`train_step`) is written so that it could be captured as a
CUDA graph (ganforge.train.fast): no host reads inside it, batches and z are drawn on the device
from explicit torch.Generators, the step counter and the running loss sums are device tensors.
The host reads the device only at sync points: every log_every / image_every / ckpt_every steps, and at
the in-training evaluations (which run between steps, eagerly, never inside a captured step).
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

from ganforge.augment import DiffAugment
from ganforge.errors import ConfigError, GanforgeError
from ganforge.losses import make_loss, make_regularizer
from ganforge.losses.label import LabelMatching, check_label_matching
from ganforge.nets import build_networks
from ganforge.nets.conditional import FAKE_LABELS
from ganforge.nets.packing import check_batch, input_channels, pack_input
from ganforge.plane import extent_of, plane_picture, surface
from ganforge.sampling import make_grid, to_uint8
from ganforge.train.checkpoint import rng_states, save_checkpoint, set_rng_states
from ganforge.train.distributed import World
from ganforge.train.ema import make_ema, update_ema
from ganforge.train.fast import FastPath
from ganforge.train.fast import log as fast_log

# The arguments that determine the training trajectory: a checkpoint is resumed only when all of them
# match. kimg is not one of them (a longer run continues a shorter one), nor are the report intervals, nor
# the number of processes (every rank draws the same global batches: a checkpoint resumes on any number).
TRAJECTORY_KEYS = ("seed", "data_hash", "arch", "g_spectral_norm", "d_spectral_norm", "loss", "reg",
                   "reg_weight", "reg_every", "augment", "z_dim", "g_channels", "d_channels", "batch_size",
                   "lr_g", "beta1_g", "beta2_g", "lr_d", "beta1_d", "beta2_d", "d_steps", "lr_decay",
                   "ema_enabled", "ema_decay", "eval_every", "eval_n", "device", "fast", "conditional",
                   "fake_labels", "label_matching", "pack", "mbstd_group")
LOSS_STATS = ("loss_d", "loss_g")  # then the loss object's stats: summed on the device, averaged per report
GRID_SIZE = 8  # the fixed-z grid is 8 x 8 images
PLANE_POINTS = 1024  # 2-D data: real and fixed-z points of each plane picture (instead of the grid)
PLANE_PIXELS = 256  # its side


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
    G: torch.nn.Module  # the trained generator (train mode)
    G_ema: torch.nn.Module | None  # its moving average (eval mode), None when EMA is off
    history: list[dict]  # one row per log interval: step, kimg, loss_d, loss_g, the loss's stats, img_per_s
    grid: np.ndarray  # uint8 [H, W] (grey) or [H, W, C]: the last fixed-z 8x8 grid
    step: int  # steps done
    kimg: float  # thousands of real images shown to D
    evals: list[dict]  # one row per in-training evaluation: step, kimg, the evaluation's metrics
    best: dict | None  # the evaluation with the lowest FID: step, kimg, fid, G (its G_ema weights, CPU)


def train(
    x_train: np.ndarray,  # uint8 [N, C, H, W]: the prepared train split (H = W = 28, or a power of two);
                          # or float32 [N, 2, 1, 1]: 2-D points (the toy data sets, used as they are)
    y_train: np.ndarray | None = None,  # int64 [N]: its labels (needed when conditional)
    num_classes: int = 0,  # K: the dataset's classes (info.json), needed when conditional
    *,
    seed: int,  # master seed: init, batches, z, augmentation and the fixed grid z all derive from it
    data_hash: str,  # content hash of the data set: a checkpoint resumes only on the same data
    arch: str,  # a key of ganforge.nets.ARCHITECTURES (dcgan, resnet), sized by the data's resolution
    g_spectral_norm: bool,  # spectral normalisation of G's layers (SAGAN, BigGAN)
    d_spectral_norm: bool,  # ... of D's layers (Miyato et al. 2018)
    loss: str,  # a key of ganforge.losses.LOSSES (ns, minimax, hinge, wgan, lsgan)
    reg: str,  # a key of ganforge.losses.REGULARIZERS (none, r1, gp): a penalty added to D's loss
    reg_weight: float,  # its weight: R1 gamma, GP lambda
    reg_every: int,  # lazy regularisation: applied every reg_every steps, times reg_every
    augment: str,  # DiffAugment policy applied to every image D sees ("" = none), e.g. "translation,cutout"
    z_dim: int,  # length of z ~ N(0, I)
    g_channels: int,  # width of G
    d_channels: int,  # width of D
    batch_size: int,  # real images and z per D step
    lr_g: float,  # Adam of G: learning rate, beta1, beta2
    beta1_g: float,
    beta2_g: float,
    lr_d: float,  # Adam of D (TTUR: lr_d != lr_g)
    beta1_d: float,
    beta2_d: float,
    d_steps: int,  # D steps per G step (n_critic); each draws its own real batch and z
    pack: int,  # PacGAN: D judges packs of this many samples concatenated along channels (1 = off)
    mbstd_group: int,  # minibatch-stddev feature on D's input over groups of this many packs (0 = off)
    lr_decay: str,  # none | linear: both learning rates fall linearly to 0 over the run
    kimg: float,  # length: thousands of real images shown to D (steps = ceil(kimg * 1000 / (batch_size *
                  # d_steps)); a step is one G step)
    ema_enabled: bool,  # keep G_ema, the moving average of G's weights
    ema_decay: float,  # its per-step decay (after a warm-up, see ema.py)
    eval_every: int,  # steps between in-training evaluations (and at the last step); 0 = none
    eval_n: int,  # images each evaluation draws (recorded: a checkpoint's best FID used this many)
    device: str | torch.device,  # a resolved device (ganforge.device.resolve_device)
    fast: str,  # auto: bf16 + CUDA graph on CUDA, bf16 autocast on bf16 CPUs (fast.py); off: plain fp32
    conditional: bool,  # class-conditional G and projection D (nets/conditional.py), trained on the labels
    fake_labels: str,  # the classes asked of G while training: uniform | histogram (the train split's shares)
    label_matching: float,  # conditional: weight of the projection's class cross-entropy (P2GAN), 0 = off
    log_every: int,  # steps between stats reports (each one host sync)
    image_every: int,  # steps between fixed-z grids
    ckpt_every: int,  # steps between checkpoints
    evaluate: Callable[[torch.nn.Module, int], dict] | None = None,  # evaluate(G in eval mode, n) ->
                      # {"fid": ..., ...} at each eval_every step; the lowest FID is kept as TrainResult.best
    checkpoint_path: str | Path | None = None,  # where checkpoints go; None = no checkpoints
    resume: dict | None = None,  # a checkpoint from checkpoint.load_checkpoint with the same config
    checkpoint_meta: dict | None = None,  # stored as is in each checkpoint (e.g. the MLflow run id)
    log: Callable[[int, dict], None] | None = None,  # log(step, stats) at each stats report and evaluation
    log_grid: Callable[[int, np.ndarray], None] | None = None,  # log_grid(step, uint8 [H, W(, C)])
    stop: Callable[[], str | None] | None = None,  # polled after each step; a signal name = checkpoint
                                                   # that step and raise Stopped (cli.GracefulStop)
    progress: bool = True,  # show a rich progress bar
    world: World | None = None,  # this process among several (train/distributed.py); None = the only one.
                                 # Every rank calls train(); only rank 0 is given log, log_grid, evaluate.
) -> TrainResult:
    config = trajectory_config(locals())
    world = world or World(device=torch.device(device))
    dev = world.device if world.size > 1 else torch.device(device)
    rows = world.batch_slice(batch_size)  # this rank's rows of each global batch (all of them in one process)
    points = x_train.dtype == np.float32 and x_train.shape[1:] == (2, 1, 1)  # toy 2-D data
    if not (x_train.dtype == np.uint8 or points) or x_train.ndim != 4 or len(x_train) == 0:
        raise GanforgeError(f"training data must be uint8 [N, C, H, W] or float32 points [N, 2, 1, 1], got "
                            f"{x_train.dtype} {x_train.shape}")
    check_batch(batch_size // world.size, pack, mbstd_group)  # D packs each rank's share of the batch
    if eval_every and evaluate is None and world.main:
        raise GanforgeError("internal: eval_every is set but no evaluate function was given")
    n_data, channels, resolution, _ = x_train.shape
    if conditional and (y_train is None or len(y_train) != n_data or num_classes < 2):
        raise GanforgeError("train.conditional needs labelled data with at least 2 classes; this dataset has "
                            f"{num_classes} (a flat image folder has one: arrange it in class sub-folders)")
    if fake_labels not in FAKE_LABELS:
        raise GanforgeError(f"train.fake_labels: unknown {fake_labels!r} (allowed: {', '.join(FAKE_LABELS)})")
    K = num_classes if conditional else 0  # 0: unconditional networks, the same draws as before
    check_label_matching(label_matching, bool(K))
    if K and pack > 1:  # a pack mixes samples of different classes: no one label to project
        raise ConfigError("train.pack: PacGAN packing does not combine with train.conditional (a pack of "
                          "samples has no single class for the projection D); set train.pack: 1")
    img_per_step = batch_size * d_steps  # real images D sees per (G) step
    steps_total = math.ceil(kimg * 1000 / img_per_step)

    # Networks: initialised from the seed on the CPU, then moved: every device starts from the same weights.
    torch.manual_seed(stream_seed(seed, "init"))
    G, D = build_networks(arch, z_dim=z_dim, channels=channels, resolution=resolution, g_channels=g_channels,
                          d_channels=d_channels, g_spectral_norm=g_spectral_norm,
                          d_spectral_norm=d_spectral_norm, num_classes=K,
                          d_inputs=input_channels(channels, pack, mbstd_group))  # PacGAN, minibatch stddev
    G, D = G.to(dev).train(), D.to(dev).train()
    fast_path = FastPath.choose(fast, dev)  # enabled on CUDA with fast == "auto"; else changes nothing
    fast_path.prepare(G, D)  # channels_last on the fast path and the CPU (before G_ema copies G's layout)
    G_ema = make_ema(G) if ema_enabled else None
    # Several processes: DDP averages the gradients of the wrapped nets over the ranks (itself with one).
    # G_ema, the grids and the checkpoints use the plain modules, whose weights are the same on every rank.
    G_ddp, D_ddp = world.wrap(G), world.wrap(D)
    opt_G = torch.optim.Adam(G.parameters(), lr=lr_g, betas=(beta1_g, beta2_g), **fast_path.adam_options)
    opt_D = torch.optim.Adam(D.parameters(), lr=lr_d, betas=(beta1_d, beta2_d), **fast_path.adam_options)
    loss_fn = make_loss(loss)
    regularizer = make_regularizer(reg, reg_weight, reg_every)
    aug = DiffAugment(augment)
    label_term = LabelMatching(label_matching) if label_matching else None  # conditional: the class term
    stat_keys = (*LOSS_STATS, *loss_fn.stat_keys(), *regularizer.STATS,
                 *(label_term.STATS if label_term else ()))  # the report's columns, in order

    # The whole data set lives on the device as uint8 (MNIST: 47 MB); batches are gathered there.
    data = torch.as_tensor(np.ascontiguousarray(x_train)).to(dev)  # uint8 [N, C, H, W]
    # Every draw of a step, checkpointed. data, z and labels (G's classes) are the same streams on every
    # rank (each draws the global batch and keeps its rows); augment and reg are per rank (rank 0's is the
    # one-process stream).
    def rank_stream(name: str, rank: int = world.rank) -> str:
        return name if rank == 0 or name in ("data", "z", "labels") else f"{name}/rank{rank}"

    streams = ("data", "z", "augment", "reg", *(("labels",) if K else ()))
    generators = {name: torch.Generator(dev).manual_seed(stream_seed(seed, rank_stream(name)))
                  for name in streams}
    fixed_z = torch.randn(PLANE_POINTS if points else GRID_SIZE**2, z_dim, generator=torch.Generator(
        ).manual_seed(stream_seed(seed, "fixed_z"))).to(dev)  # [64 (points: 1024), z_dim], on every device

    if K:
        labels = torch.as_tensor(np.asarray(y_train, dtype=np.int64)).to(dev)  # int64 [N]
        shares = (torch.bincount(labels.cpu(), minlength=K).double() if fake_labels == "histogram"
                  else torch.ones(K, dtype=torch.float64))
        label_cdf = (shares.cumsum(0) / shares.sum()).float().to(dev)  # [K]: inverse-CDF draws, graph-safe
    # Conditional D needs each batch's labels, but the losses call D(x) with images only (they stay label-
    # agnostic, like the regularisers). So the batches of a step are registered by their storage: x_real
    # and x_fake (and their .detach() views, which share it) find their own labels. Anything else D sees is
    # a regulariser's input built from the real batch (R1: x_real itself; GP: real-fake interpolates, which
    # take the real labels, as conditional WGAN-GP does).
    batch_labels: dict[int | str, torch.Tensor] = {}

    def seen_by(net: torch.nn.Module, classes: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
        """D as the losses see it: every image (real, fake, interpolated) goes through the same DiffAugment
        policy first, in both phases, so D never sees an unaugmented image it could tell apart; then packs
        them (PacGAN) and appends the minibatch stddev (nets/packing.py) when asked. classes=True: the
        projection's class logits [B, K] of what D sees, instead of its scores."""

        def seen(x: torch.Tensor) -> torch.Tensor:
            x_seen = pack_input(x if aug.identity else aug(x, generators["augment"]), pack, mbstd_group)
            if classes:
                return net(x_seen, classes=True)
            if not K:
                return net(x_seen)
            return net(x_seen, batch_labels.get(x.untyped_storage().data_ptr(), batch_labels["real"]))

        return seen

    D_seen = seen_by(D_ddp)  # the D phase: D's gradients are averaged over the ranks
    # G phase: D is frozen, so the plain module (its DDP wrapper would wait for D gradients that never come)
    D_frozen = seen_by(D)
    D_classes, D_frozen_classes = seen_by(D_ddp, classes=True), seen_by(D, classes=True)

    # Device-side loop state: nothing here is read by the host inside a step.
    step_t = torch.zeros((), dtype=torch.int64, device=dev)  # steps done (the EMA warm-up reads it)
    sums = torch.zeros(len(stat_keys) + 1, device=dev)  # stat_keys summed since the last report, step count
    # [step, loss_d, loss_g, sum of weights] of the first step that left something non-finite; -1 = none yet
    first_bad = torch.tensor([-1.0, 0.0, 0.0, 0.0], dtype=torch.float64, device=dev)
    weights = [*G.parameters(), *D.parameters()]

    def real_batch_and_z() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(x_real, z, the classes asked of G or None); conditional: registers the batches' labels.

        i.i.d. minibatches (with replacement): static shapes, no epoch bookkeeping on the host. Every rank
        draws the global batch and keeps its rows b = B / world_size: the same images, z and classes per
        step whatever the number of processes."""
        idx = torch.randint(n_data, (batch_size,), device=dev, generator=generators["data"])[rows]  # [b]
        x_real = data[idx]  # [b, C, H, W]
        if not points:
            x_real = x_real.float().div_(127.5).sub_(1)  # uint8 -> float in [-1, 1]
        z = torch.randn(batch_size, z_dim, device=dev, generator=generators["z"])[rows]  # [b, z_dim]
        if not K:
            return x_real, z, None
        u = torch.rand(batch_size, device=dev, generator=generators["labels"])[rows]  # [b]
        y_fake = torch.searchsorted(label_cdf, u, right=True).clamp_(max=K - 1)  # [b] int64
        batch_labels.clear()
        batch_labels["real"] = batch_labels[x_real.untyped_storage().data_ptr()] = labels[idx]  # drawn with x
        return x_real, z, y_fake

    def G_asked(z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """G(z), or G(z, y) when conditional (through DDP when there are several processes); the images'
        labels are registered for D_seen."""
        if y is None:
            return G_ddp(z)
        x = G_ddp(z, y)
        batch_labels[x.untyped_storage().data_ptr()] = y
        return x

    def train_step(regularize: bool) -> None:
        # D phase, d_steps times: descend L_d (+ the penalty) on real and detached fake images. The last D
        # step's G forward is kept with its graph: it serves the G phase too (one G forward fewer).
        for i in range(d_steps):
            x_real, z, y_fake = real_batch_and_z()
            last = i == d_steps - 1
            with fast_path.autocast(), torch.set_grad_enabled(last):  # bf16 on the fast path; else no-op
                x_fake = G_asked(z, y_fake)  # [b, C, H, W]; only the last one needs its graph (G phase)
            with fast_path.autocast():
                loss_d, d_stats = loss_fn.d_loss(D_seen, x_real, x_fake.detach())
                if label_term:
                    term, term_stats = label_term.d_term(D_classes, x_real, batch_labels["real"])
                    loss_d, d_stats = loss_d + term, {**d_stats, **term_stats}
            if regularize and last:  # a penalty needs a double backward: fp32, outside autocast
                penalty, reg_stats = regularizer.penalty(D_seen, x_real, x_fake.detach(), generators["reg"])
                loss_d = loss_d + penalty
            opt_D.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_D.step()

        # G phase: through the updated D; D is frozen so this backward computes no D gradients.
        D.requires_grad_(False)
        with fast_path.autocast():
            loss_g, g_stats = loss_fn.g_loss(D_frozen, x_fake)
            if label_term:
                term, term_stats = label_term.g_term(D_frozen_classes, x_fake, y_fake)
                loss_g, g_stats = loss_g + term, {**g_stats, **term_stats}
        opt_G.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_G.step()
        D.requires_grad_(True)

        step_t.add_(1)
        if G_ema is not None:
            update_ema(G_ema, G, step_t, ema_decay)
        stats = {"loss_d": loss_d.detach(), "loss_g": loss_g.detach(), **d_stats, **g_stats}
        # the penalty's stats, summed x every (zero between applications): the report's mean over steps is
        # then the mean per application ("none" has no stats)
        zero = torch.zeros_like(sums[0])
        stats.update({k: reg_stats[k] * regularizer.every if regularize else zero for k in regularizer.STATS})
        sums.add_(torch.stack([*(stats[k].float() for k in stat_keys), torch.ones_like(sums[0])]))
        # Divergence watch: non-finite values only (a WGAN critic's outputs are unbounded by design). The
        # weights are watched too: a finite loss can still have overflowing gradients (NaN weights after this
        # step), and the checkpoint of this step must not hold them.
        weight_sum = torch.stack([w.detach().sum() for w in weights]).sum()  # NaN/inf iff some weight is
        watch = torch.stack([t.detach().double() for t in (step_t, loss_d, loss_g, weight_sum)])
        newly_bad = (first_bad[0] < 0) & ~torch.isfinite(watch).all()
        first_bad.copy_(torch.where(newly_bad, watch, first_bad))

    # On the fast path a step is replayed as a CUDA graph (after eager warm-up steps). A lazy regulariser
    # (reg_every > 1) makes two kinds of step: the plain one is graphed, the regularised one runs eagerly on
    # the same tensors. A learning-rate schedule changes a value a graph would have baked in: all eager.
    # ("none" is applied every step too: it adds an exact zero, which changes no bit of the trajectory)
    # Several processes: no graph (DDP's all-reduce runs eagerly here); bf16, channels_last, fused Adam kept.
    lazy = regularizer.every > 1
    if fast_path.enabled and world.size > 1 and world.main:
        fast_log.warning("fast path: no CUDA graph with %d processes (DDP); training eagerly (bf16, "
                         "channels_last and fused Adam kept)", world.size)
    plain_step = fast_path.step(lambda: train_step(regularize=not lazy), generators.values(),
                                (G, D)) if lr_decay == "none" and world.size == 1 else None

    def step_fn(step: int) -> None:
        regularize = step % regularizer.every == 0
        if plain_step is not None and (not lazy or not regularize):
            plain_step()
        else:
            train_step(regularize)
        if lr_decay == "linear":  # the lr for the next step: lr * (1 - step / steps_total), 0 after the last
            for opt, lr in ((opt_G, lr_g), (opt_D, lr_d)):
                for group in opt.param_groups:
                    group["lr"] = lr * (1 - step / steps_total)

    @torch.no_grad()
    def fixed_z_grid() -> np.ndarray:
        net = G_ema if G_ema is not None else G.eval()
        if K:  # one row per class, the same GRID_SIZE z in every row: what changes down a column is the class
            y = torch.arange(K, device=dev).repeat_interleave(GRID_SIZE)  # [K * 8]
            x = net(fixed_z[:GRID_SIZE].repeat(K, 1), y)  # [K * 8, C, H, W]
        else:
            x = net(fixed_z)  # [64, C, H, W] in [-1, 1]; eval mode: BatchNorm running stats, as sampling uses
        G.train()
        if points:  # the GAN-Lab picture: D's surface, real points, the fixed-z points of G_ema
            D.eval()  # eval: spectral norm must not run a power iteration (it would change the trajectory)
            scores = surface(D_of_point, extent, PLANE_PIXELS, dev)
            D.train()
            return plane_picture(x_train[:PLANE_POINTS], x.cpu().numpy(), extent, PLANE_PIXELS, scores)
        return make_grid(to_uint8(x).cpu().numpy(), nrow=GRID_SIZE)  # uint8 [H', W'] or [H', W', C]

    extent = extent_of(x_train[:PLANE_POINTS]) if points else 0.0  # the plane the pictures show

    def D_of_point(xy: torch.Tensor) -> torch.Tensor:
        """D's score of each point [N, 2] -> [N]. Packed, D judges a pack of `pack` copies of the point
        (in a stddev group of identical packs): the surface is what D says of a pack at that point."""
        copies = pack * max(mbstd_group, 1)
        x = xy[:, :, None, None].repeat_interleave(copies, dim=0)  # [N * copies, 2, 1, 1]
        return D(pack_input(x, pack, mbstd_group))[:: max(mbstd_group, 1)]  # one score per point

    def checkpoint_state(step: int) -> dict:
        def cpu(sd):  # plain CPU tensors: the file loads on any machine
            return {k: v.detach().cpu() for k, v in sd.items()}

        return {"step": step, "config": config, "meta": dict(checkpoint_meta or {}), "history": history,
                "G": cpu(G.state_dict()), "D": cpu(D.state_dict()),
                "G_ema": cpu(G_ema.state_dict()) if G_ema is not None else None,
                "opt_G": opt_G.state_dict(), "opt_D": opt_D.state_dict(),
                "loop": {"step_t": step_t.cpu(), "sums": sums.cpu()},
                "rng": rng_states(generators), "evals": evals, "best": best, "world_size": world.size}

    start_step, history, evals, best = 0, [], [], None
    if resume is not None:
        if resume["config"] != config:
            raise GanforgeError("internal: resume was given a checkpoint written with a different config")
        start_step, history = int(resume["step"]), list(resume["history"])
        evals, best = list(resume["evals"]), resume["best"]
        G.load_state_dict(resume["G"])
        D.load_state_dict(resume["D"])
        if G_ema is not None:
            G_ema.load_state_dict(resume["G_ema"])
        opt_G.load_state_dict(resume["opt_G"])
        opt_D.load_state_dict(resume["opt_D"])
        step_t.copy_(resume["loop"]["step_t"])
        sums.copy_(resume["loop"]["sums"])
        set_rng_states(resume["rng"], generators)  # rank 0's streams (data and z are every rank's)
        for name in ("augment", "reg"):  # the other ranks' own streams: fresh ones from the seed, rank, step
            if rank_stream(name) != name:
                generators[name].manual_seed(stream_seed(seed, f"{rank_stream(name)}/step{start_step}"))
        if start_step > steps_total:
            raise GanforgeError(f"the checkpoint is at step {start_step}, beyond this run's {steps_total} "
                                f"steps (kimg={kimg}); delete {checkpoint_path} to train a shorter run")

    def check_finite() -> None:
        bad_step, bad_d, bad_g, weight_sum = world.earliest_bad(first_bad).tolist()  # note: a host sync point
        if bad_step >= 0:
            what = ("is not finite" if not math.isfinite(bad_d + bad_g) else
                    f"but its update made the weights non-finite (sum {weight_sum})")
            kept = f"; the last good checkpoint is kept in {checkpoint_path}" if checkpoint_path else ""
            raise GanforgeError(f"training diverged at step {int(bad_step)}: loss_d={bad_d}, loss_g={bad_g} "
                                f"{what} (lower train.g.lr and train.d.lr?){kept}")

    columns = [TextColumn("[bold]train step"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[info]}"), TimeRemainingColumn()]
    bar = Progress(*columns, disable=not progress, console=Console(stderr=True))
    task = bar.add_task("train", total=steps_total, completed=start_step, info="")
    t_last, step_last = time.perf_counter(), start_step
    with bar:
        for step in range(start_step + 1, steps_total + 1):  # step = steps done once this one finishes
            step_fn(step)
            bar.advance(task)
            stopping = stop() if stop is not None else None  # a signal arrived: checkpoint this step, end
            last = step == steps_total
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
                img_per_s = (step - step_last) * img_per_step / max(time.perf_counter() - t_last, 1e-9)
                row = {"step": step, "kimg": step * img_per_step / 1000,
                       **dict(zip(stat_keys, means, strict=True)), "img_per_s": img_per_s}
                history.append(row)
                bar.update(task, info=f"kimg {row['kimg']:.1f}  loss_d {row['loss_d']:.3f}  "
                                      f"loss_g {row['loss_g']:.3f}  {img_per_s:.0f} img/s")
            if at_eval and world.main:  # between steps, eagerly: never inside a captured step
                G_eval = G_ema if G_ema is not None else G
                result = {"step": step, "kimg": step * img_per_step / 1000, **evaluate(G_eval, eval_n)}
                G.train()  # evaluate() puts the network in eval mode (G_ema lives there anyway)
                evals.append(result)
                if best is None or result["fid"] < best["fid"]:  # the snapshot to keep (a late collapse
                    best = {"step": step, "kimg": result["kimg"], "fid": result["fid"],  # cannot undo it)
                            "G": {k: v.detach().cpu().clone() for k, v in G_eval.state_dict().items()}}
            if at_ckpt and world.main:  # before reporting: the checkpoint's history holds this row, so a
                save_checkpoint(checkpoint_path, checkpoint_state(step))  # report lost to a crash is resent
            if row is not None and log is not None:
                log(step, {k: v for k, v in row.items() if k != "step"})
            if at_eval and log is not None:
                log(step, {f"eval_{k}": v for k, v in evals[-1].items() if k != "step"})
            if at_image and log_grid is not None:
                log_grid(step, fixed_z_grid())
            if stopping:
                raise Stopped(stopping, step, checkpoint_path)
            t_last, step_last = time.perf_counter(), step  # img/s counts training steps, not reporting

    return TrainResult(G=G, G_ema=G_ema, history=history, grid=fixed_z_grid(), step=steps_total,
                       kimg=steps_total * img_per_step / 1000, evals=evals, best=best)
