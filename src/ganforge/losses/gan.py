"""The original GAN game (Goodfellow et al. 2014), with its two generator objectives: ns and minimax.

D returns logits l (no sigmoid), D(x) = sigmoid(l). Every log-probability is computed from logits with
binary_cross_entropy_with_logits (softplus), which stays finite where log(sigmoid(l)) would underflow:
    -log D(x)       = softplus(-l) = BCE(l, 1)
    -log(1 - D(x))  = softplus(l)  = BCE(l, 0)

D descends  L_d = -(1/k) sum[log D(x) + log(1 - D(G(z)))]               (same for both kinds)
G descends  minimax: L_g =  (1/k) sum log(1 - D(G(z)))   (the game as written; saturates early, because its
                                                           gradient vanishes when D confidently rejects fakes)
            ns:      L_g = -(1/k) sum log D(G(z))        (non-saturating: same fixed point, strong gradient
                                                           exactly when G is losing)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ganforge.losses.base import Loss, Stats, mean_detached


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Mean of -[t log D + (1 - t) log(1 - D)] over the batch, from logits [B]."""
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


class _OriginalGAN(Loss):
    D_STATS = ("d_real", "d_fake")  # mean D(x) and mean D(G(z)) as probabilities
    G_STATS = ()
    UNBOUNDED_OUTPUT = False  # the stats are probabilities in [0, 1]
    NEEDS_CONSTRAINT = False

    def d_loss(self, out_real: torch.Tensor, out_fake: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        loss = _bce(out_real, 1.0) + _bce(out_fake, 0.0)
        return loss, {"d_real": mean_detached(torch.sigmoid(out_real.detach())),
                      "d_fake": mean_detached(torch.sigmoid(out_fake.detach()))}


class NonSaturatingLoss(_OriginalGAN):
    def g_loss(self, out_fake: torch.Tensor, out_real: torch.Tensor | None) -> tuple[torch.Tensor, Stats]:
        return _bce(out_fake, 1.0), {}  # -mean log D(G(z))


class MinimaxLoss(_OriginalGAN):
    def g_loss(self, out_fake: torch.Tensor, out_real: torch.Tensor | None) -> tuple[torch.Tensor, Stats]:
        return -_bce(out_fake, 0.0), {}  # mean log(1 - D(G(z)))
