"""The metric registry and the two jobs built on it: the evaluator stage's reference + real-data floor,
and the evaluate stage's measurement of generated images. Both compare a set against the same cached
reference (the real test split) with the same settings, so a generated number and its floor are
directly comparable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ganforge.errors import ConfigError, GanforgeError
from ganforge.io import atomic_save_npz
from ganforge.metrics.classes import class_histogram, class_metrics
from ganforge.metrics.conditional import conditional_metrics
from ganforge.metrics.evaluator import Evaluator, FeatureSet, accuracy, extract, train_evaluator
from ganforge.metrics.fid import feature_stats, fid_from_stats
from ganforge.metrics.kid import kid
from ganforge.metrics.prdc import prdc


@dataclass(frozen=True)
class Reference(FeatureSet):
    """The real test split in feature space, computed once by the evaluator stage (reference.npz)."""

    mu: np.ndarray          # float64 [F]
    sigma: np.ndarray       # float64 [F, F]
    class_hist: np.ndarray  # float64 [K], share of each predicted class

    @classmethod
    def of(cls, fs: FeatureSet) -> Reference:
        mu, sigma = feature_stats(fs.features)
        return cls(fs.features, fs.probs, mu, sigma, class_histogram(fs.probs))

    def save(self, path: str | Path) -> Path:
        return atomic_save_npz(path, features=self.features, probs=self.probs, mu=self.mu, sigma=self.sigma,
                               class_hist=self.class_hist)

    @classmethod
    def load(cls, path: str | Path) -> Reference:
        try:
            with np.load(path, allow_pickle=False) as z:
                return cls(*(z[k] for k in ("features", "probs", "mu", "sigma", "class_hist")))
        except FileNotFoundError:
            raise GanforgeError(f"{path} not found: run the evaluator stage (dvc repro evaluator)") from None
        except (OSError, ValueError, KeyError) as e:
            raise GanforgeError(f"{path} is not an evaluator reference file ({e}); rerun the evaluator "
                                "stage") from None


@dataclass(frozen=True)
class Settings:
    """How the metrics are computed: the evaluate section of params.yaml plus the seed of KID's subsets."""

    kid_subsets: int
    kid_subset_size: int
    pr_k: int
    dc_k: int
    seed: int
    device: torch.device | str

    @classmethod
    def of(cls, evaluate, seed: int, device: torch.device | str) -> Settings:
        """From the evaluate section of params.yaml (config.Evaluate), base.seed and a resolved device."""
        return cls(kid_subsets=evaluate.kid_subsets, kid_subset_size=evaluate.kid_subset_size,
                   pr_k=evaluate.pr_k, dc_k=evaluate.dc_k, seed=seed, device=device)


def float64_device(device: torch.device | str) -> torch.device:
    """Where the float64 kernels and distances run: the given device, except MPS (no float64 there)."""
    device = torch.device(device)
    return torch.device("cpu") if device.type == "mps" else device


# Each metric: (reference, generated set, settings) -> {name: number}. Add one here and it appears in
# metrics.json, the floor, MLflow and the report.
Metric = Callable[[Reference, FeatureSet, Settings], dict]
METRICS: dict[str, Metric] = {
    "fid": lambda ref, fs, s: {"fid": fid_from_stats(ref.mu, ref.sigma, *feature_stats(fs.features))},
    "kid": lambda ref, fs, s: kid(ref.features, fs.features, subsets=s.kid_subsets, seed=s.seed,
                                  subset_size=s.kid_subset_size, device=float64_device(s.device)),
    "prdc": lambda ref, fs, s: prdc(ref.features, fs.features, pr_k=s.pr_k, dc_k=s.dc_k,
                                    device=float64_device(s.device)),
    # the class metrics need a classifier judge: a label-free one has no classes (class_hist is empty)
    "classes": lambda ref, fs, s: class_metrics(ref.class_hist, fs.probs) if ref.class_hist.size else {},
}


def compute_metrics(ref: Reference, fs: FeatureSet, s: Settings, log: Callable[[str], None] | None = None,
                    names: tuple[str, ...] | None = None) -> dict:
    """The registered metrics `names` (default: all) of `fs` against `ref`; `log` hears one line per metric
    with its time."""
    names = tuple(METRICS) if names is None else names
    n_min = min(len(ref.features), len(fs.features))
    if "kid" in names and s.kid_subset_size > n_min:  # up front: fail before the other metrics' minute
        raise ConfigError(f"evaluate.kid_subset_size ({s.kid_subset_size}) is larger than the sets it draws "
                          f"from ({len(ref.features)} real, {len(fs.features)} compared): lower it")
    out: dict = {"n": len(fs.features)}
    for name in names:
        metric = METRICS[name]
        t0 = time.perf_counter()
        out.update(metric(ref, fs, s))
        if log:
            log(f"{name}: {time.perf_counter() - t0:.1f} s")
    return out


@dataclass(frozen=True)
class EvaluatorResult:
    net: Evaluator
    reference: Reference
    metrics: dict  # accuracy, test_n, floor: {metric: value}


