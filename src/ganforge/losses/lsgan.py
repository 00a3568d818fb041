"""The least-squares GAN loss (Mao et al. 2017), with the 0-1 coding a = 0, b = 1, c = 1:

    L_d = 1/2 E[(D(x) - b)^2] + 1/2 E[(D(G(z)) - a)^2] = 1/2 E[(D(x) - 1)^2] + 1/2 E[D(G(z))^2]
    L_g = 1/2 E[(D(G(z)) - c)^2]                        = 1/2 E[(D(G(z)) - 1)^2]

Why 0-1 and not the paper's -1/1/0 coding (a = -1, b = 1, c = 0, the one for which minimising L_g minimises
the Pearson chi^2 divergence, since b - c = 1 and b - a = 2): the 0-1 coding is what Mao et al. used in their
experiments and what most reimplementations (and the LSGAN results people compare with) use; G's target c = 1
equals the real target b, so G is asked to make fakes "look real", the same reading as ns. D's raw output is
the score (no sigmoid: a sigmoid would bring back the saturation least squares is meant to remove).
"""

from __future__ import annotations

import torch

from ganforge.losses.base import Loss, Stats, mean_detached

FAKE_TARGET, REAL_TARGET, G_TARGET = 0.0, 1.0, 1.0  # a, b, c of Mao et al.: part of the formulation


class LeastSquaresLoss(Loss):
    D_STATS = ("score_real", "score_fake")  # mean raw D outputs; targets 1 (real) and 0 (fake)
    G_STATS = ()
    UNBOUNDED_OUTPUT = False  # the quadratic pulls scores to 0 / 1
    NEEDS_CONSTRAINT = False

    def d_loss(self, out_real: torch.Tensor, out_fake: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        loss = 0.5 * (out_real - REAL_TARGET).square().mean() + 0.5 * (out_fake - FAKE_TARGET).square().mean()
        return loss, {"score_real": mean_detached(out_real), "score_fake": mean_detached(out_fake)}

    def g_loss(self, out_fake: torch.Tensor, out_real: torch.Tensor | None) -> tuple[torch.Tensor, Stats]:
        return 0.5 * (out_fake - G_TARGET).square().mean(), {}
