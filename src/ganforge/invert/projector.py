"""Projection: the latent whose image G draws closest to a target (NVlabs' projector.py, for z space).

The optimisation follows StyleGAN2's projector: Adam on the latent with a learning-rate ramp (a short
linear warm-up and a cosine ramp-down) and Gaussian noise added to the latent early on (falling to 0 as the
square of the remaining share of noise_ramp) so that it can leave a poor basin. The loss is the mean squared
pixel distance over the known pixels plus `perceptual` times the mean squared distance of the judge's
features of the masked images (Image2StyleGAN's masked perceptual term: both images with the hole set to
0, so the judge never sees pixels the target does not have), plus `prior` times mean(z^2) (the Gaussian
prior's negative log-density, which keeps z where G was trained).

A conditional G is projected under every class at once (targets x K candidates, one batch) and each target
keeps the class whose final loss is lowest: an exact search over the classes instead of a relaxation that
could end between two of them.

Every target's start and noise come from its own generator seeded with seed + its index (the sampling
stage's convention), so a target's projection does not depend on which others share its batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ganforge.sampling import latents, to_uint8


@dataclass(frozen=True)
class Projection:
    z: np.ndarray        # float32 [N, z_dim]
    labels: np.ndarray   # int64 [N]: the class found (conditional G), else -1
    images: np.ndarray   # uint8 [N, C, H, W]: G(z, label)
    loss: np.ndarray     # float32 [N]: the final loss (no noise)


def learning_rate(t: float, lr: float, rampup: float, rampdown: float) -> float:
    """lr at progress t in [0, 1]: linear warm-up over the first `rampup` share, cosine ramp-down over the
    last `rampdown` share (StyleGAN2's projector)."""
    ramp = min(1.0, (1.0 - t) / rampdown) if rampdown > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return lr * ramp * (min(1.0, t / rampup) if rampup > 0 else 1.0)


def to_float(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [B, C, H, W] -> float [-1, 1]."""
    return torch.as_tensor(images).float() / 127.5 - 1


def has_latent_space(G: torch.nn.Module) -> bool:
    """Whether G maps a latent z to images (what projection inverts): the image architectures do."""
    from ganforge.sampling import draws_points

    return hasattr(G, "z_dim") and not draws_points(G)


def project(
    G: torch.nn.Module,          # the generator, in eval mode (its weights are not changed)
    targets: np.ndarray,         # uint8 [N, C, H, W]
    known: np.ndarray | None,    # bool [N, 1, H, W]: True where the target's pixel is known; None = all
    *,
    steps: int,                  # optimisation steps per target
    lr: float,                   # peak learning rate of Adam on z
    lr_rampup: float,            # share of the steps of the linear warm-up
    lr_rampdown: float,          # share of the steps of the cosine ramp-down
    noise: float,                # std of the noise added to z at step 0 (z's own std is 1)
    noise_ramp: float,           # share of the steps over which that noise falls to 0
    perceptual: float,           # weight of the judge-feature term (0 = pixels only)
    prior: float,                # weight of mean(z^2)
    judge: torch.nn.Module | None,  # a network with .features(x in [-1, 1]) -> [B, F] (perceptual > 0)
    seed: int,                   # target i starts from sampling.latent(seed + i)
    batch_size: int,             # targets per optimisation batch (a conditional G: times K images)
    device: torch.device | str = "cpu",
    labels: np.ndarray | None = None,  # int64 [N]: the class of each target (conditional G); None = search
    start: np.ndarray | None = None,   # float32 [N, z_dim]: each target's first z; None = latent(seed + i)
    progress=None,               # callable(targets done) after each batch, for a progress bar
) -> Projection:
    G.eval().requires_grad_(False)
    if judge is not None:
        judge.eval().requires_grad_(False)
    K = getattr(G, "num_classes", 0)
    n = len(targets)
    known = np.ones((n, 1, *targets.shape[2:]), dtype=bool) if known is None else known
    out_z, out_y, out_x, out_loss = [], [], [], []
    for lo in range(0, n, batch_size):
        hi = min(lo + batch_size, n)
        given = None if labels is None else labels[lo:hi]
        z0 = latents(seed + lo, hi - lo, G.z_dim) if start is None else torch.as_tensor(start[lo:hi]).float()
        res = _project_batch(G, K, to_float(targets[lo:hi]).to(device), z0,
                             torch.as_tensor(known[lo:hi]).to(device).float(), seed + lo, given, steps=steps,
                             lr=lr, lr_rampup=lr_rampup, lr_rampdown=lr_rampdown, noise=noise,
                             noise_ramp=noise_ramp, perceptual=perceptual, prior=prior, judge=judge,
                             device=device)
        for acc, r in zip((out_z, out_y, out_x, out_loss), res, strict=True):
            acc.append(r)
        if progress is not None:
            progress(hi - lo)
    return Projection(np.concatenate(out_z), np.concatenate(out_y), np.concatenate(out_x),
                      np.concatenate(out_loss))


def _project_batch(G, K, target, z0, known, seed, given, *, steps, lr, lr_rampup, lr_rampdown, noise,
                   noise_ramp, perceptual, prior, judge, device):
    b, z_dim = len(target), G.z_dim
    # the candidate classes of each target: all K (search), its given class, or none (unconditional)
    cands = K if (K and given is None) else 1
    noise_steps = max(1, math.ceil(noise_ramp * steps))
    eps = torch.stack([torch.randn(noise_steps, z_dim, generator=torch.Generator().manual_seed(seed + i))
                       for i in range(b)])  # [b, noise_steps, z_dim]: each target's own noise stream
    z = z0.repeat_interleave(cands, 0).to(device).requires_grad_(True)  # [b * cands, z_dim]
    eps = eps.repeat_interleave(cands, 0).to(device)
    y = None
    if K:
        y = (torch.arange(K).repeat(b) if given is None
             else torch.as_tensor(np.asarray(given, dtype=np.int64))).to(device)  # [b * cands]
    t_x = target.repeat_interleave(cands, 0)  # [b * cands, C, H, W]
    m = known.repeat_interleave(cands, 0)  # [b * cands, 1, H, W]
    t_feat = judge.features(t_x * m) if perceptual > 0 else None

    def loss_of(zz):  # per candidate [b * cands]
        x = G(zz, y) if K else G(zz)
        pix = ((x - t_x) ** 2 * m).flatten(1).sum(1) / (m.flatten(1).sum(1) * x.shape[1]).clamp_min(1)
        loss = pix + prior * (zz**2).mean(1)
        if t_feat is not None:
            loss = loss + perceptual * ((judge.features(x * m) - t_feat) ** 2).mean(1)
        return loss, x

    opt = torch.optim.Adam([z], lr=lr, betas=(0.9, 0.999))
    for step in range(steps):
        t = step / steps
        for group in opt.param_groups:
            group["lr"] = learning_rate(t, lr, lr_rampup, lr_rampdown)
        scale = noise * max(0.0, 1.0 - t / noise_ramp) ** 2 if noise_ramp > 0 else 0.0
        zz = z + scale * eps[:, step] if scale > 0 else z
        loss, _ = loss_of(zz)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()  # targets are independent: Adam is elementwise, so each z sees only its loss
        opt.step()
    with torch.no_grad():
        loss, x = loss_of(z)
        best = loss.view(b, cands).argmin(1)  # [b]
        pick = torch.arange(b, device=loss.device) * cands + best
        labels = y[pick].cpu().numpy() if K else np.full(b, -1, dtype=np.int64)
        return (z[pick].detach().cpu().numpy().astype(np.float32), labels.astype(np.int64),
                to_uint8(x[pick]).cpu().numpy(), loss[pick].cpu().numpy().astype(np.float32))


BANK_SEED_OFFSET = 2_000_000  # bank sample i has seed base.seed + this + i: apart from sample/synthesize's


def warm_start(G: torch.nn.Module, targets: np.ndarray, hole: np.ndarray | None, bank: int, *, seed: int,
               batch_size: int, device) -> tuple[np.ndarray, np.ndarray | None]:
    """(z [N, z_dim], classes int64 [N] or None): for each target the latent (and, conditional G, the class)
    of its nearest among `bank` G samples over the known pixels: a nearest-neighbour encoder with nothing
    to train. The samples are drawn in chunks of 10,000, so the bank never sits in memory whole."""
    from ganforge.invert.inpaint import nearest_index
    from ganforge.sampling import class_cycle, generate

    K = getattr(G, "num_classes", 0)
    labels = class_cycle(bank, range(K)) if K else None
    best_d = np.full(len(targets), np.inf)
    best = np.zeros(len(targets), dtype=np.int64)
    for lo in range(0, bank, 10_000):
        hi = min(lo + 10_000, bank)
        images = generate(G, hi - lo, seed=seed + BANK_SEED_OFFSET + lo, batch_size=batch_size, device=device,
                          labels=None if labels is None else labels[lo:hi])
        idx, d = nearest_index(targets, hole, images, with_distance=True)
        better = d < best_d
        best_d[better], best[better] = d[better], lo + idx[better]
    z = np.stack([latents(seed + BANK_SEED_OFFSET + int(i), 1, G.z_dim)[0].numpy() for i in best])
    return z.astype(np.float32), (None if labels is None else labels[best])


def invert(G: torch.nn.Module, targets: np.ndarray, hole: np.ndarray | None, cfg, *, judge, seed: int,
           batch_size: int, device, progress=None) -> Projection:
    """Project every target (uint8 [N, C, H, W]) with the settings cfg (config.Project), seeing only the
    pixels outside `hole` (bool [N, 1, H, W]; None = all): warm-started from the bank when cfg.bank > 0."""
    start = labels = None
    if cfg.bank:
        start, labels = warm_start(G, targets, hole, cfg.bank, seed=seed, batch_size=max(batch_size, 1000),
                                   device=device)
    return project(G, targets, None if hole is None else ~hole, steps=cfg.steps, lr=cfg.lr,
                   lr_rampup=cfg.lr_rampup, lr_rampdown=cfg.lr_rampdown, noise=cfg.noise,
                   noise_ramp=cfg.noise_ramp, perceptual=cfg.perceptual, prior=cfg.prior,
                   judge=judge if cfg.perceptual > 0 else None, seed=seed, batch_size=batch_size,
                   device=device, labels=labels, start=start, progress=progress)
