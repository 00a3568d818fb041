"""The relativistic pairing GAN loss, RpGAN (Jolicoeur-Martineau 2019, "The relativistic discriminator";
the loss of R3GAN, Huang et al. 2024). D judges each fake against a real image, not each image alone:

    L_d = E[softplus(D(G(z_i)) - D(x_i))]   = -E log sigmoid(D(x_i) - D(G(z_i)))
    L_g = E[softplus(D(x_i) - D(G(z_i)))]   = -E log sigmoid(D(G(z_i)) - D(x_i))

pairing the i-th real image with the i-th fake. Huang et al. show that pairing removes the mode dropping
of the unpaired loss: every fake is pushed past a real one, so G cannot sit on one mode that D already
scores above all reals. The G phase needs D's outputs on the real batch (G_NEEDS_REAL).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ganforge.losses.base import Loss, Stats, mean_detached


class RelativisticPairingLoss(Loss):
    D_STATS = ("margin_d",)  # mean D(x_i) - D(G(z_i)) in the D phase: > 0 when D ranks reals above fakes
    G_STATS = ("margin_g",)  # the same margin seen in the G phase, after D's update
    UNBOUNDED_OUTPUT = False  # only differences count, but the R1 + R2 penalties keep D's slope bounded
    NEEDS_CONSTRAINT = False
    G_NEEDS_REAL = True

    def d_loss(self, out_real: torch.Tensor, out_fake: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        margin = out_real - out_fake  # [B]
        return F.softplus(-margin).mean(), {"margin_d": mean_detached(margin)}

    def g_loss(self, out_fake: torch.Tensor, out_real: torch.Tensor | None) -> tuple[torch.Tensor, Stats]:
        margin = out_real - out_fake  # [B]; out_real carries no gradient (D is frozen, reals are data)
        return F.softplus(margin).mean(), {"margin_g": mean_detached(margin)}
