"""The R2 gradient penalty: R1's twin on the generated images (Mescheder et al. 2018; with R1 and the
relativistic pairing loss it makes R3GAN, Huang et al. 2024, "The GAN is dead; long live the GAN!").

    R2 = gamma / 2 * E_x~P_fake ||grad_x D(x, c)||^2     (fakes detached: only D is penalised)

R1 alone keeps D flat on the real data; with a relativistic loss Huang et al. show that R1 + R2 together
give local convergence where either alone does not (their section 2), and use the same gamma for both.
"""

from __future__ import annotations

import torch

from ganforge.losses.base import Critic, Regularizer, Stats, squared_gradient_penalty


class R2Penalty(Regularizer):
    STATS = ("r2_penalty", "r2_grad_norm")  # gamma/2 E||g||^2 on fakes (not times every), and E||g||

    def penalty(self, D: Critic, x_real: torch.Tensor, c_real: torch.Tensor | None, x_fake: torch.Tensor,
                c_fake: torch.Tensor | None, generator: torch.Generator) -> tuple[torch.Tensor, Stats]:
        """The reals and the generator are not used: R2 looks at G's images (with their classes) only."""
        return squared_gradient_penalty(D, x_fake, c_fake, self.weight, self.every, self.STATS)
