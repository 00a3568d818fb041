"""Kernel distance (KID, Bińkowski et al. 2018): unbiased MMD^2 with the cubic polynomial kernel
k(x, y) = (x.y / F + 1)^3, averaged over random subsets; reported as mean and std over the subsets.

Subsets are drawn exactly as torch-fidelity draws them (np.random.RandomState(seed), real subset first),
so the numbers can be checked against that library. Kernels are computed in float64 on `device`.
"""

from __future__ import annotations

import numpy as np
import torch

from ganforge.errors import ConfigError


def _mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    # x, y: [m, F] float64 on one device
    m, f = x.shape
    k_xx = (x @ x.T / f + 1) ** 3  # [m, m]
    k_yy = (y @ y.T / f + 1) ** 3
    k_xy = (x @ y.T / f + 1) ** 3
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return float(within - 2 * k_xy.sum() / (m * m))  # note: a host sync per subset (100 of them)


def kid(real: np.ndarray, fake: np.ndarray, *, subsets: int, subset_size: int, seed: int,
        device: torch.device | str) -> dict:
    """real [N, F], fake [M, F] -> {'kid_mean', 'kid_std'} over `subsets` subsets of `subset_size` each."""
    n, m = len(real), len(fake)
    if subset_size > min(n, m):
        raise ConfigError(f"evaluate.kid_subset_size ({subset_size}) is larger than the samples it draws "
                          f"from ({n} real, {m} generated): lower it or use more samples")
    x_all = torch.as_tensor(np.asarray(real), dtype=torch.float64, device=device)
    y_all = torch.as_tensor(np.asarray(fake), dtype=torch.float64, device=device)
    rng = np.random.RandomState(seed)
    mmds = np.empty(subsets)
    for i in range(subsets):
        ix = torch.as_tensor(rng.choice(n, subset_size, replace=False), device=device)
        iy = torch.as_tensor(rng.choice(m, subset_size, replace=False), device=device)
        mmds[i] = _mmd2_unbiased(x_all[ix], y_all[iy])
    return {"kid_mean": float(mmds.mean()), "kid_std": float(mmds.std())}
