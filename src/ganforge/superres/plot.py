"""The super-resolution pictures: the perception-distortion plane (Blau & Michaeli 2018) and the crops.

The plane is drawn by matplotlib (Agg, no display): distortion (PSNR on Y, higher is better) across,
perception (fid_ratio in the judge, lower is better, log scale) up, one labelled point per method.
"""

from __future__ import annotations

import io

import numpy as np

CROP_LR = 24  # the crops picture: this many LR pixels square from the centre of each image (96 HR at x4)
CROP_IMAGES = 6  # of the first this many test images


def perception_distortion(table: dict, methods: tuple[str, ...], title: str) -> bytes:
    """PNG bytes of the plane: table[method] has psnr_y and fid_ratio."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    for m in methods:
        x, y = table[m]["psnr_y"], table[m]["fid_ratio"]
        ax.scatter([x], [y], s=40)
        ax.annotate(m, (x, y), textcoords="offset points", xytext=(6, 4))
    ax.set_xlabel("PSNR on Y, dB (distortion: right is better)")
    ax.set_yscale("log")  # bicubic's ratio is often tens of times the models'
    ax.set_ylabel("fid_ratio in the judge, log scale (perception: down is better)")
    ax.set_title(f"perception-distortion, {title}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def crops_picture(lr: list[np.ndarray], ups: dict[str, list[np.ndarray]], hr: list[np.ndarray], scale: int,
                  methods: tuple[str, ...]) -> np.ndarray:
    """One row per test image (the first CROP_IMAGES): LR (nearest-enlarged) | each method | HR, of the
    central CROP_LR x CROP_LR LR pixels (the whole image when smaller)."""
    from ganforge.sampling import make_grid

    cells = []
    for i in range(min(CROP_IMAGES, len(hr))):
        _, h, w = lr[i].shape
        c = min(CROP_LR, h, w)
        top, left = (h - c) // 2, (w - c) // 2
        lo = lr[i][:, top : top + c, left : left + c]
        rows, cols = slice(top * scale, (top + c) * scale), slice(left * scale, (left + c) * scale)
        cells += [lo.repeat(scale, 1).repeat(scale, 2), *(ups[m][i][:, rows, cols] for m in methods),
                  hr[i][:, rows, cols]]
    return make_grid(np.stack(cells), nrow=len(methods) + 2)
