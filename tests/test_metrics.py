"""The metric functions against reference implementations and known values, on random data."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from ganforge.errors import ConfigError, GanforgeError
from ganforge.metrics import METRICS, Reference, Settings, compute_metrics
from ganforge.metrics.classes import class_metrics, classifier_score
from ganforge.metrics.evaluator import FeatureSet
from ganforge.metrics.fid import feature_stats, fid_from_features, fid_from_stats
from ganforge.metrics.kid import kid
from ganforge.metrics.prdc import prdc


def gaussians(n: int, dim: int, seed: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(dim, dim)) / np.sqrt(dim)  # correlated features, like real ones
    return rng.normal(size=(n, dim)) @ mix + shift


def scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    """pytorch-fid's formula in float64 with scipy.linalg.sqrtm: the usual reference."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_fid_matches_scipy_reference_and_is_zero_against_itself():
    a, b = gaussians(3000, 64, 0), gaussians(2500, 64, 1, shift=0.3)
    ours = fid_from_stats(*feature_stats(a), *feature_stats(b))
    assert ours == pytest.approx(scipy_fid(a, b), rel=1e-6)
    self_fid = fid_from_stats(*feature_stats(a), *feature_stats(a))
    assert abs(self_fid) < 1e-9 * np.trace(np.cov(a, rowvar=False))


@pytest.mark.parametrize("n_a,n_b", [(40, 30), (300, 200)])  # fewer / more samples than features
def test_fid_from_features_takes_either_route_to_the_same_value(n_a, n_b):
    a, b = gaussians(n_a, 64, 16), gaussians(n_b, 64, 17, shift=0.2)
    assert fid_from_features(a, b) == pytest.approx(scipy_fid(a, b), rel=1e-6)
    # rank-deficient covariances (n < F): the [F, F] route sums sqrt of round-off eigenvalues, ~1e-8 off
    assert fid_from_features(a, b) == pytest.approx(fid_from_stats(*feature_stats(a), *feature_stats(b)),
                                                    rel=1e-6)


def test_kid_equals_torch_fidelity():
    from torch_fidelity.metric_kid import kid_features_to_metric

    a, b = gaussians(600, 32, 2), gaussians(500, 32, 3, shift=0.2)
    ours = kid(a, b, subsets=20, subset_size=200, seed=7, device="cpu")
    ref = kid_features_to_metric(torch.from_numpy(a), torch.from_numpy(b), kid_subsets=20,
                                 kid_subset_size=200, rng_seed=7, verbose=False)
    assert ours["kid_mean"] == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-9)
    assert ours["kid_std"] == pytest.approx(ref["kernel_inception_distance_std"], rel=1e-9)


def test_kid_zero_for_one_distribution_positive_for_shifted():
    base = gaussians(4000, 32, 4)  # one distribution, two disjoint samples of it
    a, b = base[:2000], base[2000:]
    same = kid(a, b, subsets=50, subset_size=500, seed=0, device="cpu")
    shifted = kid(a, b + 0.5, subsets=50, subset_size=500, seed=0, device="cpu")
    assert abs(same["kid_mean"]) <= 2 * same["kid_std"]
    assert shifted["kid_mean"] > 10 * shifted["kid_std"] > 0


def test_kid_refuses_subsets_larger_than_the_sets():
    with pytest.raises(ConfigError, match="kid_subset_size"):
        kid(np.zeros((50, 4)), np.zeros((80, 4)), subsets=2, subset_size=60, seed=0, device="cpu")


@pytest.mark.parametrize("k", [3, 5])
def test_prdc_equals_reference_package(k, capsys):
    from prdc import compute_prdc

    real, fake = gaussians(700, 16, 8), gaussians(600, 16, 9, shift=0.4)
    ref = compute_prdc(real, fake, nearest_k=k)
    ours = prdc(real, fake, pr_k=k, dc_k=k, device="cpu", chunk=128)  # small chunks: several partial blocks
    for name in ("precision", "recall", "density", "coverage"):
        assert ours[name] == pytest.approx(float(ref[name]), abs=1e-12), name


def test_prdc_uses_pr_k_and_dc_k_separately():
    from prdc import compute_prdc

    real, fake = gaussians(400, 8, 10), gaussians(300, 8, 11, shift=0.3)
    ours = prdc(real, fake, pr_k=3, dc_k=5, device="cpu", chunk=100)
    r3, r5 = compute_prdc(real, fake, nearest_k=3), compute_prdc(real, fake, nearest_k=5)
    assert (ours["precision"], ours["recall"]) == pytest.approx((r3["precision"], r3["recall"]))
    assert (ours["density"], ours["coverage"]) == pytest.approx((r5["density"], r5["coverage"]))


def one_hot(labels: np.ndarray, k: int, confidence: float = 1.0) -> np.ndarray:
    p = np.full((len(labels), k), (1 - confidence) / (k - 1))
    p[np.arange(len(labels)), labels] = confidence
    return p


