"""The WGAN-GP gradient penalty (Gulrajani et al. 2017, "Improved training of Wasserstein GANs").

    GP = lambda * E_x_hat (||grad_x_hat D(x_hat)|| - 1)^2,  x_hat = eps * x_real + (1 - eps) * x_fake,
         eps ~ U[0, 1] per image

A soft 1-Lipschitz constraint on the critic, enforced along the straight lines between real and fake
images, where the optimal critic has gradient norm 1. eps comes from an explicit torch.Generator on the
device: no host sync, and the loop checkpoints that generator so a resumed run draws the same eps.
"""

from __future__ import annotations

import torch

from ganforge.losses.base import Critic, Regularizer, Stats, input_gradient, mean_detached


class GradientPenalty(Regularizer):
    STATS = ("gp_penalty", "gp_grad_norm")  # lambda E(||g|| - 1)^2 (not times every), and E||g|| (-> 1)

    def penalty(self, D: Critic, x_real: torch.Tensor, c_real: torch.Tensor | None, x_fake: torch.Tensor,
                c_fake: torch.Tensor | None, generator: torch.Generator) -> tuple[torch.Tensor, Stats]:
        """x_fake: G's images, detached or not (only the interpolate is differentiated, never G). A
        conditional D judges each interpolate with the real image's class, as conditional WGAN-GP does."""
        b = x_real.shape[0]
        # [B, 1, 1, 1] ~ U[0, 1): one point on each real-fake line
        eps = torch.rand(b, 1, 1, 1, dtype=x_real.dtype, device=x_real.device, generator=generator)
        x_hat = eps * x_real.detach() + (1 - eps) * x_fake.detach()  # [B, C, H, W]
        grad = input_gradient(D, x_hat, c_real)  # [B, C, H, W]
        norm = torch.linalg.vector_norm(grad.flatten(1), dim=1)  # [B]
        gp = self.weight * (norm - 1).square().mean()
        return gp * self.every, {"gp_penalty": gp.detach(), "gp_grad_norm": mean_detached(norm)}
