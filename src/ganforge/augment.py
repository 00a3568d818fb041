"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training").

D sees every image, real AND fake, through the same random, differentiable transforms T, in both phases:
    D phase: D(T(x_real)), D(T(G(z)))        G phase: D(T(G(z))), gradients flowing through T into G
so D cannot memorise the few real images, and G is not pushed to produce augmented-looking images (T applies
to both sides, which is why augmenting only the reals fails). The transforms follow the official
DiffAugment-pytorch code (mit-han-lab/data-efficient-gans), with two changes:
  - every random draw comes from an explicit torch.Generator on the images' device: no host sync (the step
    stays a CUDA graph) and the loop checkpoints that generator, so a resumed run augments bit for bit alike;
  - a policy word that is not in AUGMENTATIONS is a ConfigError naming it, not a KeyError.
Real and fake batches are drawn independently from the same generator stream: the same distribution of
transforms, as in the official code; the same generator state gives the same transform.

Images are [B, C, H, W] in [-1, 1]. The policy is a list of AUGMENTATIONS keys (separated by , or +),
applied in its order; the empty string is the identity. The ratios are the paper's and part of each transform.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ganforge.errors import ConfigError

TRANSLATION_RATIO = 1 / 8  # shift by up to 1/8 of the image size in each direction (4 px at 32 px)
CUTOUT_RATIO = 1 / 2  # cut out a square of half the image size (16 x 16 at 32 px)


def _per_image_uniform(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """U[0, 1) per image: [B, 1, 1, 1], in x's dtype on x's device."""
    return torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device, generator=generator)


def brightness(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """x + U[-0.5, 0.5), one shift per image."""
    return x + (_per_image_uniform(x, generator) - 0.5)


def saturation(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Scale each pixel's deviation from its channel mean by U[0, 2).

    On 1-channel images the channel mean is the pixel itself, so this is the identity (x - x = 0 exactly);
    the factor is still drawn, so the generator advances the same way whatever the number of channels."""
    mean = x.mean(dim=1, keepdim=True)  # [B, 1, H, W]
    return (x - mean) * (_per_image_uniform(x, generator) * 2) + mean


def contrast(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Scale each image's deviation from its mean (over C, H, W) by U[0.5, 1.5)."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)  # [B, 1, 1, 1]
    return (x - mean) * (_per_image_uniform(x, generator) + 0.5) + mean


def _pixel_grid(b: int, h: int, w: int, device: torch.device):
    """Index tensors [B, h, w] of the batch, row and column of each output pixel (for advanced indexing)."""
    return torch.meshgrid(torch.arange(b, device=device), torch.arange(h, device=device),
                          torch.arange(w, device=device), indexing="ij")


def translation(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by integers in [-r, r] rows and columns, r = round(size / 8); what moves in is 0.

    As in the official code: pad one zero pixel on each side, gather output pixel (i, j) from padded pixel
    (i + dy + 1, j + dx + 1) clamped into the padding, so everything shifted in from outside reads a zero."""
    b, _, h, w = x.shape
    shift_h, shift_w = int(h * TRANSLATION_RATIO + 0.5), int(w * TRANSLATION_RATIO + 0.5)
    dy = torch.randint(-shift_h, shift_h + 1, (b, 1, 1), device=x.device, generator=generator)  # [B, 1, 1]
    dx = torch.randint(-shift_w, shift_w + 1, (b, 1, 1), device=x.device, generator=generator)  # [B, 1, 1]
    grid_b, grid_y, grid_x = _pixel_grid(b, h, w, x.device)  # [B, H, W] each
    grid_y = torch.clamp(grid_y + dy + 1, 0, h + 1)
    grid_x = torch.clamp(grid_x + dx + 1, 0, w + 1)
    x_pad = F.pad(x, [1, 1, 1, 1])  # [B, C, H + 2, W + 2]
    # gather in [B, H, W, C] (one index triple picks all channels of a pixel), then back to [B, C, H, W]
    return x_pad.permute(0, 2, 3, 1)[grid_b, grid_y, grid_x].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Zero a square of half the image size per image, centred anywhere on the image (clipped at the edges).

    The centre range and the clamping are the official code's, for odd and even sizes alike."""
    b, _, h, w = x.shape
    size_h, size_w = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
    # centres [B, 1, 1]
    off_y = torch.randint(0, h + (1 - size_h % 2), (b, 1, 1), device=x.device, generator=generator)
    off_x = torch.randint(0, w + (1 - size_w % 2), (b, 1, 1), device=x.device, generator=generator)
    grid_b, grid_y, grid_x = _pixel_grid(b, size_h, size_w, x.device)  # [B, size_h, size_w] each
    grid_y = torch.clamp(grid_y + off_y - size_h // 2, min=0, max=h - 1)
    grid_x = torch.clamp(grid_x + off_x - size_w // 2, min=0, max=w - 1)
    mask = torch.ones(b, h, w, dtype=x.dtype, device=x.device)  # [B, H, W]
    mask[grid_b, grid_y, grid_x] = 0
    return x * mask.unsqueeze(1)  # [B, C, H, W]: the same square in every channel


Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

AUGMENTATIONS: dict[str, tuple[Transform, ...]] = {
    "color": (brightness, saturation, contrast),
    "translation": (translation,),
    "cutout": (cutout,),
}


def parse_policy(policy: str) -> tuple[str, ...]:
    """'color,translation,cutout' (the paper's form) or 'color+translation+cutout' -> ('color',
    'translation', 'cutout'); '' -> () (the identity).

    '+' exists for command lines: `dvc exp run -S train.augment=a,b` reads the comma as a sweep of two
    values, and CI's override check allows no commas. Spaces around words are ignored; an unknown (or empty)
    word is a ConfigError naming it."""
    if policy.strip() == "":
        return ()
    words = tuple(word.strip() for word in re.split(r"[,+]", policy))
    for word in words:
        if word not in AUGMENTATIONS:
            raise ConfigError(f"unknown augmentation {word!r} in policy {policy!r} "
                              f"(allowed: {', '.join(AUGMENTATIONS)}, separated by , or +; '' for none)")
    return words


class DiffAugment:
    """T(x, generator): the policy's transforms in order; the policy string is checked once, here."""

    def __init__(self, policy: str):
        self.policy = parse_policy(policy)
        self.transforms = [t for word in self.policy for t in AUGMENTATIONS[word]]

    @property
    def identity(self) -> bool:
        """True for the empty policy: the loop may skip the call (it would return x itself anyway)."""
        return not self.transforms

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        # x: [B, C, H, W] -> [B, C, H, W], differentiable in x
        for transform in self.transforms:
            x = transform(x, generator)
        return x
