"""Spectral normalisation (Miyato et al. 2018) of every convolution and linear layer of a network.

Each weight W is used as W / sigma(W), sigma the largest singular value of W reshaped to a matrix
[out, in * kh * kw], estimated by one power iteration per forward pass in train mode
(torch.nn.utils.parametrizations.spectral_norm; ConvTranspose2d weights [in, out, kh, kw] are reshaped with
their output dim first, which that function does by itself). So every layer is 1-Lipschitz (D as a whole
too, with 1-Lipschitz activations): the constraint WGAN needs, and a stabiliser for the other losses.

What training must keep: the parametrised layer's trainable weight is `parametrizations.weight.original`,
and the power-iteration vectors u, v are buffers (`..._u`, `..._v`): all in state_dict, so checkpoints and
generator files restore them and a resumed run continues bit for bit.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

SN_LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)  # Embedding: the projection D's
POWER_ITERATIONS = 1  # per forward pass in train mode, as in Miyato et al.: u, v persist across steps


def apply_spectral_norm(module: nn.Module) -> nn.Module:
    """Spectrally normalise every SN_LAYERS layer of `module`, in place; returns it."""
    for layer in [m for m in module.modules() if isinstance(m, SN_LAYERS)]:
        spectral_norm(layer, n_power_iterations=POWER_ITERATIONS)
    return module


def trainable_weight(layer: nn.Module) -> torch.Tensor:
    """The parameter to initialise: `weight`, or under spectral norm the un-normalised `original`
    (layer.weight is then recomputed on every access, and writing to it would change nothing)."""
    if parametrize.is_parametrized(layer, "weight"):
        return layer.parametrizations.weight.original
    return layer.weight


@torch.no_grad()
def reset_spectral_norm(module: nn.Module) -> None:
    """Set each spectrally normalised layer's u, v to the exact leading singular vectors of its weight.

    Call after (re-)initialising the weights: u, v were computed for the weights the layer had when
    spectral_norm was applied, and one power iteration per step would take several steps to catch up, the
    first steps dividing by a wrong sigma. Deterministic (an SVD, no random draws)."""
    for layer in module.modules():
        if not (isinstance(layer, SN_LAYERS) and parametrize.is_parametrized(layer, "weight")):
            continue
        sn = layer.parametrizations.weight[0]  # torch's _SpectralNorm: buffers _u [out], _v [in*kh*kw]
        w = layer.parametrizations.weight.original
        w_mat = w.movedim(sn.dim, 0).flatten(1)  # [out, in * kh * kw]
        u, _, vh = torch.linalg.svd(w_mat.float(), full_matrices=False)
        sn._u.copy_(u[:, 0])
        sn._v.copy_(vh[0])