def test_classifier_score_known_values():
    balanced = one_hot(np.arange(1000) % 10, 10)
    assert classifier_score(balanced) == pytest.approx(10, rel=1e-6)
    assert classifier_score(one_hot(np.full(1000, 3), 10)) == pytest.approx(1, rel=1e-9)
    assert classifier_score(np.full((100, 10), 0.1)) == pytest.approx(1, rel=1e-9)  # uninformative
    assert 1 < classifier_score(one_hot(np.arange(1000) % 10, 10, 0.6)) < 10  # unsure: in between


def test_class_metrics_detect_collapse():
    real_hist = np.full(10, 0.1)
    spread = class_metrics(real_hist, one_hot(np.arange(1000) % 10, 10))
    assert spread["classes_covered"] == 10 and spread["class_kl"] == pytest.approx(0, abs=1e-12)
    # 97% ones and a few strays: the strays do not count as covering their classes
    labels = np.where(np.arange(1000) < 970, 1, np.arange(1000) % 10)
    collapsed = class_metrics(real_hist, one_hot(labels, 10))
    assert collapsed["classes_covered"] == 1
    assert collapsed["class_kl"] > 1.5  # close to log 10 = 2.3 for a single class


def test_compute_metrics_reports_every_registered_metric():
    rng = np.random.default_rng(12)
    real = FeatureSet(gaussians(300, 8, 12).astype(np.float32), one_hot(rng.integers(0, 4, 300), 4))
    fake = FeatureSet(gaussians(200, 8, 13).astype(np.float32), one_hot(rng.integers(0, 4, 200), 4))
    out = compute_metrics(Reference.of(real), fake, Settings(kid_subsets=5, kid_subset_size=100, pr_k=3,
                                                                  dc_k=5, seed=0, device="cpu"))
    s = Settings(kid_subsets=5, kid_subset_size=100, pr_k=3, dc_k=5, seed=0, device="cpu")
    keys = []
    for name, metric in METRICS.items():  # the contract of every entry, not the list of entries
        one = metric(Reference.of(real), fake, s)
        assert one and all(isinstance(k, str) and np.isfinite(v) for k, v in one.items()), name
        assert compute_metrics(Reference.of(real), fake, s, names=(name,)) == {"n": 200, **one}, name
        keys += list(one)
    assert len(keys) == len(set(keys))  # no metric overwrites another's number
    assert set(out) == {"n", *keys} and out["n"] == 200 and all(np.isfinite(v) for v in out.values())


def test_reference_round_trip(tmp_path):
    rng = np.random.default_rng(14)
    fs = FeatureSet(gaussians(50, 4, 14).astype(np.float32), one_hot(rng.integers(0, 3, 50), 3))
    ref = Reference.of(fs)
    back = Reference.load(ref.save(tmp_path / "reference.npz"))
    for name in ("features", "probs", "mu", "sigma", "class_hist"):
        np.testing.assert_array_equal(getattr(back, name), getattr(ref, name))
    with pytest.raises(GanforgeError, match="evaluator stage"):
        Reference.load(tmp_path / "missing.npz")


def test_inception_without_weights_names_the_file_and_where_to_put_it(tmp_path, monkeypatch):
    from ganforge.metrics.inception import WEIGHTS_FILE, weights_path

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    expected = tmp_path / "torch" / "hub" / "checkpoints" / WEIGHTS_FILE
    with pytest.raises(GanforgeError) as e:
        weights_path(None)
    assert f"{WEIGHTS_FILE} at {expected}" in str(e.value) and "evaluate.inception: false" in str(e.value)
    with pytest.raises(GanforgeError, match=f"{WEIGHTS_FILE} at {tmp_path / 'mine.pth'}"):
        weights_path(str(tmp_path / "mine.pth"))


@pytest.fixture(scope="module")
def random_inception_weights(tmp_path_factory):
    """A weights file with the real layout and random values: exercises the 'weights present' path
    (the real file cannot be downloaded here)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class Untrained(FeatureExtractorInceptionV3):
        def load_state_dict(self, *args, **kwargs):  # keep the random initialisation
            return None

    d = tmp_path_factory.mktemp("inception")
    torch.save({}, d / "empty.pt")
    torch.manual_seed(0)
    net = Untrained("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(d / "empty.pt"))
    torch.save(net.state_dict(), d / "weights.pth")
    return d / "weights.pth"


def test_inception_fid_runs_when_weights_are_present(random_inception_weights):
    from ganforge.metrics.inception import inception_fid, weights_path

    rng = np.random.default_rng(15)
    real = rng.integers(0, 256, (3, 1, 28, 28), dtype=np.uint8)  # grayscale: expanded to RGB
    fake = np.zeros_like(real)
    out = inception_fid(real, fake, weights_path(str(random_inception_weights)), torch.device("cpu"), 2)
    assert set(out) == {"inception_fid"} and np.isfinite(out["inception_fid"]) and out["inception_fid"] > 0


def test_inception_refuses_a_file_that_needs_unpickling(tmp_path):
    import pickle

    from ganforge.metrics.inception import inception_fid

    bad = tmp_path / "weights.pth"
    bad.write_bytes(pickle.dumps(print, protocol=2))  # a global that weights_only loading must refuse
    images = np.zeros((2, 1, 28, 28), np.uint8)
    with pytest.raises(GanforgeError, match="refusing to load"):
        inception_fid(images, images, bad, torch.device("cpu"))
