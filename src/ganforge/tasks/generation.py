"""The z -> image GAN as a task object: its networks, how a batch is drawn, and each phase's maths.

The object owns everything that makes this kind of GAN: G(z, c) and D(x, c), always called with their
conditioning explicitly (c = None when unconditional: no branch), the adversarial loss, the D penalties
(lazy ones included), the P2GAN class term, PacGAN packing and the minibatch-stddev feature, DiffAugment and
adaptive augmentation (ADA) on every image D sees, StyleGAN2's style mixing and path-length penalty (for
that architecture only). The engine (train/engine.py) only steps its phases: "D" (d_steps times) and "G".

The last D step's G forward is kept with its graph and serves the G phase (one G forward fewer per step);
so the G phase judges the same fakes D was just trained on, through the updated D.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pydantic import BaseModel
from torch import nn

from ganforge.ada import AdaptiveAugment, parse_transforms
from ganforge.augment import DiffAugment
from ganforge.errors import ConfigError
from ganforge.losses import LOSSES, make_loss, make_regularizers
from ganforge.losses.base import PenaltySettings
from ganforge.losses.label import LabelMatching
from ganforge.losses.none import NoRegularizer
from ganforge.nets import build_networks, get_architecture
from ganforge.nets.packing import input_channels, pack_input
from ganforge.nets.stylegan2 import StyleGAN2Generator, StyleTerms
from ganforge.plane import extent_of, plane_picture, surface
from ganforge.sampling import make_grid, to_uint8
from ganforge.train.distributed import World
from ganforge.train.engine import Phase, stream_seed
from ganforge.train.fast import FastPath

GRID_SIZE = 8  # the fixed-z grid is 8 x 8 images
PLANE_POINTS = 1024  # 2-D data: real and fixed-z points of each plane picture (instead of the grid)
PLANE_PIXELS = 256  # its side
# the same streams on every rank: each draws the global batch and keeps its rows
SHARED_STREAMS = ("data", "z", "labels", "mix")


class ImageGeneration:
    """z -> image (or 2-D point) generation, from the validated train section (config.Train)."""

    output = "G"

    def __init__(self, cfg: BaseModel, x_train: np.ndarray, y_train: np.ndarray | None, num_classes: int, *,
                 seed: int, fast_path: FastPath, world: World):
        # x_train: uint8 [N, C, H, W] images, or float32 [N, 2, 1, 1] points (validate() checked which)
        self.cfg, self.seed, self.world, self.fast_path = cfg, seed, world, fast_path
        dev = world.device
        self.points = get_architecture(cfg.arch.kind).data == "points"
        self.n_data, channels, resolution, _ = x_train.shape
        self.K = num_classes if cfg.conditional else 0  # 0: unconditional networks, no labels anywhere
        self.rows = world.batch_slice(cfg.batch_size)  # this rank's rows of each global batch
        self.pack, self.mbstd_group = cfg.pack, cfg.mbstd_group

        # Networks: initialised from the seed on the CPU, then moved: every device gets the same weights
        torch.manual_seed(stream_seed(seed, "init"))
        G, D = build_networks(cfg.arch.kind, settings=cfg.arch.settings, z_dim=cfg.z_dim, channels=channels,
                              resolution=resolution, g_channels=cfg.g_channels, d_channels=cfg.d_channels,
                              g_spectral_norm=cfg.spectral_norm.g, d_spectral_norm=cfg.spectral_norm.d,
                              num_classes=self.K,
                              d_inputs=input_channels(channels, cfg.pack, cfg.mbstd_group))
        self.G, self.D = G.to(dev).train(), D.to(dev).train()
        fast_path.prepare(self.G, self.D)  # channels_last on the fast path and the CPU (before the EMA copy)
        self.nets = {"G": self.G, "D": self.D}
        # Several processes: DDP averages the gradients of the wrapped nets over the ranks (itself with one).
        self.G_ddp, self.D_ddp = world.wrap(self.G), world.wrap(self.D)
        adam = fast_path.adam_options
        self.optimizers = {
            "G": torch.optim.Adam(G.parameters(), lr=cfg.g.lr, betas=(cfg.g.beta1, cfg.g.beta2), **adam),
            "D": torch.optim.Adam(D.parameters(), lr=cfg.d.lr, betas=(cfg.d.beta1, cfg.d.beta2), **adam)}
        self.phases = (Phase("D", "D", repeat=cfg.d_steps), Phase("G", "G"))

        self.loss = make_loss(cfg.loss.kind, LOSSES[cfg.loss.kind].Settings(**cfg.loss.settings))
        self.penalties = make_regularizers(cfg.reg.kind, PenaltySettings(weight=cfg.reg.weight,
                                                                         every=cfg.reg.every))
        self.reg_every = max(r.every for r in self.penalties)  # one interval: they share train.reg.every
        # StyleGAN2 (nets/stylegan2.py): style mixing and the lazy path-length penalty in G's training, on
        # streams of their own; None for every other architecture (no stream, net, stat or draw of its).
        self.style = StyleTerms(**cfg.arch.settings).to(dev) if isinstance(G, StyleGAN2Generator) else None
        self.pl = self.style is not None and self.style.pl_weight > 0
        self.d_reg_every, self._reg_step = self.reg_every, 0  # _reg_step: the last regularising step's number
        if self.pl:
            self._lazy_intervals(fast_path)
        self.aug = DiffAugment(cfg.augment)
        self.items_per_step = cfg.batch_size * cfg.d_steps  # real images D sees per (G) step
        # ADA (ada.py): p and its controller's sums are buffers of a module that sits among the nets, so the
        # engine checkpoints and restores them with the weights (nets are state_dicts in the checkpoint) and
        # the Task protocol needs nothing new; the module has no parameters, so no optimiser sees it. p can
        # move by 1 in speed_kimg thousand real images: items_per_step of them per step.
        a = cfg.ada
        self.ada = AdaptiveAugment(parse_transforms(a.transforms), p_init=a.p_init, target=a.target,
                                   speed_kimg=a.speed_kimg, interval=a.interval,
                                   batch_size=self.items_per_step, device=dev) if a.enabled else None
        self.label_term = LabelMatching(cfg.label_matching) if cfg.label_matching else None
        self.stat_keys = ("loss_d", "loss_g", *self.loss.stat_keys(),  # the report's columns, in order
                          *(k for r in self.penalties for k in r.STATS),
                          *(self.label_term.STATS if self.label_term else ()),
                          # ADA: the step's p, and its mean sign(D(x_real)) (r_t of one step)
                          *(("ada_p", "ada_rt") if self.ada is not None else ()),
                          *(("pl_penalty", "pl_mean") if self.pl else ()))
        self.watch = ("loss_d", "loss_g")
        if self.ada is not None:
            self.nets["ada"] = self.ada
        if self.style is not None:
            self.nets["style"] = self.style  # the path lengths' moving mean, checkpointed
        self.divergence_hint = "lower train.g.lr and train.d.lr?"

        # The whole data set lives on the device as uint8 (MNIST: 47 MB); batches are gathered there.
        self.data = torch.as_tensor(np.ascontiguousarray(x_train)).to(dev)  # uint8 [N, C, H, W]
        # Every draw of a step, checkpointed. data, z and labels are the same streams on every rank; augment
        # and reg are per rank (rank 0's is the one-process stream).
        streams = ("data", "z", "augment", "reg", *(("labels",) if self.K else ()),
                   *(("ada",) if self.ada is not None else ()),
                   *(("mix", "noise", "pl") if self.style is not None else ()))
        self.generators = {name: torch.Generator(dev).manual_seed(stream_seed(seed, self._stream(name)))
                           for name in streams}
        fixed = torch.Generator().manual_seed(stream_seed(seed, "fixed_z"))
        n_fixed = PLANE_POINTS if self.points else GRID_SIZE**2  # [64 (points: 1024), z_dim], on every device
        self.fixed_z = torch.randn(n_fixed, cfg.z_dim, generator=fixed).to(dev)
        if self.K:
            self.labels = torch.as_tensor(np.asarray(y_train, dtype=np.int64)).to(dev)  # int64 [N]
            shares = (torch.bincount(self.labels.cpu(), minlength=self.K).double()
                      if cfg.fake_labels == "histogram" else torch.ones(self.K, dtype=torch.float64))
            self.label_cdf = (shares.cumsum(0) / shares.sum()).float().to(dev)  # [K]: inverse-CDF, graph-safe
        self.real_points = x_train[:PLANE_POINTS] if self.points else None
        self.extent = extent_of(self.real_points) if self.points else 0.0  # the plane the pictures show
        self._kept = None  # the last D step's batch, for the G phase

    def _stream(self, name: str, rank: int | None = None) -> str:
        rank = self.world.rank if rank is None else rank
        return name if rank == 0 or name in SHARED_STREAMS else f"{name}/rank{rank}"

    def _lazy_intervals(self, fast_path: FastPath) -> None:
        """D's penalties every train.reg.every steps and the path-length penalty every pl_every: the engine's
        regularising steps are every gcd of the two, and the task tells which are due from their number.
        Those run eagerly; a CUDA graph replays the plain steps, so it must not be all of them."""
        d_every = self.reg_every if any(not isinstance(r, NoRegularizer) for r in self.penalties) else None
        pl_every = self.style.pl_every
        self.reg_every = math.gcd(d_every, pl_every) if d_every else pl_every
        if fast_path.enabled and self.reg_every == 1 and max(d_every or 1, pl_every) > 1:
            raise ConfigError(f"train.arch.pl_every: {pl_every} and train.reg.every: {d_every} have no "
                              "common factor > 1, which the CUDA graph of the fast path needs (a graph "
                              "replays every step alike); make one a multiple of the other, or set "
                              "train.fast: off")

    def on_resume(self, step: int) -> None:
        """The other ranks' own streams: fresh ones from the seed, rank and step (the checkpoint holds rank
        0's)."""
        self._reg_step = step - step % self.reg_every
        for name, g in self.generators.items():
            if self._stream(name) != name:
                g.manual_seed(stream_seed(self.seed, f"{self._stream(name)}/step{step}"))

    def draw(self):
        """(x_real [b, C, H, W], its classes [b] or None, z [b, z_dim], the classes asked of G or None).

        i.i.d. minibatches (with replacement): static shapes, no epoch bookkeeping on the host. Every rank
        draws the global batch and keeps its rows b = B / world_size: the same images, z and classes per
        step whatever the number of processes."""
        B, dev, g = self.cfg.batch_size, self.data.device, self.generators
        idx = torch.randint(self.n_data, (B,), device=dev, generator=g["data"])[self.rows]  # [b]
        x_real = self.data[idx]
        if not self.points:
            x_real = x_real.float().div_(127.5).sub_(1)  # uint8 -> float in [-1, 1]
        z = torch.randn(B, self.cfg.z_dim, device=dev, generator=g["z"])[self.rows]  # [b, z_dim]
        if not self.K:
            return x_real, None, z, None
        u = torch.rand(B, device=dev, generator=g["labels"])[self.rows]  # [b]
        c_fake = torch.searchsorted(self.label_cdf, u, right=True).clamp_(max=self.K - 1)  # [b] int64
        return x_real, self.labels[idx], z, c_fake

    def seen(self, x: torch.Tensor) -> torch.Tensor:
        """What D sees of images: the DiffAugment policy (every image, real, fake or interpolated, in both
        phases: D never sees an unaugmented image it could tell apart), then ADA's pipeline at the current
        p, then packing and minibatch stddev."""
        x = x if self.aug.identity else self.aug(x, self.generators["augment"])
        x = x if self.ada is None else self.ada(x, self.generators["ada"])
        return pack_input(x, self.pack, self.mbstd_group)

    def judge(self, D: nn.Module, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        """D(x, c): one output per image (per pack when packing) [B]."""
        return D(self.seen(x)) if c is None else D(self.seen(x), c)

    def accumulate_gradients(self, phase: str, index: int, regularize: bool) -> dict[str, torch.Tensor]:
        autocast = self.fast_path.autocast  # bf16 on the fast path; else a no-op
        if phase == "D":
            # D descends L_d (+ the penalties) on real and detached fake images; the last D step's G forward
            # keeps its graph for the G phase.
            x_real, c_real, z, c_fake = self.draw()
            last = index == self.cfg.d_steps - 1
            reg_d = regularize
            if self.pl and regularize:
                self._reg_step += self.reg_every if index == 0 else 0
                reg_d = self._reg_step % self.d_reg_every == 0
            with autocast(), torch.set_grad_enabled(last):
                if self.style is None:
                    x_fake = self.G_ddp(z) if c_fake is None else self.G_ddp(z, c_fake)  # [b, C, H, W]
                else:
                    x_fake = self.G_ddp(z, c_fake, noise=self.generators["noise"],
                                        mix=self.style.mixing(self.G, self.cfg.batch_size, self.rows,
                                                              self.generators["mix"]))
            with autocast():
                out_real = self.judge(self.D_ddp, x_real, c_real)
                out_fake = self.judge(self.D_ddp, x_fake.detach(), c_fake)
                loss_d, stats = self.loss.d_loss(out_real, out_fake)
                if self.ada is not None:
                    stats.update(self._ada_observe(out_real))
                if self.label_term:
                    term, term_stats = self.label_term.d_term(self.D_ddp(self.seen(x_real), classes=True),
                                                              c_real)
                    loss_d, stats = loss_d + term, {**stats, **term_stats}
            if last:
                zero = torch.zeros((), device=x_real.device)
                fakes = x_fake.detach().float()  # bf16 under autocast; exact in fp32
                for reg in self.penalties:  # a penalty needs a double backward: fp32, outside autocast
                    if reg_d:
                        penalty, reg_stats = reg.penalty(lambda x, c: self.judge(self.D_ddp, x, c), x_real,
                                                         c_real, fakes, c_fake, self.generators["reg"])
                        loss_d = loss_d + penalty
                    # the penalty's stats, times every (zero between applications): the report's mean over
                    # steps is then the mean per application
                    stats.update({k: reg_stats[k] * reg.every if reg_d else zero for k in reg.STATS})
                self._kept = (x_real, c_real, x_fake, c_fake, z)
            loss_d.backward()
            return {"loss_d": loss_d.detach(), **stats}

        # G phase: through the updated D. D is frozen, so this backward computes no D gradients, and it is
        # the plain module (its DDP wrapper would wait for D gradients that never come).
        x_real, c_real, x_fake, c_fake, z = self._kept
        self.D.requires_grad_(False)
        with autocast():
            out_fake = self.judge(self.D, x_fake, c_fake)
            out_real = self.judge(self.D, x_real, c_real) if self.loss.G_NEEDS_REAL else None
            loss_g, stats = self.loss.g_loss(out_fake, out_real)
            if self.label_term:
                term, term_stats = self.label_term.g_term(self.D(self.seen(x_fake), classes=True), c_fake)
                loss_g, stats = loss_g + term, {**stats, **term_stats}
        loss_g.backward()
        if self.pl:  # fp32 (a double backward), outside autocast; zero stats between applications
            if regularize and self._reg_step % self.style.pl_every == 0:
                penalty, pl_stats = self.style.path_length_penalty(self.G_ddp, self.G, z, c_fake,
                                                                   self.generators)
                penalty.backward()
            else:
                pl_stats = {"pl_penalty": torch.zeros((), device=z.device)}
            stats.update(pl_stats, pl_mean=self.style.pl_mean.clone())
        self.D.requires_grad_(True)
        self._kept = None
        if self.ada is not None:
            self.ada.step()  # the step is done: every ada.interval steps p moves toward the target
        return {"loss_g": loss_g.detach(), **stats}

    def _ada_observe(self, out_real: torch.Tensor) -> dict[str, torch.Tensor]:
        """r_t's share of one D step: the mean sign of D's outputs on the augmented reals, over every rank's
        rows (so every rank holds the same p), into ADA's sums; the report's ada_p and ada_rt."""
        p = self.ada.p.detach().clone()  # the p this step augments with (the G phase may move it)
        sign = self.world.average_(out_real.detach().float().sign().mean())  # a collective with >1 process
        self.ada.observe(sign)
        return {"ada_p": p, "ada_rt": sign}

    @torch.no_grad()
    def picture(self, net: nn.Module) -> np.ndarray:
        """The fixed-z 8x8 grid of `net` (conditional: one row per class, the same 8 z in every row); 2-D
        data: the GAN-Lab picture (D's surface, real points, the fixed-z points)."""
        if self.K:
            y = torch.arange(self.K, device=self.fixed_z.device).repeat_interleave(GRID_SIZE)  # [K * 8]
            x = net(self.fixed_z[:GRID_SIZE].repeat(self.K, 1), y)  # [K * 8, C, H, W]
        else:
            x = net(self.fixed_z)  # [64, C, H, W] in [-1, 1]
        if self.points:
            self.D.eval()  # spectral norm must not run a power iteration (it would change the trajectory)
            scores = surface(self.D_of_point, self.extent, PLANE_PIXELS, self.fixed_z.device)
            self.D.train()
            return plane_picture(self.real_points, x.cpu().numpy(), self.extent, PLANE_PIXELS, scores)
        return make_grid(to_uint8(x).cpu().numpy(), nrow=GRID_SIZE)  # uint8 [H', W'] or [H', W', C]

    def D_of_point(self, xy: torch.Tensor) -> torch.Tensor:
        """D's score of each point [N, 2] -> [N]. Packed, D judges a pack of `pack` copies of the point (in a
        stddev group of identical packs): the surface is what D says of a pack at that point."""
        copies = self.pack * max(self.mbstd_group, 1)
        x = xy[:, :, None, None].repeat_interleave(copies, dim=0)  # [N * copies, 2, 1, 1]
        return self.D(pack_input(x, self.pack, self.mbstd_group))[:: max(self.mbstd_group, 1)]
