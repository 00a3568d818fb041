"""G_ema: an exponential moving average of the generator's weights, which later stages sample from.

Averaging the iterates smooths out the oscillation of adversarial training; StyleGAN and BigGAN sample
from it. The decay is per step with a warm-up, beta_t = min(decay, (1 + t) / (10 + t)), so that in a short
run the average is not dominated by the random initial weights (0.999 ** 500 is still 0.61).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def make_ema(G: nn.Module) -> nn.Module:
    """A frozen copy of G in eval mode (its BatchNorm uses running statistics, as sampling will)."""
    G_ema = copy.deepcopy(G).eval()
    G_ema.requires_grad_(False)
    return G_ema


@torch.no_grad()
def update_ema(G_ema: nn.Module, G: nn.Module, step: torch.Tensor, decay: float) -> None:
    """G_ema <- beta * G_ema + (1 - beta) * G, with beta from the warm-up above.

    step: 0-dim tensor on the device (the number of finished steps), so that this update needs no host
    sync and can be recorded in a CUDA graph. BatchNorm running statistics are copied, not averaged.
    """
    t = step.to(torch.float32)
    beta = torch.clamp((1 + t) / (10 + t), max=decay)
    for p_ema, p in zip(G_ema.parameters(), G.parameters(), strict=True):
        p_ema.lerp_(p, 1 - beta)  # p_ema + (1 - beta) * (p - p_ema)
    for b_ema, b in zip(G_ema.buffers(), G.buffers(), strict=True):
        b_ema.copy_(b)
