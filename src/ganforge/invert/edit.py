"""Editing at a projected latent: another class (conditional G), or a step along an attribute direction.

Attribute directions follow InterFaceGAN (Shen et al. 2020): measure an attribute on generated images, fit
a linear boundary in latent space, and move latents along its unit normal n. InterFaceGAN fits a linear
SVM to the top and bottom of the attribute's range; the Morpho-MNIST measures are continuous, so the
direction here is that of the least-squares fit a ~ w.z + b (the same hyperplane family, every sample
used). z ~ N(0, I) has unit std along any unit n, so a step of s moves z by s std of z along n.
"""

from __future__ import annotations

import numpy as np
import torch

from ganforge.sampling import to_uint8


@torch.no_grad()
def render(G: torch.nn.Module, z: np.ndarray, labels: np.ndarray | None, device, batch_size: int = 1000):
    """uint8 [N, C, H, W]: G(z, labels) (labels None or < 0: unconditional)."""
    out = []
    for lo in range(0, len(z), batch_size):
        zz = torch.as_tensor(z[lo : lo + batch_size]).float().to(device)
        if getattr(G, "num_classes", 0):
            y = torch.as_tensor(labels[lo : lo + batch_size]).long().to(device)
            out.append(to_uint8(G(zz, y)).cpu())
        else:
            out.append(to_uint8(G(zz)).cpu())
    return torch.cat(out).numpy()


def fit_direction(z: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, float]:
    """(unit direction float32 [z_dim], R^2 of the linear fit) of values [N] on z [N, z_dim]; samples whose
    value is nan (no ink) are left out."""
    ok = np.isfinite(values)
    A = np.concatenate([z[ok], np.ones((ok.sum(), 1))], 1).astype(np.float64)
    coef, *_ = np.linalg.lstsq(A, values[ok], rcond=None)
    w = coef[:-1]
    resid = values[ok] - A @ coef
    r2 = 1 - resid.var() / max(values[ok].var(), 1e-12)
    return (w / np.linalg.norm(w)).astype(np.float32), float(r2)


def along(z: np.ndarray, direction: np.ndarray, sigmas: list[float]) -> np.ndarray:
    """float32 [N, S, z_dim]: each latent moved by each step s along the unit direction ([z_dim], or one per
    latent [N, z_dim])."""
    steps = np.asarray(sigmas, dtype=np.float32)[None, :, None]  # [1, S, 1]
    d = direction if direction.ndim == 1 else direction[:, None, :]
    return (z[:, None, :] + steps * d).astype(np.float32)


def monotone(values: np.ndarray) -> np.ndarray:
    """bool [N]: whether each row [N, S] rises strictly from step to step."""
    return np.all(np.diff(values, axis=1) > 0, axis=1)
