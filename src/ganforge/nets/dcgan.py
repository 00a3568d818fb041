"""DCGAN generator and discriminator (Radford et al. 2015), sized by the data resolution.

28 px (MNIST, Fashion-MNIST): z is projected to 7x7, then two stride-2 up-convolutions.
32 px (CIFAR-10) and other powers of two (folder data, 64 px by default): z -> 4x4, then log2(res/4)
up-convolutions. D mirrors G. D has no BatchNorm (LeakyReLU 0.2 only) so that its output for one image
never depends on the rest of the batch, which the gradient penalties (R1, GP) require.
With num_classes > 0 both are class-conditional (nets/conditional.py): G's BatchNorms become conditional
ones, D adds the projection <embed(y), phi(x)> on the features its last layer reads (the flattened
[w, base, base] map: the last conv is a linear layer on it).
Either network can be spectrally normalised (nets/spectral.py): `spectral_norm` is a constructor argument,
so a generator file rebuilds the same parametrisation before loading the weights.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ganforge.errors import ConfigError
from ganforge.nets.conditional import (
    ConditionalBatchNorm2d,
    batch_norm,
    check_labels,
    class_logits,
    projection,
    run_layers,
)
from ganforge.nets.spectral import apply_spectral_norm, reset_spectral_norm, trainable_weight

RESOLUTIONS = (8, 16, 28, 32, 64, 128, 256, 512, 1024)  # 28, or a power of two: 4x4 doubled n times


def net_plan(resolution: int) -> tuple[int, int]:
    """(base spatial size, number of stride-2 layers) for a resolution."""
    if resolution not in RESOLUTIONS:
        raise ConfigError(f"DCGAN supports resolutions {', '.join(map(str, RESOLUTIONS))}, got {resolution}")
    if resolution == 28:
        return 7, 2
    return 4, int(math.log2(resolution // 4))


class Generator(nn.Module):
    def config(self) -> dict:
        """The constructor arguments: enough to rebuild this network from a file."""
        return {"z_dim": self.z_dim, "channels": self.channels, "resolution": self.resolution,
                "g_channels": self.g_channels, "spectral_norm": self.spectral_norm,
                "num_classes": self.num_classes}

    def __init__(self, z_dim: int, channels: int, resolution: int, g_channels: int, spectral_norm: bool,
                 num_classes: int = 0):  # 0: unconditional (files written before conditioning have none)
        super().__init__()
        base, n = net_plan(resolution)
        self.z_dim, self.channels, self.resolution, self.g_channels = z_dim, channels, resolution, g_channels
        self.spectral_norm, self.num_classes = spectral_norm, num_classes
        width = g_channels * 2 ** (n - 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(z_dim, width, base, 1, 0, bias=False),  # [B, z, 1, 1] -> [B, w, base, base]
            batch_norm(width, num_classes),
            nn.ReLU(True),
        ]
        for _ in range(n - 1):
            layers += [
                nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False),  # doubles H and W
                batch_norm(width // 2, num_classes),
                nn.ReLU(True),
            ]
            width //= 2
        layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        # z: [B, z_dim] (, class labels y: int64 [B] when conditional) -> images in [-1, 1]: [B, C, R, R]
        check_labels(y, self.num_classes, z.shape[0])
        if y is None:
            return self.net(z[:, :, None, None])
        return run_layers(self.net, z[:, :, None, None], y)


class Discriminator(nn.Module):
    def config(self) -> dict:
        """The constructor arguments."""
        return {"channels": self.channels, "resolution": self.resolution, "d_channels": self.d_channels,
                "spectral_norm": self.spectral_norm, "num_classes": self.num_classes}

    def __init__(self, channels: int, resolution: int, d_channels: int, spectral_norm: bool,
                 num_classes: int = 0):
        super().__init__()
        base, n = net_plan(resolution)
        self.channels, self.resolution, self.d_channels = channels, resolution, d_channels
        self.spectral_norm, self.num_classes = spectral_norm, num_classes
        width = d_channels
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        for _ in range(n - 1):
            layers += [nn.Conv2d(width, width * 2, 4, 2, 1), nn.LeakyReLU(0.2, True)]
            width *= 2
        layers += [nn.Conv2d(width, 1, base, 1, 0)]  # [B, w, base, base] -> [B, 1, 1, 1]
        self.net = nn.Sequential(*layers)
        self.embed = projection(num_classes, width * base * base)  # None when unconditional
        if spectral_norm:
            apply_spectral_norm(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """phi(x): the map the last layer reads, [B, w, base, base]."""
        return self.net[:-1](x)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, classes: bool = False) -> torch.Tensor:
        # x: [B, C, R, R] in [-1, 1] (, labels y [B]) -> logits [B] (no sigmoid: losses work on logits);
        # classes=True: the projection's class logits [B, K] instead (conditional.class_logits)
        if classes:
            return class_logits(self.embed, self.features(x))
        check_labels(y, self.num_classes, x.shape[0])
        if y is None:
            return self.net(x).flatten()
        h = self.features(x)  # [B, w, base, base]
        return self.net[-1](h).flatten() + (self.embed(y) * h.flatten(1)).sum(1)  # psi(phi) + <e(y), phi>


def init_dcgan_weights(module: nn.Module) -> None:
    """DCGAN init: conv weights ~ N(0, 0.02), BatchNorm scale ~ N(1, 0.02), biases 0.

    Under spectral norm the un-normalised weight is initialised (its scale then only sets the starting
    point of the power iteration, whose vectors are reset to the new weights)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(trainable_weight(m), 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, ConditionalBatchNorm2d):  # the same draw for each class's gain
            nn.init.normal_(m.gain, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    reset_spectral_norm(module)
