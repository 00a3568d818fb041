"""No D regulariser: a zero penalty and no stats, so the GAN object needs no special case for it.

Adding the zero changes nothing, bit for bit: l + 0 == l and the backward of an addition passes the gradient
through unchanged.
"""

from __future__ import annotations

import torch

from ganforge.losses.base import Critic, Regularizer, Stats


class NoRegularizer(Regularizer):
    STATS = ()

    def __init__(self, settings):
        self.weight, self.every = 0.0, 1  # the settings of a penalty that is never applied do not matter

    def penalty(self, D: Critic, x_real: torch.Tensor, c_real: torch.Tensor | None, x_fake: torch.Tensor,
                c_fake: torch.Tensor | None, generator: torch.Generator) -> tuple[torch.Tensor, Stats]:
        return x_real.new_zeros((), dtype=torch.float32), {}
