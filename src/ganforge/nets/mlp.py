"""MLP generator and discriminator for 2-D points (the toy mode-collapse data sets, data/toy.py).

Three registry entries:
- `mlp` follows the 2-D mixture setup of Metz et al. 2017 ("Unrolled generative adversarial networks",
  appendix A): G is a fully connected net with 2 hidden ReLU layers of 128 units and a linear output of 2
  coordinates; D has 1 hidden ReLU layer of 128 units and a linear output (a logit); z is 256-dimensional.
  PyTorch's default init.
- `mlp-pacgan` has the depths of PacGAN's 2-D experiments (Lin et al. 2018, appendix: G 4 hidden layers of
  400 units, D 3 of 200) with plain ReLU layers and PyTorch's init. On this benchmark's 3-sigma rule the
  shallow D of `mlp` leaves a trail of samples between the modes (bench/RESULTS.md); this entry does not.
- `mlp-pacgan-paper` is that network exactly as the authors' code builds it (fjxmlzn/PacGAN,
  synthetic_data_experiments): each hidden layer of G is Linear (no bias) -> BatchNorm -> ReLU, each of D a
  5-piece maxout, weights N(0, 0.02), biases 0. Their setting: z of 2, Adam 1e-4 (beta1 0.8), batch 100,
  400 epochs of 100,000 points (400,000 steps: a GPU budget; at CPU budgets the plain entry did better,
  bench/RESULTS.md). Maxout is per sample, so each D output still depends on its own input only (what
  R1/GP and packing assume).
The widths come from train.g_channels / train.d_channels and z from train.z_dim, so each paper's setting is
a params choice; the depths are the entry's.

Points travel as float32 [B, 2, 1, 1] (2 channels of a 1x1 image, see data/toy.py), so the networks take
the registry's usual arguments: `channels` is the point's dimension (D: times the PacGAN packing, plus one
for the minibatch-stddev feature) and `resolution` must be 1. G's output is unbounded (no tanh): the modes
of grid25 lie at +-4.
"""

from __future__ import annotations

import torch
from torch import nn

from ganforge.errors import ConfigError
from ganforge.nets.conditional import check_labels
from ganforge.nets.spectral import apply_spectral_norm, reset_spectral_norm, trainable_weight

RESOLUTIONS = (1,)  # points: a 1x1 "image" of `channels` coordinates


class Maxout(nn.Module):
    """Linear maxout (Goodfellow et al. 2013): `pieces` linear maps, the largest of them per unit."""

    def __init__(self, inputs: int, width: int, pieces: int):
        super().__init__()
        self.width, self.pieces = width, pieces
        self.linear = nn.Linear(inputs, width * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).unflatten(1, (self.width, self.pieces)).amax(2)


def _mlp(inputs: int, width: int, hidden: int, outputs: int, batchnorm: bool = False,
         maxout: int = 0) -> nn.Sequential:
    # hidden layers of `width` units: Linear + ReLU, or Linear (no bias) + BatchNorm + ReLU, or maxout
    layers: list[nn.Module] = []
    for i in range(hidden):
        n_in = inputs if i == 0 else width
        if maxout:
            layers.append(Maxout(n_in, width, maxout))
        elif batchnorm:
            layers += [nn.Linear(n_in, width, bias=False), nn.BatchNorm1d(width), nn.ReLU(True)]
        else:
            layers += [nn.Linear(n_in, width), nn.ReLU(True)]
    layers.append(nn.Linear(width if hidden else inputs, outputs))
    return nn.Sequential(*layers)


def _check_resolution(resolution: int) -> None:
    if resolution not in RESOLUTIONS:
        raise ConfigError(f"the MLP is built for 2-D points (resolution 1), got {resolution} px images")


def _check_unconditional(num_classes: int) -> None:
    if num_classes:
        raise ConfigError("train.conditional: the mlp architecture (toy 2-D data, which has no classes) is "
                          "unconditional; set train.conditional: false")


class MLPGenerator(nn.Module):
    hidden_layers = 2  # Metz et al. 2017, appendix A
    batchnorm = False
    num_classes = 0  # always unconditional (toy data has no classes)

    def config(self) -> dict:
        """The constructor arguments: enough to rebuild this network from a file."""
        return {"z_dim": self.z_dim, "channels": self.channels, "resolution": self.resolution,
                "g_channels": self.g_channels, "spectral_norm": self.spectral_norm}

    def __init__(self, z_dim: int, channels: int, resolution: int, g_channels: int, spectral_norm: bool,
                 num_classes: int = 0):
        super().__init__()
        _check_resolution(resolution)
        _check_unconditional(num_classes)
        self.z_dim, self.channels, self.resolution, self.g_channels = z_dim, channels, resolution, g_channels
        self.spectral_norm = spectral_norm
        self.net = _mlp(z_dim, g_channels, self.hidden_layers, channels, batchnorm=self.batchnorm)
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        # z: [B, z_dim] -> points [B, channels, 1, 1] (y: always None, the MLP is unconditional)
        check_labels(y, 0, z.shape[0])
        return self.net(z)[:, :, None, None]


class MLPDiscriminator(nn.Module):
    hidden_layers = 1  # Metz et al. 2017, appendix A
    maxout = 0  # pieces of a maxout hidden layer; 0 = ReLU
    num_classes = 0

    def config(self) -> dict:
        """The constructor arguments."""
        return {"channels": self.channels, "resolution": self.resolution, "d_channels": self.d_channels,
                "spectral_norm": self.spectral_norm}

    def __init__(self, channels: int, resolution: int, d_channels: int, spectral_norm: bool,
                 num_classes: int = 0):
        super().__init__()
        _check_resolution(resolution)
        _check_unconditional(num_classes)
        self.channels, self.resolution, self.d_channels = channels, resolution, d_channels
        self.spectral_norm = spectral_norm
        self.net = _mlp(channels, d_channels, self.hidden_layers, 1, maxout=self.maxout)
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        check_labels(y, 0, x.shape[0])
        # x: [B, channels, 1, 1] -> logits [B]; each point judged on its own (no BatchNorm: R1/GP need that)
        return self.net(x.flatten(1)).flatten()


class PacGANGenerator(MLPGenerator):
    hidden_layers = 4  # Lin et al. 2018, appendix (2-D experiments)


class PacGANDiscriminator(MLPDiscriminator):
    hidden_layers = 3


class PacGANPaperGenerator(PacGANGenerator):
    batchnorm = True  # the authors' code: BatchNormalization before each hidden ReLU


class PacGANPaperDiscriminator(PacGANDiscriminator):
    maxout = 5  # the authors' code: LinearMaxout, 5 pieces


def init_mlp_weights(module: nn.Module) -> None:
    """PyTorch's default Linear init (drawn at construction from the caller's seeded global RNG), as the
    paper's code used its framework's default; only the spectral-norm vectors are reset to the weights."""
    reset_spectral_norm(module)


@torch.no_grad()
def init_pacgan_weights(module: nn.Module) -> None:
    """PacGAN's init (its config: IsotropicGaussian(0.02), biases Constant(0)); BatchNorm keeps 1 and 0."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            trainable_weight(layer).normal_(0.0, 0.02)
            if layer.bias is not None:
                layer.bias.zero_()
    reset_spectral_norm(module)