def build_evaluator(
    x_train: np.ndarray, y_train: np.ndarray,  # uint8 [N, C, H, W], int64 [N]: the real training split
    x_test: np.ndarray, y_test: np.ndarray,    # the real test split: accuracy and the reference set
    *,
    kind: str,             # the judge: classifier | self-supervised (ganforge.judges, resolved)
    cfg,                   # the evaluator section of params.yaml (config.Evaluator)
    floor_n: int,          # real train images measured against the reference: the real-data floor
    settings: Settings,    # the metric settings the evaluate stage uses, so the floor is comparable
    device: torch.device,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> EvaluatorResult:
    """Train the judge, cache the reference features of the test split, measure the real-data floor.

    metrics: kind, accuracy (the classifier's on the test split; None for the label-free judge), test_n,
    floor."""
    if floor_n > len(x_train):
        raise ConfigError(f"evaluate.n ({floor_n}) is larger than the training split ({len(x_train)} "
                          "images): lower evaluate.n (the real-data floor compares that many train images)")
    if kind == "classifier":
        num_classes = int(max(y_train.max(), y_test.max())) + 1
        if num_classes < 2:
            raise ConfigError("evaluator.kind is classifier, but this dataset has one class (a flat image "
                              "folder): set evaluator.kind to auto or self-supervised, or arrange the images "
                              "in one sub-folder per class")
        net = train_evaluator(x_train, y_train, num_classes=num_classes, feature_dim=cfg.feature_dim,
                              epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, seed=settings.seed,
                              device=device, progress=progress)
    else:
        from ganforge.metrics.ssl import train_ssl

        net = train_ssl(Evaluator(x_train.shape[1], x_train.shape[2], 0, cfg.feature_dim, kind),
                        x_train, cfg.self_supervised, batch_size=cfg.batch_size, lr=cfg.lr,
                        seed=settings.seed, device=device, progress=progress)
    test = extract(net, x_test, device)
    ref = Reference.of(test)
    # the floor subset: a seeded choice, its own stream of base.seed (not the batch order's)
    pick = np.random.default_rng([settings.seed, 1]).choice(len(x_train), floor_n, replace=False)
    floor = compute_metrics(ref, extract(net, x_train[np.sort(pick)], device), settings, log)
    return EvaluatorResult(net, ref, {"kind": kind, "accuracy": accuracy(test, y_test) if kind == "classifier"
                                      else None, "test_n": len(x_test), "floor": floor})


def load_evaluator_metrics(path: str | Path) -> dict:
    """results/evaluator/metrics.json: {'accuracy', 'test_n', 'floor': {metric: value}}."""
    import json

    try:
        out = json.loads(Path(path).read_text())
        if not isinstance(out.get("floor"), dict) or "fid" not in out["floor"]:
            raise KeyError("floor.fid")
        return out
    except (OSError, ValueError, KeyError) as e:
        raise GanforgeError(f"cannot read the real-data floor from {path} ({type(e).__name__}: {e}); rerun "
                            "the evaluator stage (dvc repro evaluator)") from None


def evaluate_images(images: np.ndarray, net: Evaluator, ref: Reference, floor: dict, s: Settings,
                    log: Callable[[str], None] | None = None, labels: np.ndarray | None = None,
                    real_labels: np.ndarray | None = None, fs: FeatureSet | None = None,
                    ) -> tuple[dict, list[tuple[int, float, float]], list[dict]]:
    """Generated uint8 images [M, C, H, W] -> (metrics with fid_ratio, class histogram rows, per-class rows).

    floor: the evaluator's real-data floor (its metrics.json 'floor'); fid_ratio = fid / floor fid.
    Rows: (class, real share, generated share) for results/evaluate/class_hist.tsv.
    labels: the classes a conditional generator was asked for (int [M]); with real_labels (the test split's
    labels, the reference's order) adds conditional accuracy and intra-class FID (metrics/conditional.py)
    and returns their per-class rows; else the per-class rows are empty.
    fs: the images' features, when the caller has them already.
    """
    fs = fs if fs is not None else extract(net, images, torch.device(s.device))
    out = compute_metrics(ref, fs, s, log)
    per_class: list[dict] = []
    if labels is not None:
        t0 = time.perf_counter()
        cond, per_class = conditional_metrics(fs, labels, ref, real_labels)
        out.update(cond)
        if log:
            log(f"conditional: {time.perf_counter() - t0:.1f} s")
    floor_fid = float(floor["fid"])
    out["fid_ratio"] = out["fid"] / floor_fid if floor_fid > 0 else float("inf")
    gen = class_histogram(fs.probs)
    rows = [(k, float(ref.class_hist[k]), float(gen[k])) for k in range(len(gen))]
    return out, rows, per_class


def in_training_evaluation(net: Evaluator, ref: Reference, s: Settings, seed: int
                           ) -> Callable[[torch.nn.Module, int], dict]:
    """evaluate(G, n) for the training loop: FID, precision/recall and density/coverage of n images from G
    (image i from seed + i, as the sample stage draws them) against the reference, in the judge's features.

    The same registry functions as the evaluate stage, so a snapshot's in-training FID is the evaluate
    stage's FID of the same images; KID (100 subsets) and the class metrics are left to the evaluate stage.
    """
    from ganforge.sampling import generate

    def evaluate(G: torch.nn.Module, n: int) -> dict:
        images = generate(G, n, seed=seed, batch_size=500, device=s.device)  # uint8 [n, C, H, W]
        return compute_metrics(ref, extract(net, images, torch.device(s.device)), s, names=("fid", "prdc"))

    return evaluate
