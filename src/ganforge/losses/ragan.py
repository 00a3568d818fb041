"""The relativistic average GAN (Jolicoeur-Martineau 2019), ESRGAN's adversarial loss (Wang et al. 2018).

D returns raw logits C(x); the relativistic average discriminator asks how much more real a real image is
than the average fake (and the reverse), with sigma the logistic function:
    D_Ra(x_r, x_f) = sigma(C(x_r) - E[C(x_f)])      D_Ra(x_f, x_r) = sigma(C(x_f) - E[C(x_r)])
D descends  L_d = -E[log D_Ra(x_r, x_f)] - E[log(1 - D_Ra(x_f, x_r))]
G descends  L_g = -E[log(1 - D_Ra(x_r, x_f))] - E[log D_Ra(x_f, x_r)]    (the symmetric one: G gains from
            the real images' scores too, which is why it reads them: G_NEEDS_REAL)
Each -log sigma is a binary cross-entropy on logits (finite where the sigmoid underflows), as in gan.py.
"""

from __future__ import annotations

import torch

from ganforge.losses.base import Loss, Stats, mean_detached
from ganforge.losses.gan import _bce


class RelativisticAverageLoss(Loss):
    D_STATS = ("d_real_vs_fake",)  # mean D_Ra(x_r, x_f): 0.5 = D cannot tell, 1 = it always can
    G_STATS = ()
    UNBOUNDED_OUTPUT = False
    NEEDS_CONSTRAINT = False
    G_NEEDS_REAL = True

    def d_loss(self, out_real: torch.Tensor, out_fake: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        rel_real, rel_fake = out_real - out_fake.mean(), out_fake - out_real.mean()
        loss = _bce(rel_real, 1.0) + _bce(rel_fake, 0.0)
        return loss, {"d_real_vs_fake": mean_detached(torch.sigmoid(rel_real.detach()))}

    def g_loss(self, out_fake: torch.Tensor, out_real: torch.Tensor | None) -> tuple[torch.Tensor, Stats]:
        assert out_real is not None
        out_real = out_real.detach()  # G's gradient flows through its fakes only
        return _bce(out_real - out_fake.mean(), 0.0) + _bce(out_fake - out_real.mean(), 1.0), {}
