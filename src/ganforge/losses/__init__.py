"""GAN loss objects and D regularisers: the adversarial maths, kept out of the training loop.

Two registries, name -> class (params.yaml names the entry; the allowed names shown by validation are these
keys). A new formulation is one file plus one line here; the loop sums and logs whatever stats it returns.

    LOSSES        ns | minimax (gan.py), hinge, wgan, lsgan     d_loss / g_loss, see base.Loss
    REGULARIZERS  none | r1 | gp                                 penalty(D, x_real, x_fake, generator), see
                                                                 base.Regularizer
"""

from __future__ import annotations

from ganforge.errors import ConfigError
from ganforge.losses.base import Loss, Regularizer
from ganforge.losses.gan import MinimaxLoss, NonSaturatingLoss
from ganforge.losses.gp import GradientPenalty
from ganforge.losses.hinge import HingeLoss
from ganforge.losses.lsgan import LeastSquaresLoss
from ganforge.losses.none import NoRegularizer
from ganforge.losses.r1 import R1Penalty
from ganforge.losses.wgan import WassersteinLoss

LOSSES: dict[str, type[Loss]] = {
    "ns": NonSaturatingLoss,
    "minimax": MinimaxLoss,
    "hinge": HingeLoss,
    "wgan": WassersteinLoss,
    "lsgan": LeastSquaresLoss,
}

# Every regulariser is built as cls(weight, every) (train.reg in params.yaml): weight is R1's gamma or
# GP's lambda; every is the lazy interval.
REGULARIZERS: dict[str, type[Regularizer]] = {
    "none": NoRegularizer,
    "r1": R1Penalty,
    "gp": GradientPenalty,
}


def make_loss(name: str) -> Loss:
    """The loss object registered as `name` (none of them has hyperparameters)."""
    if name not in LOSSES:
        raise ConfigError(f"unknown loss {name!r} (allowed: {', '.join(LOSSES)})")
    return LOSSES[name]()


def make_regularizer(name: str, weight: float, every: int) -> Regularizer:
    """The D regulariser registered as `name` with its weight (R1 gamma, GP lambda) and lazy interval."""
    if name not in REGULARIZERS:
        raise ConfigError(f"unknown regulariser {name!r} (allowed: {', '.join(REGULARIZERS)})")
    return REGULARIZERS[name](weight, every)


def constraint_warning(loss: str, reg: str, d_spectral_norm: bool) -> str | None:
    """A loss whose critic must be kept Lipschitz (wgan) with neither a gradient penalty nor spectral norm
    trains, but its critic values can grow without bound: the sentence to warn with, else None."""
    if LOSSES[loss].NEEDS_CONSTRAINT and reg != "gp" and not d_spectral_norm:
        return (f"train.loss {loss} without a Lipschitz constraint on D: its critic is unconstrained (set "
                "train.reg.kind: gp or train.spectral_norm.d: true)")
    return None


__all__ = ["LOSSES", "REGULARIZERS", "Loss", "Regularizer", "constraint_warning", "make_loss",
           "make_regularizer"]
