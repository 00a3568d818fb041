"""The R1 gradient penalty (Mescheder et al. 2018, "Which training methods for GANs do actually converge?").

    R1 = gamma / 2 * E_x~P_real ||grad_x D(x, c)||^2     (D's raw output: the logit, before any sigmoid)

It penalises D's slope on the real data only, which makes the GAN game locally convergent at the equilibrium
(D = 0 on the data manifold). Lazy form (StyleGAN2, Karras et al. 2020): computed every `every` D steps and
multiplied by `every`, which keeps its average weight while saving most of its double-backward cost.
"""

from __future__ import annotations

import torch

from ganforge.losses.base import Critic, Regularizer, Stats, squared_gradient_penalty


class R1Penalty(Regularizer):
    STATS = ("r1_penalty", "r1_grad_norm")  # gamma/2 E||g||^2 (not times every), and E||g||

    def penalty(self, D: Critic, x_real: torch.Tensor, c_real: torch.Tensor | None, x_fake: torch.Tensor,
                c_fake: torch.Tensor | None, generator: torch.Generator) -> tuple[torch.Tensor, Stats]:
        """The fakes and the generator are not used: R1 looks at real images only and draws nothing."""
        return squared_gradient_penalty(D, x_real, c_real, self.weight, self.every, self.STATS)
