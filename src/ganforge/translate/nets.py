"""The translation networks, as junyanz/pytorch-CycleGAN-and-pix2pix's models/networks.py has them.

- ResnetGenerator (CycleGAN): 7x7 conv, `downs` stride-2 convs, `blocks` residual blocks (reflection
  padding), as many transposed convs up, 7x7 conv, tanh.
- UnetGenerator (pix2pix): `downs` stride-2 4x4 convs down to 1 x 1 at the image size 2^downs, each mirrored
  by a transposed conv whose input is the concatenation of the layer below and the skip from the same depth
  (the skips carry the detail of the input to the output); dropout in the innermost up layers. Images whose
  side is not a multiple of 2^downs are reflection-padded up to one, and the output is cropped back.
- PatchDiscriminator (both): `layers` stride-2 4x4 convs, then two stride-1 ones; each output judges one
  receptive_field() x receptive_field() patch of the input (70 x 70 with 3 layers, at any image size).
- Translators: both directions' generators as one module, and its model file (save/load_translators).
Instance normalisation everywhere (junyanz's CycleGAN default; pix2pix's batch norm at its batch size of 1
is the same thing in training), so every image is processed on its own.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.nets.store import load_net, save_net

FORMAT = "ganforge-translators-1"


def norm(c: int) -> nn.Module:
    return nn.InstanceNorm2d(c, affine=False, track_running_stats=False)


class ResnetBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), norm(c), nn.ReLU(True),
                                  nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), norm(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    def config(self) -> dict:
        return {"channels_in": self.channels_in, "channels_out": self.channels_out, "width": self.width,
                "blocks": self.blocks, "downs": self.downs}

    def __init__(self, channels_in: int, channels_out: int, width: int, blocks: int, downs: int = 2):
        super().__init__()
        self.channels_in, self.channels_out, self.width = channels_in, channels_out, width
        self.blocks, self.downs = blocks, downs
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(channels_in, width, 7), norm(width),
                                   nn.ReLU(True)]
        c = width
        for _ in range(downs):
            layers += [nn.Conv2d(c, 2 * c, 3, 2, 1), norm(2 * c), nn.ReLU(True)]
            c *= 2
        layers += [ResnetBlock(c) for _ in range(blocks)]
        for _ in range(downs):
            layers += [nn.ConvTranspose2d(c, c // 2, 3, 2, 1, output_padding=1), norm(c // 2),
                       nn.ReLU(True)]
            c //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(c, channels_out, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.multiple = 2**downs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, C_in, H, W] in [-1, 1] -> [B, C_out, H, W]
        return _padded(self.net, x, self.multiple)


def _padded(net: nn.Module, x: torch.Tensor, multiple: int) -> torch.Tensor:
    """net(x) on x padded (bottom, right; reflecting) to sides that are multiples of `multiple`; cropped."""
    H, W = x.shape[-2:]
    ph, pw = -H % multiple, -W % multiple
    if not (ph or pw):
        return net(x)
    mode = "reflect" if max(ph, pw) < min(H, W) else "replicate"  # reflect needs less padding than image
    return net(F.pad(x, (0, pw, 0, ph), mode=mode))[..., :H, :W]


class _UnetLevel(nn.Module):
    """One depth of the U-Net: down, the levels below, up; the output is [skip (its input), up(...)]
    except at the outermost level, which returns the image."""

    def __init__(self, c_outer: int, c_inner: int, inner: nn.Module | None, *, outermost: bool = False,
                 c_in: int | None = None, c_out: int | None = None, dropout: bool = False):
        super().__init__()
        c_in = c_outer if c_in is None else c_in
        down = [nn.Conv2d(c_in, c_inner, 4, 2, 1)]
        up_in = c_inner if inner is None else 2 * c_inner
        if outermost:
            self.model = nn.Sequential(*down, inner, nn.ReLU(True), nn.ConvTranspose2d(up_in, c_out, 4, 2, 1),
                                       nn.Tanh())
        elif inner is None:  # innermost: no norm at the 1 x 1 bottleneck
            self.model = nn.Sequential(nn.LeakyReLU(0.2, True), *down, nn.ReLU(True),
                                       nn.ConvTranspose2d(up_in, c_outer, 4, 2, 1), norm(c_outer))
        else:
            self.model = nn.Sequential(nn.LeakyReLU(0.2, True), *down, norm(c_inner), inner, nn.ReLU(True),
                                       nn.ConvTranspose2d(up_in, c_outer, 4, 2, 1), norm(c_outer),
                                       *([nn.Dropout(0.5)] if dropout else []))
        self.outermost = outermost

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    def config(self) -> dict:
        return {"channels_in": self.channels_in, "channels_out": self.channels_out, "width": self.width,
                "downs": self.downs, "dropout": self.dropout}

    def __init__(self, channels_in: int, channels_out: int, width: int, downs: int, dropout: bool = True):
        super().__init__()
        assert downs >= 2, downs
        self.channels_in, self.channels_out, self.width = channels_in, channels_out, width
        self.downs, self.dropout = downs, dropout
        widths = [width * min(2**i, 8) for i in range(downs)]  # channels after each down step
        level: nn.Module | None = None
        for i in reversed(range(1, downs)):  # innermost first; dropout in the 8x-wide levels around it
            level = _UnetLevel(widths[i - 1], widths[i], level,
                               dropout=dropout and level is not None and widths[i - 1] == width * 8)
        self.net = _UnetLevel(channels_out, widths[0], level, outermost=True, c_in=channels_in,
                              c_out=channels_out)
        self.multiple = 2**downs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _padded(self.net, x, self.multiple)


class PatchDiscriminator(nn.Module):
    def config(self) -> dict:
        return {"channels": self.channels, "width": self.width, "layers": self.layers}

    def __init__(self, channels: int, width: int, layers: int = 3):
        super().__init__()
        self.channels, self.width, self.layers = channels, width, layers
        seq: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        c = width
        for n in range(1, layers):
            c_next = width * min(2**n, 8)
            seq += [nn.Conv2d(c, c_next, 4, 2, 1), norm(c_next), nn.LeakyReLU(0.2, True)]
            c = c_next
        c_next = width * min(2**layers, 8)
        seq += [nn.Conv2d(c, c_next, 4, 1, 1), norm(c_next), nn.LeakyReLU(0.2, True),
                nn.Conv2d(c_next, 1, 4, 1, 1)]
        self.net = nn.Sequential(*seq)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        # x: [B, C, H, W] in [-1, 1] -> one score per patch, flattened: [B * h * w] (the losses' [N] outputs;
        # each patch counts as one judged item, so a mean over them is junyanz's mean over the score map)
        return self.net(x).flatten()

    def score_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # [B, 1, h, w]

    def receptive_field(self) -> int:
        """Input pixels per side that one output score sees: r = (r - 1) * stride + kernel, from the top."""
        r = 1
        for m in reversed([m for m in self.net if isinstance(m, nn.Conv2d)]):
            r = (r - 1) * m.stride[0] + m.kernel_size[0]
        return r


class ImagePool(nn.Module):
    """Shrivastava et al. 2017's history of fakes, as junyanz's ImagePool: until full, each fake is stored
    and returned; then each is, with probability 1/2, swapped for a random stored one (which is returned),
    else returned as is. Its images and fill count are buffers (checkpointed with the nets), and every draw
    comes from the given generator, on the device, without host reads."""

    def __init__(self, size: int, shape: tuple[int, int, int]):
        super().__init__()
        self.size = size
        self.register_buffer("images", torch.zeros(max(size, 1), *shape))
        self.register_buffer("count", torch.zeros((), dtype=torch.int64))

    @torch.no_grad()
    def forward(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if self.size == 0:
            return x.detach()
        out = []
        for xi in x.detach():
            full = self.count >= self.size
            u = torch.rand((), device=x.device, generator=gen)
            j = torch.randint(self.size, (), device=x.device, generator=gen)
            slot = torch.where(full, j, self.count.clamp(max=self.size - 1))
            old = self.images[slot]
            swap = full & (u < 0.5)
            out.append(torch.where(swap, old, xi))
            self.images[slot] = torch.where(swap | ~full, xi, old)
            self.count += (~full).long()
        return torch.stack(out)


class Translators(nn.Module):
    """The generators of both directions as one module (the engine's output: EMA, pictures and the model
    file keep them together): ab (A -> B) and, for CycleGAN, ba (B -> A); pix2pix has ab only."""

    KINDS = {"cyclegan": ResnetGenerator, "pix2pix": UnetGenerator}

    def config(self) -> dict:
        ba = None if self.ba is None else self.ba.config()
        return {"model": self.model, "ab": self.ab.config(), "ba": ba}

    def __init__(self, model: str, ab: dict, ba: dict | None):
        super().__init__()
        self.model = model
        self.ab = self.KINDS[model](**ab)
        self.ba = None if ba is None else self.KINDS[model](**ba)

    @property
    def directions(self) -> tuple[str, ...]:
        return ("ab",) if self.ba is None else ("ab", "ba")

    def channels(self, direction: str) -> tuple[int, int]:
        """(channels in, channels out) of one direction."""
        net = self.ab if direction == "ab" else self.ba
        return net.channels_in, net.channels_out

    def forward(self, x: torch.Tensor, direction: str = "ab") -> torch.Tensor:
        # x: [B, C, H, W] in [-1, 1] of the source domain -> the target domain
        net = self.ab if direction == "ab" else self.ba
        assert net is not None, f"this model has no {direction} generator"
        return net(x)


def save_translators(path: str | Path, G: Translators, meta: dict) -> Path:
    return save_net(path, G, FORMAT, meta)


def load_translators(path: str | Path, device: torch.device | str = "cpu") -> tuple[Translators, dict]:
    return load_net(path, FORMAT, Translators, device, what="translation model",
                    hint=" (the translate pipeline's train stage writes them: models/translate/<model>.pt)")
