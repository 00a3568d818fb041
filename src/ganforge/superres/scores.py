"""The paired scores, in BasicSR's conventions (so figures compare with published tables):

  psnr_y, ssim_y  on the luma Y of ITU-R BT.601 (scikit-image's rgb2ycbcr: Y = 16 + 65.481 R + 128.553 G
                  + 24.966 B for R, G, B in [0, 1], so Y spans 16..235), in float64, data range 255, with
                  `scale` pixels cropped from every border (the pixels an x4 model cannot know);
                  SSIM: Wang et al. 2004's Gaussian window (sigma 1.5, 11 x 11), population covariances,
                  the mean over the window positions that fit (skimage structural_similarity)
  psnr_rgb        on the three channels together, the same border crop
Computed by scikit-image; tests/test_superres.py checks them against torchmetrics. PSNR of identical
images is infinite: reported as PSNR_CAP.
"""

from __future__ import annotations

import numpy as np
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ganforge.errors import GanforgeError

PSNR_CAP = 100.0  # dB, for identical images


def y_channel(img: np.ndarray) -> np.ndarray:
    """uint8 [3, H, W] RGB (or [1, H, W] grey, taken as R = G = B) -> float64 Y [H, W] in 16..235."""
    rgb = np.repeat(img, 3, axis=0) if img.shape[0] == 1 else img
    return rgb2ycbcr(rgb.transpose(1, 2, 0))[..., 0]


def _crop(a: np.ndarray, border: int) -> np.ndarray:
    return a[..., border : a.shape[-2] - border, border : a.shape[-1] - border] if border else a


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return PSNR_CAP if np.array_equal(a, b) else min(
        float(peak_signal_noise_ratio(a, b, data_range=255)), PSNR_CAP)


def paired_scores(sr: np.ndarray, hr: np.ndarray, border: int) -> dict[str, float]:
    """uint8 [C, H, W] SR (or bicubic) image against its HR original -> {psnr_y, ssim_y, psnr_rgb}."""
    if sr.shape != hr.shape:
        raise GanforgeError(f"an upscaled image of shape {list(sr.shape)} cannot be scored against an HR "
                            f"image of shape {list(hr.shape)}: the LR image must be the HR one downscaled "
                            "by the model's scale")
    if min(hr.shape[-2:]) <= 2 * border + 7:
        raise GanforgeError(f"an image of {list(hr.shape[-2:])} px is too small to score with a {border}-px "
                            "border crop and SSIM's 7-px window")
    ys, yh = _crop(y_channel(sr), border), _crop(y_channel(hr), border)
    ssim = structural_similarity(ys, yh, data_range=255, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False)
    return {"psnr_y": _psnr(ys, yh), "ssim_y": float(ssim),
            "psnr_rgb": _psnr(_crop(sr, border).astype(np.float64), _crop(hr, border).astype(np.float64))}
