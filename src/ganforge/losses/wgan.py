"""The Wasserstein GAN loss (Arjovsky et al. 2017); with the "gp" regulariser it is WGAN-GP (Gulrajani et al.
2017), with a spectrally normalised D it is WGAN with SN.

D is a critic f with unbounded real output; it estimates W(P_real, P_fake) = sup_{||f||_L <= 1} E[f(x)] -
E[f(G(z))], so it descends the negation:
    L_d = E[D(G(z))] - E[D(x)]
    L_g = -E[D(G(z))]
Without a Lipschitz constraint (gp or spectral norm) the sup is infinite and the critic's values run away:
NEEDS_CONSTRAINT says so.
"""

from __future__ import annotations

import torch

from ganforge.losses.base import Loss, Stats, mean_detached


class WassersteinLoss(Loss):
    # mean critic values, and their difference E[D(x)] - E[D(G(z))]: the Wasserstein estimate (>= 0 once the
    # critic separates; it should shrink as G improves: the curve to watch in WGAN training)
    D_STATS = ("critic_real", "critic_fake", "wasserstein")
    G_STATS = ()
    UNBOUNDED_OUTPUT = True  # only a non-finite critic value is divergence; a large one is not
    NEEDS_CONSTRAINT = True

    def d_loss(self, out_real: torch.Tensor, out_fake: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        loss = out_fake.mean() - out_real.mean()
        return loss, {"critic_real": mean_detached(out_real), "critic_fake": mean_detached(out_fake),
                      "wasserstein": -loss.detach().float()}

    def g_loss(self, out_fake: torch.Tensor, out_real: torch.Tensor | None) -> tuple[torch.Tensor, Stats]:
        return -out_fake.mean(), {}
