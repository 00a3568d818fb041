"""What every loss object and every D regulariser promises the training loop.

A loss computes the two phases of one step, each returning (scalar loss, stats):
    d_loss(D, x_real, x_fake) -> (L_d, {key: detached 0-dim tensor, ...})   x_fake already detached
    g_loss(D, x_fake)         -> (L_g, {key: detached 0-dim tensor, ...})
The stats keys are fixed per class (D_STATS, G_STATS), so the loop can size its device-side sums before the
first step. Stats are never read with .item(): the step must stay free of host syncs (a CUDA graph).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch

from ganforge.errors import ConfigError

# D maps images [B, C, H, W] to one raw output per image [B] (logits, critic values or scores)
Critic = Callable[[torch.Tensor], torch.Tensor]
Stats = dict[str, torch.Tensor]


class Loss:
    """Base class of the adversarial losses (registry: ganforge.losses.LOSSES)."""

    D_STATS: ClassVar[tuple[str, ...]]  # the keys of d_loss's stats, in this order
    G_STATS: ClassVar[tuple[str, ...]]  # the keys of g_loss's stats, in this order (disjoint from D_STATS)
    # True when D's output is an unbounded score whose size means nothing by itself (the WGAN critic):
    # a divergence watch must then treat only non-finite values as divergence, not large ones.
    UNBOUNDED_OUTPUT: ClassVar[bool]
    # True when the formulation is only meaningful with a Lipschitz constraint on D (WGAN: gp or spectral
    # norm); without one the loop should warn once.
    NEEDS_CONSTRAINT: ClassVar[bool]

    @classmethod
    def stat_keys(cls) -> tuple[str, ...]:
        """Every stats key of one step, D phase first: what the loop sums and reports."""
        return cls.D_STATS + cls.G_STATS

    def d_loss(self, D: Critic, x_real: torch.Tensor, x_fake: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        raise NotImplementedError

    def g_loss(self, D: Critic, x_fake: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        raise NotImplementedError


def mean_detached(t: torch.Tensor) -> torch.Tensor:
    """The batch mean as a stat: a detached 0-dim fp32 tensor on the device (no host sync)."""
    return t.detach().float().mean()


class Regularizer:
    """Base class of the D regularisers (registry: ganforge.losses.REGULARIZERS).

    penalty(D, x_real, x_fake, generator) -> (loss to ADD to L_d, stats). The loop calls it only on steps
    where step % every == 0 (lazy regularisation, Karras et al. 2020); the returned loss is already
    multiplied by `every`, so that on average the penalty weighs as much as an every-step one. Stats are NOT
    multiplied: they are the per-application values, comparable across `every`.
    """

    STATS: ClassVar[tuple[str, ...]]  # the keys of penalty's stats, in this order
    every: int  # apply every `every` D steps (1 = every step)

    def penalty(self, D: Critic, x_real: torch.Tensor, x_fake: torch.Tensor,
                generator: torch.Generator) -> tuple[torch.Tensor, Stats]:
        raise NotImplementedError


def input_gradient(D: Critic, x: torch.Tensor) -> torch.Tensor:
    """grad_x sum_i D(x)_i = [dD(x_i)/dx_i]_i: [B, C, H, W], kept in the graph (create_graph) so that a
    penalty on it trains D. Per-image gradients from one backward need D to treat images independently (no
    BatchNorm in D: both architectures' D have none)."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
    return grad


def checked_settings(what: str, weight: float, every: int) -> tuple[float, int]:
    """A penalty's (weight, every), refused with a ConfigError unless weight > 0 and every is an int >= 1."""
    if not weight > 0:
        raise ConfigError(f"{what} must be > 0 (regulariser 'none' switches it off), got {weight!r}")
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ConfigError(f"a regulariser's 'every' must be an integer >= 1 (every k D steps), got {every!r}")
    return float(weight), every
