"""How LR images are made, and the bicubic baseline: the choice that decides every figure, so it is one
function each.

Downscaling: torch's bicubic interpolation with antialias=True, which is PIL's Image.resize(BICUBIC) in
float: the Keys cubic with a = -0.5 (MATLAB's imresize uses the same kernel), widened by the scale factor so
that it low-passes before subsampling, normalised at the borders. The HR side must be a multiple of the scale
(the photos are cut to multiples of 4 when downloaded), so every LR pixel covers exactly scale x scale HR
pixels. LR images are quantised to uint8, as a real LR image would be. Upscaling (the baseline and the
network's skip) uses the same kernel (antialiasing does not apply when enlarging). tests/test_superres.py
checks both against PIL.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """float [B, C, H, W] -> float [B, C, *size] by PIL's bicubic (antialiased when shrinking); unclamped."""
    return F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False)


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 [B, C, H, W] -> float in [0, 1] (the SR networks' range)."""
    return x.float() / 255


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float in [0, 1] (clamped) -> uint8, rounded to nearest."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def downscale(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """uint8 HR [B, C, H, W] (H, W multiples of scale) -> uint8 LR [B, C, H / scale, W / scale]."""
    H, W = hr.shape[-2:]
    assert H % scale == 0 and W % scale == 0, (H, W, scale)
    return to_uint8(resize(to_unit(hr), (H // scale, W // scale)))


def bicubic(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """float LR in [0, 1] [B, C, h, w] -> float [B, C, h * scale, w * scale], the baseline (unclamped)."""
    h, w = lr.shape[-2:]
    return resize(lr, (h * scale, w * scale))
