"""ResNet generator and discriminator of SNGAN (Miyato et al. 2018, CIFAR-10 model; as in the mimicry library,
Lee & Town 2020), for 32 px and a 28 px variant.

G: z -> linear -> [B, w, base, base] -> n up-sampling residual blocks -> BN-ReLU-conv3x3-tanh -> [B, C, R, R]
   32 px: base 4, 3 up blocks (4 -> 8 -> 16 -> 32);  28 px: base 7, 2 up blocks (7 -> 14 -> 28).
   Width w = g_channels throughout (SNGAN: 256).
D: optimized first block (down) -> a down block -> 2 blocks without down-sampling -> ReLU -> sum over H, W ->
   linear -> [B]. 32 px: 32 -> 16 -> 8 -> 8 -> 8; 28 px: 28 -> 14 -> 7 -> 7 -> 7: the same layers, since the
   global sum pooling takes any size. Width d_channels throughout (SNGAN: 128). No BatchNorm in D, so each
   image's output depends on that image only (R1 and GP need per-image gradients).
num_classes > 0 (nets/conditional.py): G's BatchNorms are class-conditional, D adds the projection
<embed(y), h> on the pooled features h its last linear layer reads (SNGAN-projection's D exactly).
Up-sampling is nearest-neighbour, as in SNGAN's original code (mimicry uses bilinear). Spectral norm on D is
SNGAN's setting; here it is a constructor flag for each network, like DCGAN's.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.errors import ConfigError
from ganforge.nets.conditional import (
    ConditionalBatchNorm2d,
    ConditionalBlock,
    batch_norm,
    check_labels,
    class_logits,
    projection,
    run_layers,
)
from ganforge.nets.spectral import apply_spectral_norm, reset_spectral_norm, trainable_weight

# resolution -> (G's base size, number of G up blocks); D has the same layers at both
G_PLANS = {28: (7, 2), 32: (4, 3)}
RESOLUTIONS = tuple(G_PLANS)


def _plan(resolution: int) -> tuple[int, int]:
    if resolution not in G_PLANS:
        raise ConfigError(f"the resnet architecture supports resolutions {', '.join(map(str, RESOLUTIONS))}, "
                          f"got {resolution}")
    return G_PLANS[resolution]


class GBlock(ConditionalBlock):
    """BN-ReLU-up-conv3x3-BN-ReLU-conv3x3, plus an up-sampled 1x1-conv shortcut:
    [B, c, H, W] (, labels [B] when conditional) -> [B, c, 2H, 2W]."""

    def __init__(self, channels: int, num_classes: int = 0):
        super().__init__()
        self.b1, self.b2 = batch_norm(channels, num_classes), batch_norm(channels, num_classes)
        self.c1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.c2 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.c_sc = nn.Conv2d(channels, channels, 1, 1, 0)  # learnable: the block changes the size

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = F.relu(run_layers([self.b1], x, y))  # the BatchNorm, class-conditional or not
        h = F.interpolate(h, scale_factor=2, mode="nearest")  # [B, c, 2H, 2W]
        h = self.c2(F.relu(run_layers([self.b2], self.c1(h), y)))
        return h + self.c_sc(F.interpolate(x, scale_factor=2, mode="nearest"))


class DBlock(nn.Module):
    """ReLU-conv3x3-ReLU-conv3x3(-avgpool2), plus a shortcut (1x1 conv, then avgpool2, when down-sampling):
    [B, c_in, H, W] -> [B, c, H/2, W/2] with down-sampling, [B, c, H, W] without."""

    def __init__(self, in_channels: int, channels: int, downsample: bool):
        super().__init__()
        self.downsample = downsample
        self.c1 = nn.Conv2d(in_channels, in_channels, 3, 1, 1)  # SNGAN: hidden width = input width
        self.c2 = nn.Conv2d(in_channels, channels, 3, 1, 1)
        learnable_sc = downsample or in_channels != channels
        self.c_sc = nn.Conv2d(in_channels, channels, 1, 1, 0) if learnable_sc else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c2(F.relu(self.c1(F.relu(x))))
        sc = x if self.c_sc is None else self.c_sc(x)
        if self.downsample:
            h, sc = F.avg_pool2d(h, 2), F.avg_pool2d(sc, 2)
        return h + sc


class DBlockOptimized(nn.Module):
    """D's first block, on the raw image (no ReLU before the first conv, which would clip the pixels at 0):
    conv3x3-ReLU-conv3x3-avgpool2, shortcut avgpool2-conv1x1: [B, C, H, W] -> [B, c, H/2, W/2]."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.c1 = nn.Conv2d(in_channels, channels, 3, 1, 1)
        self.c2 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.c_sc = nn.Conv2d(in_channels, channels, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.avg_pool2d(self.c2(F.relu(self.c1(x))), 2)
        return h + self.c_sc(F.avg_pool2d(x, 2))


class ResNetGenerator(nn.Module):
    def config(self) -> dict:
        """The constructor arguments: enough to rebuild this network from a file."""
        return {"z_dim": self.z_dim, "channels": self.channels, "resolution": self.resolution,
                "g_channels": self.g_channels, "spectral_norm": self.spectral_norm,
                "num_classes": self.num_classes}

    def __init__(self, z_dim: int, channels: int, resolution: int, g_channels: int, spectral_norm: bool,
                 num_classes: int = 0):  # 0: unconditional (files written before conditioning have none)
        super().__init__()
        self.base, n_up = _plan(resolution)
        self.z_dim, self.channels, self.resolution, self.g_channels = z_dim, channels, resolution, g_channels
        self.spectral_norm, self.num_classes = spectral_norm, num_classes
        self.l1 = nn.Linear(z_dim, self.base**2 * g_channels)
        self.blocks = nn.Sequential(*[GBlock(g_channels, num_classes) for _ in range(n_up)])
        self.b_out = batch_norm(g_channels, num_classes)
        self.c_out = nn.Conv2d(g_channels, channels, 3, 1, 1)
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        # z: [B, z_dim] (, labels y [B]) -> [B, w, base, base] -> blocks -> [B, w, R, R] -> [B, C, R, R]
        check_labels(y, self.num_classes, z.shape[0])
        h = self.l1(z).view(z.shape[0], self.g_channels, self.base, self.base)
        h = run_layers([*self.blocks, self.b_out], h, y)
        return torch.tanh(self.c_out(F.relu(h)))


class ResNetDiscriminator(nn.Module):
    def config(self) -> dict:
        """The constructor arguments."""
        return {"channels": self.channels, "resolution": self.resolution, "d_channels": self.d_channels,
                "spectral_norm": self.spectral_norm, "num_classes": self.num_classes}

    def __init__(self, channels: int, resolution: int, d_channels: int, spectral_norm: bool,
                 num_classes: int = 0):
        super().__init__()
        _plan(resolution)  # refuses unsupported resolutions, like G
        self.channels, self.resolution, self.d_channels = channels, resolution, d_channels
        self.spectral_norm, self.num_classes = spectral_norm, num_classes
        self.blocks = nn.Sequential(
            DBlockOptimized(channels, d_channels),  # R -> R/2
            DBlock(d_channels, d_channels, downsample=True),  # R/2 -> R/4
            DBlock(d_channels, d_channels, downsample=False),
            DBlock(d_channels, d_channels, downsample=False),
        )
        self.l_out = nn.Linear(d_channels, 1)
        self.embed = projection(num_classes, d_channels)  # None when unconditional
        if spectral_norm:
            apply_spectral_norm(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """phi(x): [B, C, R, R] -> [B, d, R/4, R/4] -> ReLU, global sum pooling -> [B, d]."""
        return F.relu(self.blocks(x)).sum(dim=(2, 3))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, classes: bool = False) -> torch.Tensor:
        # x: [B, C, R, R] in [-1, 1] (, labels y [B]) -> raw outputs [B]; classes=True: the projection's
        # class logits [B, K] instead (conditional.class_logits)
        if classes:
            return class_logits(self.embed, self.features(x))
        check_labels(y, self.num_classes, x.shape[0])
        h = self.features(x)  # [B, d]
        out = self.l_out(h).flatten()
        return out if y is None else out + (self.embed(y) * h).sum(1)  # psi(phi) + <embed(y), phi>


def init_resnet_weights(module: nn.Module) -> None:
    """SNGAN's init (mimicry's): Xavier-uniform weights, gain sqrt(2) for the residual convs (c1, c2, followed
    by ReLU) and 1 for the others (shortcuts, the first linear, the output conv and linear); biases 0 (the
    original chainer code's default); BatchNorm scale 1, shift 0. Under spectral norm the un-normalised weight
    is initialised and the power-iteration vectors are reset to it."""
    for name, m in module.named_modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            residual = name.rsplit(".", 1)[-1] in ("c1", "c2")
            nn.init.xavier_uniform_(trainable_weight(m), math.sqrt(2) if residual else 1.0)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, ConditionalBatchNorm2d):
            nn.init.ones_(m.gain)
            nn.init.zeros_(m.bias)
    reset_spectral_norm(module)
