"""Mode counting: the metrics of the mode-collapse benchmarks (toy 2-D mixtures, data/toy.py).

The rule of VEEGAN (Srivastava et al. 2017) and PacGAN (Lin et al. 2018): a sample is *high quality* when
it lies within 3 standard deviations of some mode centre (then it belongs to that, the nearest, mode); a
mode is *covered* when at least `min_count` samples belong to it (evaluate.modes.min_count: the papers'
counts come from 2,500 samples; state the sample size beside any figure). The *mode KL* is
KL(q || uniform) = sum_k q_k log(K q_k) of the histogram q of the high-quality samples over the K modes:
0 for a perfectly balanced generator, log K for one that hits one mode only. With no high-quality sample
at all q is undefined; the KL is then reported as log K, its single-mode value.

For the toy data the evaluator stage writes the mode table (centres, std) as the judge, models/evaluator.pt,
instead of training a CNN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ganforge.errors import GanforgeError
from ganforge.io import atomic_torch_save, load_torch

MODES_FORMAT = "ganforge.modes/1"
SIGMAS = 3.0  # the published radius of a mode, in standard deviations


@dataclass(frozen=True)
class ModeTable:
    centres: np.ndarray  # float64 [K, 2]
    std: float

    @classmethod
    def of(cls, info: dict) -> ModeTable:
        """From a toy data set's info.json (centres, std)."""
        return cls(np.asarray(info["centres"], np.float64), float(info["std"]))

    def assign(self, points: np.ndarray) -> np.ndarray:
        """points [N, 2, ...] -> int64 [N]: the nearest mode of each high-quality point, -1 for the others."""
        xy = np.asarray(points, np.float64).reshape(-1, 2)  # [N, 2]
        d2 = ((xy[:, None, :] - self.centres[None]) ** 2).sum(-1)  # [N, K]
        nearest = d2.argmin(1)
        within = d2[np.arange(len(xy)), nearest] <= (SIGMAS * self.std) ** 2
        return np.where(within, nearest, -1).astype(np.int64)

    def save(self, path: str | Path) -> Path:
        return atomic_torch_save(path, {"format": MODES_FORMAT, "centres": torch.from_numpy(self.centres),
                                        "std": self.std, "sigmas": SIGMAS})

    @classmethod
    def load(cls, path: str | Path) -> ModeTable:
        blob = load_torch(path)
        if not isinstance(blob, dict) or blob.get("format") != MODES_FORMAT:
            raise GanforgeError(f"{path} is not a mode table ({MODES_FORMAT}): rerun the evaluator stage for "
                                "this toy data set (dvc repro evaluator)")
        return cls(blob["centres"].double().numpy(), float(blob["std"]))


def mode_histogram(modes: np.ndarray, n_modes: int) -> np.ndarray:
    """int64 [K]: how many samples belong to each mode (-1 = none: not counted)."""
    return np.bincount(modes[modes >= 0], minlength=n_modes)


def kl_from_uniform(counts: np.ndarray) -> float:
    """KL(q || uniform) of the histogram `counts` [K] (0 log 0 = 0); log K when it is empty."""
    total = counts.sum()
    if total == 0:
        return math.log(len(counts))
    q = counts[counts > 0] / total
    return float((q * np.log(q * len(counts))).sum())


def mode_metrics(modes: np.ndarray, n_modes: int, min_count: int) -> dict:
    """The mode metrics of samples whose modes are `modes` [N] (-1 = not high quality)."""
    counts = mode_histogram(modes, n_modes)
    return {"modes_covered": int((counts >= min_count).sum()), "modes_total": n_modes,
            "high_quality": float((modes >= 0).mean()) if len(modes) else 0.0,
            "mode_kl": kl_from_uniform(counts), "mode_min_count": min_count, "n": len(modes)}


def mode_judge(info: dict, x_train: np.ndarray, x_test: np.ndarray, floor_n: int, min_count: int
               ) -> tuple[ModeTable, dict, np.ndarray]:
    """The evaluator stage's work for a toy data set: (the mode table, metrics.json, the real test split's
    mode histogram as shares [K]). The floor is the first floor_n real train points judged like samples:
    what a perfect generator would score with that many samples."""
    table = ModeTable.of(info)
    k = len(table.centres)
    if floor_n > len(x_train):
        raise GanforgeError(f"evaluate.n is {floor_n} but the train split holds only {len(x_train)} points")
    test_modes = table.assign(x_test)
    metrics = {"judge": "modes", "test_n": len(x_test), "test": mode_metrics(test_modes, k, min_count),
               "floor": mode_metrics(table.assign(x_train[:floor_n]), k, min_count)}
    counts = mode_histogram(test_modes, k)
    return table, metrics, counts / max(counts.sum(), 1)


def mode_rows(modes: np.ndarray, n_modes: int, reference: str | Path, floor: dict
              ) -> list[tuple[int, float, float]]:
    """The evaluate stage's class_hist.tsv rows (mode, real share, generated share) once each sample's mode
    is known (`modes` [N], -1 = none), after checking the real-data floor was judged on as many samples (the
    counts depend on it). reference: the evaluator stage's reference.npz (the real test split's mode shares);
    floor: its real-data floor."""
    if floor["n"] != len(modes):
        raise GanforgeError(f"{len(modes)} samples, but the real-data floor was judged on {floor['n']}: "
                            "rerun the stale stage (dvc repro)")
    try:
        with np.load(reference, allow_pickle=False) as z:
            real = z["mode_hist"]
    except (OSError, ValueError, KeyError) as e:
        raise GanforgeError(f"{reference} holds no mode histogram ({e}): rerun the evaluator stage (dvc "
                            "repro evaluator)") from None
    counts = mode_histogram(modes, n_modes)
    generated = counts / max(counts.sum(), 1)
    return [(i, float(real[i]), float(generated[i])) for i in range(n_modes)]


def describe(m: dict) -> str:
    """One line of mode metrics, as the stages print them."""
    if "clear_samples" in m:  # Stacked MNIST: metrics/stacked.py
        hq = f", {m['clear_samples']:.1%} with all three digits read clearly"
    elif "high_quality" in m:
        hq = f", {m['high_quality']:.1%} high quality (within 3 std)"
    else:
        hq = ""
    parts = (f" = digits r {m['digit_kl_r']:.4f} + g {m['digit_kl_g']:.4f} + b {m['digit_kl_b']:.4f} "
             f"+ channel dependence {m['channel_dependence']:.4f}"
             if "channel_dependence" in m else "")
    return (f"{m['modes_covered']}/{m['modes_total']} modes covered (>= {m['mode_min_count']} of {m['n']} "
            f"samples){hq}, mode KL {m['mode_kl']:.4f}{parts}")
