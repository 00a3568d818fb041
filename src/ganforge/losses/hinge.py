"""The hinge loss (Lim & Ye 2017, "Geometric GAN"; the form of Miyato et al. 2018 and BigGAN).

D descends  L_d = E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]   (a margin: real scored >= 1 and fake <= -1 cost
                                                               nothing, so D stops pushing once it separates)
G descends  L_g = -E[D(G(z))]                                 (not hinged: G always has a gradient)
D's raw output (a logit) is used directly, no sigmoid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ganforge.losses.base import Loss, Stats, mean_detached


class HingeLoss(Loss):
    D_STATS = ("logit_real", "logit_fake")  # mean raw D outputs; the margin is at +1 / -1
    G_STATS = ()
    # The margin stops D from pushing its outputs past +-1, so large values mean trouble as in ns
    UNBOUNDED_OUTPUT = False
    NEEDS_CONSTRAINT = False

    def d_loss(self, out_real: torch.Tensor, out_fake: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        loss = F.relu(1 - out_real).mean() + F.relu(1 + out_fake).mean()
        return loss, {"logit_real": mean_detached(out_real), "logit_fake": mean_detached(out_fake)}

    def g_loss(self, out_fake: torch.Tensor, out_real: torch.Tensor | None) -> tuple[torch.Tensor, Stats]:
        return -out_fake.mean(), {}
