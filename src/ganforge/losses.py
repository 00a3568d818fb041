"""GAN loss objects: the adversarial maths, kept out of the training loop.

A loss object computes the two phases of one step: `d_loss(D, x_real, x_fake)` for the discriminator and
`g_loss(D, x_fake)` for the generator. The loop only calls them and steps the optimizers, so a new
formulation (hinge, WGAN-GP, LSGAN, R1, ...) is a new entry here, not a change to the loop.

D returns logits l (no sigmoid), D(x) = sigmoid(l). Every log-probability is computed from logits with
softplus / binary_cross_entropy_with_logits, which stays finite where log(sigmoid(l)) would underflow:
    -log D(x)       = softplus(-l) = BCE(l, 1)
    -log(1 - D(x))  = softplus(l)  = BCE(l, 0)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ganforge.errors import ConfigError

LOSSES = ("ns", "minimax")


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Mean of -[t log D + (1 - t) log(1 - D)] over the batch, from logits."""
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


class GANLoss:
    """The original GAN game (Goodfellow et al. 2014) with its two generator objectives.

    D descends  L_d = -(1/k) sum[log D(x) + log(1 - D(G(z)))]               (same for both kinds)
    G descends  minimax: L_g =  (1/k) sum log(1 - D(G(z)))   (the game as written; saturates early,
                                                                because its gradient vanishes when D
                                                                confidently rejects the fakes)
                ns:      L_g = -(1/k) sum log D(G(z))        (non-saturating: same fixed point, strong
                                                                gradient exactly when G is losing)
    """

    def __init__(self, kind: str = "ns"):
        if kind not in LOSSES:
            raise ConfigError(f"unknown loss {kind!r} (allowed: {', '.join(LOSSES)})")
        self.kind = kind

    def d_loss(self, D: Callable, x_real: torch.Tensor, x_fake: torch.Tensor):
        """(L_d, stats). x_fake must already be detached: this phase must not reach G's weights.

        stats: mean D(x) and mean D(G(z)) as probabilities, detached 0-dim tensors (no host sync).
        """
        logits_real = D(x_real)  # [B]
        logits_fake = D(x_fake)  # [B]
        loss = _bce(logits_real, 1.0) + _bce(logits_fake, 0.0)
        stats = {"d_real": torch.sigmoid(logits_real.detach()).mean(),
                 "d_fake": torch.sigmoid(logits_fake.detach()).mean()}
        return loss, stats

    def g_loss(self, D: Callable, x_fake: torch.Tensor) -> torch.Tensor:
        logits_fake = D(x_fake)  # [B]; gradients flow through D into G (D's own grads are discarded)
        if self.kind == "ns":
            return _bce(logits_fake, 1.0)  # -mean log D(G(z))
        return -_bce(logits_fake, 0.0)  # mean log(1 - D(G(z)))
