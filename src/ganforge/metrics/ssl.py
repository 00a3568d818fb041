"""The label-free judge: the evaluator's CNN trained by contrastive learning on the real train split alone.

Method: SimCLR (Chen et al. 2020): two random views of each image, an NT-Xent loss that pulls the two
views of one image together and pushes the other 2B - 2 views of the batch away, a small projection head
on top of the features that is thrown away afterwards. Why SimCLR: it needs no labels, no momentum
encoder or memory queue (BYOL, MoCo) and no clustering step (SwAV, DINO), so it is one loss on the same CNN
and the same training loop as the classifier judge, and at a batch of a few hundred small images it is
cheap on a CPU. The features the metrics use are the encoder's penultimate layer, before the projection
head (the representation SimCLR evaluates), exactly where the classifier judge's features are.

The views are random crops (zoom-ins that stay inside the image, so no padding invents pixels), optional
flips and quarter turns, and a mild brightness/contrast change. Noise and blur are deliberately not among
them: a judge trained to ignore them could not see a generator that makes them.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ganforge.config import SelfSupervised as Settings

PROJECTION_DIM = 64  # SimCLR's head output; its width matters little (Chen et al. 2020, fig. 8)


def views(x: torch.Tensor, s: Settings, gen: torch.Generator) -> torch.Tensor:
    """One random view of each image of x (float [B, C, H, W] in [-1, 1]); the draws come from `gen` (CPU),
    so a seed gives the same views on any device."""
    B = len(x)

    def rand(*shape):
        return torch.rand(*shape, generator=gen).to(x.device)

    side = torch.sqrt(s.crop + (1 - s.crop) * rand(B))  # crop side as a share of the image side
    # the crop's centre, so that the crop stays inside the image (affine_grid's [-1, 1] coordinates)
    tx, ty = ((1 - side) * (2 * rand(B) - 1) for _ in range(2))
    sx = side * (torch.where(rand(B) < 0.5, -1.0, 1.0) if s.flip else 1.0)
    angle = (torch.randint(0, 4, (B,), generator=gen).to(x.device) * (math.pi / 2) if s.rotate90
             else torch.zeros(B, device=x.device))
    cos, sin = torch.cos(angle).round(), torch.sin(angle).round()
    theta = torch.stack([torch.stack([sx * cos, -side * sin, tx], 1),
                         torch.stack([sx * sin, side * cos, ty], 1)], 1)  # [B, 2, 3]
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if s.jitter:
        contrast = 1 + s.jitter * (2 * rand(B, 1, 1, 1) - 1)
        brightness = s.jitter * (2 * rand(B, 1, 1, 1) - 1)
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        out = ((out - mean) * contrast + mean + brightness).clamp(-1, 1)
    return out


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss: z1[i] and z2[i] are the two views of image i; every other view is a negative."""
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)  # [2B, P]
    sim = z @ z.t() / temperature
    n = len(z1)
    sim.fill_diagonal_(float("-inf"))  # a view is not its own positive
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


def train_ssl(net, images: np.ndarray, s: Settings, batch_size: int, lr: float, seed: int,
              device: torch.device, progress: bool = True):
    """Train `net` (an Evaluator of kind self-supervised: its head is the projection) on uint8 images
    [N, C, H, W] by SimCLR; returns it in eval mode. Same seed + data + device -> same network."""
    from ganforge.metrics.evaluator import fit, to_float  # evaluator.py imports this module

    torch.manual_seed(seed)
    net = net.to(device)
    x_all = torch.from_numpy(images).to(device)
    draws = torch.Generator().manual_seed(seed + 1)  # the views: their own stream, apart from the order

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        x = to_float(x_all[idx])
        z1, z2 = net(torch.cat([views(x, s, draws), views(x, s, draws)])).chunk(2)  # one BatchNorm batch
        return nt_xent(z1, z2, s.temperature)

    return fit(net, len(x_all), loss_of, epochs=s.epochs, batch_size=min(batch_size, len(x_all)), lr=lr,
               seed=seed, device=device, progress=progress, what="evaluator (SimCLR)")
