"""The R1 gradient penalty (Mescheder et al. 2018, "Which training methods for GANs do actually converge?").

    R1 = gamma / 2 * E_x~P_real ||grad_x D(x)||^2        (D's raw output: the logit, before any sigmoid)

It penalises D's slope on the real data only, which makes the GAN game locally convergent at the equilibrium
(D = 0 on the data manifold). Lazy form (StyleGAN2, Karras et al. 2020): computed every `every` D steps and
multiplied by `every`, which keeps its average weight while saving most of its double-backward cost.
"""

from __future__ import annotations

import torch

from ganforge.losses.base import Critic, Regularizer, Stats, checked_settings, input_gradient, mean_detached


class R1Penalty(Regularizer):
    STATS = ("r1_penalty", "r1_grad_norm")  # gamma/2 E||g||^2 (not times every), and E||g||

    def __init__(self, weight: float, every: int):
        self.gamma, self.every = checked_settings("r1 gamma", weight, every)  # weight = gamma

    def penalty(self, D: Critic, x_real: torch.Tensor, x_fake: torch.Tensor,
                generator: torch.Generator) -> tuple[torch.Tensor, Stats]:
        """x_fake and generator are not used: R1 looks at real images only and draws nothing."""
        grad = input_gradient(D, x_real)  # [B, C, H, W]
        sq_norm = grad.square().flatten(1).sum(1)  # [B]: ||grad_x D(x_i)||^2
        r1 = 0.5 * self.gamma * sq_norm.mean()
        return r1 * self.every, {"r1_penalty": r1.detach(), "r1_grad_norm": mean_detached(sq_norm.sqrt())}
