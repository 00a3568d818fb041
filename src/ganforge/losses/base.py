"""What every loss object and every D regulariser promises the GAN object (tasks/generation.py).

A loss is pure maths on D's raw outputs (logits, critic values or scores), one per image or pack, [B]:
    d_loss(out_real, out_fake)   -> (L_d, {key: detached 0-dim tensor, ...})   out_fake from detached fakes
    g_loss(out_fake, out_real)   -> (L_g, {...})   out_real is None unless the class sets G_NEEDS_REAL
It never calls D, so it needs to know nothing of classes, packing or augmentation: the GAN object calls
D(x, c) with every image's conditioning explicitly and hands the outputs over. A relativistic loss reads
the real outputs in the G phase too (G_NEEDS_REAL), which a loss that called D itself could not see.

A regulariser needs D as a function of its input (a gradient penalty differentiates D(x) in x), so it is
given D(x, c) as a callable and each batch with its conditioning. The stats keys are fixed per class
(D_STATS, G_STATS, STATS), so the loop can size its device-side sums before the first step. Stats are
never read with .item(): the step must stay free of host syncs (a CUDA graph).

Settings: each entry declares its hyperparameters as a pydantic model, `Settings`, beside its class; the
params section names the entry (`kind`) and gives the values of its settings beside it (config.py
validates them against this model). A loss without hyperparameters keeps the empty model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field

from ganforge.settings import NoSettings

# D(x [B, C, H, W], c [B] int64 or None) -> one raw output per image [B]
Critic = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
Stats = dict[str, torch.Tensor]


class Loss:
    """Base class of the adversarial losses (registry: ganforge.losses.LOSSES)."""

    Settings: ClassVar[type[BaseModel]] = NoSettings
    D_STATS: ClassVar[tuple[str, ...]]  # the keys of d_loss's stats, in this order
    G_STATS: ClassVar[tuple[str, ...]]  # the keys of g_loss's stats, in this order (disjoint from D_STATS)
    # True when D's output is an unbounded score whose size means nothing by itself (the WGAN critic):
    # a divergence watch must then treat only non-finite values as divergence, not large ones.
    UNBOUNDED_OUTPUT: ClassVar[bool]
    # True when the formulation is only meaningful with a Lipschitz constraint on D (WGAN: gp or spectral
    # norm); without one the stage warns once.
    NEEDS_CONSTRAINT: ClassVar[bool]
    # True when g_loss reads D's outputs on the real batch (relativistic pairing): the GAN object then runs
    # D on the real batch in the G phase too. False costs nothing.
    G_NEEDS_REAL: ClassVar[bool] = False

    def __init__(self, settings: BaseModel | None = None):
        self.settings = settings if settings is not None else self.Settings()

    @classmethod
    def stat_keys(cls) -> tuple[str, ...]:
        """Every stats key of one step, D phase first: what the loop sums and reports."""
        return cls.D_STATS + cls.G_STATS

    def d_loss(self, out_real: torch.Tensor, out_fake: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        raise NotImplementedError

    def g_loss(self, out_fake: torch.Tensor, out_real: torch.Tensor | None) -> tuple[torch.Tensor, Stats]:
        raise NotImplementedError


def mean_detached(t: torch.Tensor) -> torch.Tensor:
    """The batch mean as a stat: a detached 0-dim fp32 tensor on the device (no host sync)."""
    return t.detach().float().mean()


class PenaltySettings(BaseModel):
    """What every D penalty is configured by (train.reg): its weight, and the lazy interval."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    weight: float = Field(gt=0)  # R1/R2 gamma, GP lambda
    every: int = Field(ge=1)  # applied every k D steps, times k (StyleGAN2's lazy regularisation uses 16)


class Regularizer:
    """Base class of the D regularisers (registry: ganforge.losses.REGULARIZERS).

    penalty(D, x_real, c_real, x_fake, c_fake, generator) -> (loss to ADD to L_d, stats). The GAN object
    calls it only on steps where step % every == 0 (lazy regularisation, Karras et al. 2020); the returned
    loss is already multiplied by `every`, so that on average the penalty weighs as much as an every-step
    one. Stats are NOT multiplied: they are the per-application values, comparable across `every`.
    """

    STATS: ClassVar[tuple[str, ...]]  # the keys of penalty's stats, in this order
    every: int  # apply every `every` D steps (1 = every step)

    def __init__(self, settings: PenaltySettings):
        self.weight, self.every = float(settings.weight), settings.every

    def penalty(self, D: Critic, x_real: torch.Tensor, c_real: torch.Tensor | None, x_fake: torch.Tensor,
                c_fake: torch.Tensor | None, generator: torch.Generator) -> tuple[torch.Tensor, Stats]:
        raise NotImplementedError


def input_gradient(D: Critic, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
    """grad_x sum_i D(x, c)_i = [dD(x_i, c_i)/dx_i]_i: [B, C, H, W], kept in the graph (create_graph) so
    that a penalty on it trains D. Per-image gradients from one backward need D to treat images
    independently (no BatchNorm in D: no registered D has one)."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x, c).sum(), x, create_graph=True)
    return grad


def squared_gradient_penalty(D: Critic, x: torch.Tensor, c: torch.Tensor | None, gamma: float,
                             every: int, keys: tuple[str, str]) -> tuple[torch.Tensor, Stats]:
    """gamma / 2 * E||grad_x D(x, c)||^2 (times every), and its stats (the penalty, E||grad||): R1 on real
    images, R2 on fakes."""
    grad = input_gradient(D, x, c)  # [B, C, H, W]
    sq_norm = grad.square().flatten(1).sum(1)  # [B]: ||grad_x D(x_i)||^2
    value = 0.5 * gamma * sq_norm.mean()
    return value * every, {keys[0]: value.detach(), keys[1]: mean_detached(sq_norm.sqrt())}
