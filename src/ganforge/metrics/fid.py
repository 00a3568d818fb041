"""Fréchet distance between two feature sets, each summarised by its mean and covariance (float64).

FID = |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^1/2)   (Heusel et al. 2017)
tr((S_a S_b)^1/2) is computed as tr((S_a^1/2 S_b S_a^1/2)^1/2): the inner matrix is symmetric PSD, so two
eigh calls give it without scipy.linalg.sqrtm's complex detours, and FID(X, X) comes out ~0, not ~1e-6.
"""

from __future__ import annotations

import numpy as np


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """features [N, F] -> (mean [F], unbiased covariance [F, F]), both float64."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need features [N >= 2, F], got shape {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)  # symmetrise away float noise
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def fid_from_stats(mu_a, sigma_a, mu_b, sigma_b) -> float:
    mu_a, mu_b = np.asarray(mu_a, np.float64), np.asarray(mu_b, np.float64)
    sigma_a, sigma_b = np.asarray(sigma_a, np.float64), np.asarray(sigma_b, np.float64)
    root_a = _psd_sqrt(sigma_a)
    inner = root_a @ sigma_b @ root_a  # [F, F], symmetric PSD
    eig = np.linalg.eigvalsh((inner + inner.T) / 2)
    tr_covmean = np.sqrt(np.clip(eig, 0, None)).sum()
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2 * tr_covmean)


def fid_from_features(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """The same number as fid_from_stats on the two sets' statistics, computed the cheaper exact way.

    With fewer samples than features (e.g. a few hundred images in Inception's 2048 dimensions), write
    S = X^T X for centred X = (f - mean) / sqrt(n - 1): then tr((S_a S_b)^1/2) is the sum of the singular
    values of X_a X_b^T, an [n_a, n_b] problem instead of two [F, F] eigendecompositions.
    """
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    if min(len(a), len(b)) >= a.shape[1]:
        return fid_from_stats(*feature_stats(a), *feature_stats(b))
    xa = (a - a.mean(axis=0)) / np.sqrt(len(a) - 1)  # [n_a, F]
    xb = (b - b.mean(axis=0)) / np.sqrt(len(b) - 1)  # [n_b, F]
    tr_covmean = np.linalg.svd(xa @ xb.T, compute_uv=False).sum()
    diff = a.mean(axis=0) - b.mean(axis=0)
    return float(diff @ diff + np.sum(xa * xa) + np.sum(xb * xb) - 2 * tr_covmean)
