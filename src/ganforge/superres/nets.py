"""The SR networks: SRResNet (the generator) and a patch discriminator, with their files.

SRResNet (Ledig et al. 2017) as EDSR and ESRGAN's RRDB-lite recipe have it: residual blocks without
BatchNorm (BatchNorm's batch statistics make artefacts at test time and differ between crops and whole
images), a long skip around the body, pixel-shuffle upsampling (x2 per stage, conv to 4x the channels,
PixelShuffle(2)) initialised by ICNR (Aitken et al. 2017: every sub-pixel starts equal, so no checkerboard at
step 0), LeakyReLU. One addition: the bicubic upscale of the input is added to the output (VDSR's global
residual, Kim et al. 2016) and the last convolution starts at zero, so the untrained network *is* bicubic
and training only learns what bicubic misses; on a CPU budget that is the difference between starting at
the baseline and starting from grey.

Every convolution pads with zeros and nothing normalises over the image, so the output at a pixel depends
only on the input within receptive_radius() LR pixels: what makes tiled upscaling exact (tiles.py).

The discriminator sees HR crops: stride-2 convolutions (ESRGAN's VGG-style D without its 3 x 3 convolution
between them, a quarter of its cost on a CPU), spectral norm on every
layer instead of BatchNorm, a 1-channel score map averaged to one raw output per image [B] (what the losses
registry expects).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from ganforge.nets.spectral import apply_spectral_norm
from ganforge.nets.store import load_net, save_net
from ganforge.superres.degrade import bicubic

SR_FORMAT = "ganforge.superres/1"
SLOPE = 0.2  # LeakyReLU


def conv3(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, 1, 1)


def icnr_(conv: nn.Conv2d, r: int) -> None:
    """ICNR: a conv feeding PixelShuffle(r) starts as a conv of out/r^2 channels repeated for each sub-pixel,
    so the shuffle's output is the nearest-neighbour upscale of that conv."""
    out, c_in, k, _ = conv.weight.shape
    base = torch.empty(out // r**2, c_in, k, k)
    nn.init.kaiming_normal_(base, a=SLOPE)
    with torch.no_grad():
        conv.weight.copy_(base.repeat_interleave(r**2, dim=0))
        conv.bias.copy_(conv.bias[:: r**2].repeat_interleave(r**2))


class ResBlock(nn.Module):
    def __init__(self, width: int, res_scale: float):
        super().__init__()
        self.body = nn.Sequential(conv3(width, width), nn.LeakyReLU(SLOPE, True), conv3(width, width))
        self.res_scale = res_scale  # EDSR's residual scaling: keeps deep stacks stable

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.body(x)


class SRResNet(nn.Module):
    def config(self) -> dict:
        return {"channels": self.channels, "scale": self.scale, "blocks": self.blocks, "width": self.width}

    def __init__(self, channels: int, scale: int, blocks: int, width: int):
        super().__init__()
        assert scale in (2, 4, 8), scale
        self.channels, self.scale, self.blocks, self.width = channels, scale, blocks, width
        self.head = conv3(channels, width)
        self.body = nn.Sequential(*[ResBlock(width, 0.2 if blocks > 8 else 1.0) for _ in range(blocks)],
                                  conv3(width, width))
        up: list[nn.Module] = []
        for _ in range(int(math.log2(scale))):
            conv = conv3(width, width * 4)
            icnr_(conv, 2)
            up += [conv, nn.PixelShuffle(2), nn.LeakyReLU(SLOPE, True)]
        self.up = nn.Sequential(*up)
        self.tail = nn.Sequential(conv3(width, width), nn.LeakyReLU(SLOPE, True), conv3(width, channels))
        nn.init.zeros_(self.tail[-1].weight)  # the untrained network is bicubic exactly
        nn.init.zeros_(self.tail[-1].bias)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        # lr: float [B, C, h, w] in [0, 1] -> [B, C, h * scale, w * scale] (unclamped)
        f = self.head(lr)
        return bicubic(lr, self.scale) + self.tail(self.up(f + self.body(f)))

    def receptive_radius(self) -> int:
        """LR pixels beyond which an input pixel cannot change an output pixel (the tiles' overlap floor)."""
        convs = 2 + 2 * self.blocks  # head, the blocks' pairs, body's end: at LR resolution
        ups = sum(1 / 2**i for i in range(int(math.log2(self.scale))))  # each at its own resolution
        radius = convs + ups + 2 / self.scale  # the two tail convs at HR resolution
        return max(math.ceil(radius), 2)  # bicubic's support is 2 LR pixels


class PatchDiscriminator(nn.Module):
    def config(self) -> dict:
        return {"channels": self.channels, "width": self.width}

    def __init__(self, channels: int, width: int, stages: int = 4):
        super().__init__()
        self.channels, self.width = channels, width
        layers: list[nn.Module] = [conv3(channels, width), nn.LeakyReLU(SLOPE, True)]
        c = width
        for i in range(stages):  # each halves the side: 96 -> 6, 28 -> 2
            c_out = width * 2 ** min(i + 1, 3)
            layers += [nn.Conv2d(c, c_out, 4, 2, 1), nn.LeakyReLU(SLOPE, True)]
            c = c_out
        layers.append(conv3(c, 1))
        self.net = apply_spectral_norm(nn.Sequential(*layers))

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        # x: float [B, C, H, W] in [0, 1] -> one raw output per image [B]; c: unused (no classes)
        return self.net(x * 2 - 1).mean(dim=(1, 2, 3))


def save_sr(path: str | Path, net: SRResNet, meta: dict) -> Path:
    return save_net(path, net, SR_FORMAT, meta)


def load_sr(path: str | Path, device: torch.device | str = "cpu") -> tuple[SRResNet, dict]:
    return load_net(path, SR_FORMAT, SRResNet, device, what="super-resolution model",
                    hint=" (the superres stages write them: models/superres/<set>-{psnr,gan}.pt)")
