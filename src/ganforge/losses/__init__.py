"""GAN loss objects and D regularisers: the adversarial maths, kept out of the training loop.

Two registries, name -> class (params.yaml names the entry; the allowed names shown by validation are these
keys). A new formulation, with or without hyperparameters, is one file plus one line here: its class
declares its settings (a pydantic model, `Settings`) and config.py validates the params against it.

    LOSSES        ns | minimax (gan.py), hinge, wgan, lsgan, rpgan,  d_loss / g_loss on D's outputs, base.Loss
                  ragan
    REGULARIZERS  none | r1 | r2 | gp                                 penalty(D, x_real, c_real, x_fake,
                                                                      c_fake, generator), base.Regularizer
train.reg.kind may join several penalties with "+" (R3GAN: r1+r2): they share the weight and the interval.
"""

from __future__ import annotations

from pydantic import BaseModel

from ganforge.errors import ConfigError
from ganforge.losses.base import Loss, PenaltySettings, Regularizer
from ganforge.losses.gan import MinimaxLoss, NonSaturatingLoss
from ganforge.losses.gp import GradientPenalty
from ganforge.losses.hinge import HingeLoss
from ganforge.losses.lsgan import LeastSquaresLoss
from ganforge.losses.none import NoRegularizer
from ganforge.losses.r1 import R1Penalty
from ganforge.losses.r2 import R2Penalty
from ganforge.losses.ragan import RelativisticAverageLoss
from ganforge.losses.rpgan import RelativisticPairingLoss
from ganforge.losses.wgan import WassersteinLoss

LOSSES: dict[str, type[Loss]] = {
    "ns": NonSaturatingLoss,
    "minimax": MinimaxLoss,
    "hinge": HingeLoss,
    "wgan": WassersteinLoss,
    "lsgan": LeastSquaresLoss,
    "rpgan": RelativisticPairingLoss,
    "ragan": RelativisticAverageLoss,
}

REGULARIZERS: dict[str, type[Regularizer]] = {
    "none": NoRegularizer,
    "r1": R1Penalty,
    "r2": R2Penalty,
    "gp": GradientPenalty,
}


def make_loss(name: str, settings: BaseModel | None = None) -> Loss:
    """The loss object registered as `name`, with its validated settings (None: its empty settings)."""
    if name not in LOSSES:
        raise ConfigError(f"unknown loss {name!r} (allowed: {', '.join(LOSSES)})")
    return LOSSES[name](settings)


def regularizer_names(kind: str) -> list[str]:
    """train.reg.kind -> the registered penalties it names ("r1+r2" -> [r1, r2]); a ConfigError for an
    unknown one, for "none" beside others, or for a repeat."""
    names = kind.split("+")
    unknown = [n for n in names if n not in REGULARIZERS]
    if unknown:
        raise ConfigError(f"unknown regulariser {unknown[0]!r} (allowed: {', '.join(REGULARIZERS)}, or "
                          "several joined by +, e.g. r1+r2)")
    if len(names) > 1 and "none" in names:
        raise ConfigError(f"{kind!r}: none stands alone (it is no penalty); join only penalties with +")
    if len(set(names)) < len(names):
        raise ConfigError(f"{kind!r}: each penalty once (join distinct penalties with +)")
    return names


def make_regularizers(kind: str, settings: PenaltySettings) -> list[Regularizer]:
    """The D penalties train.reg.kind names, each with the shared weight and lazy interval."""
    return [REGULARIZERS[name](settings) for name in regularizer_names(kind)]


def constraint_warning(loss: str, reg: str, d_spectral_norm: bool) -> str | None:
    """A loss whose critic must be kept Lipschitz (wgan) with neither a gradient penalty nor spectral norm
    trains, but its critic values can grow without bound: the sentence to warn with, else None."""
    if LOSSES[loss].NEEDS_CONSTRAINT and "gp" not in regularizer_names(reg) and not d_spectral_norm:
        return (f"train.loss {loss} without a Lipschitz constraint on D: its critic is unconstrained (set "
                "train.reg.kind: gp or train.spectral_norm.d: true)")
    return None


__all__ = ["LOSSES", "REGULARIZERS", "Loss", "PenaltySettings", "Regularizer", "constraint_warning",
           "make_loss", "make_regularizers", "regularizer_names"]
