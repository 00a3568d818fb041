"""Stacked MNIST (data/stacked.py, metrics/stacked.py): labels, the 1000 modes, and the stages on it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import ONE_THREAD, copy_params, run_stage, set_params
from ganforge.data.prepared import load_info, load_split
from ganforge.data.stacked import MODES, modes_of_digits, stack, unstack


def test_label_is_100r_10g_b_of_the_source_digits(mnist_dir):
    x, y = load_split(mnist_dir, "train")
    images, labels, idx = stack(x, y, 5000, seed=0, split="train")
    assert images.shape == (5000, 3, 28, 28) and images.dtype == np.uint8 and labels.dtype == np.int64
    for c in range(3):  # each channel is the MNIST digit it names
        assert np.array_equal(images[:, c], x[idx[:, c], 0])
    assert np.array_equal(labels, 100 * y[idx[:, 0]] + 10 * y[idx[:, 1]] + y[idx[:, 2]])
    again, _, _ = stack(x, y, 5000, seed=0, split="train")
    assert np.array_equal(images, again)  # deterministic from the seed
    assert not np.array_equal(images, stack(x, y, 5000, seed=1, split="train")[0])


def test_unstack_and_modes_of_digits_invert_stacking():
    labels = np.array([0, 7, 123, 999, 450])
    images = np.arange(5 * 3 * 2 * 2, dtype=np.uint8).reshape(5, 3, 2, 2)
    digits, digit_labels = unstack(images, labels)
    assert digits.shape == (15, 1, 2, 2) and np.array_equal(digits[3 * 2 + 1, 0], images[2, 1])
    assert digit_labels[6:9].tolist() == [1, 2, 3]
    assert np.array_equal(modes_of_digits(digit_labels), labels)


def test_the_mode_kl_splits_into_the_digit_shares_and_the_channels_dependence():
    from ganforge.metrics.stacked import digit_kls, stacked_metrics

    rng = np.random.default_rng(0)
    shares = np.array([0.3, 0.02, *[0.68 / 8] * 8])  # too many 0s, too few 1s in every channel
    digits = rng.choice(10, size=(200_000, 3), p=shares)
    m = stacked_metrics(modes_of_digits(digits.ravel()), np.ones(200_000, bool), min_count=1)
    expected = float((shares * np.log(shares * 10)).sum())
    for c in "rgb":  # each channel's share KL, up to sampling noise
        assert m[f"digit_kl_{c}"] == pytest.approx(expected, abs=0.005)
    assert 0 <= m["channel_dependence"] < 0.005  # independent channels
    assert m["mode_kl"] == pytest.approx(m["digit_kl_r"] + m["digit_kl_g"] + m["digit_kl_b"]
                                         + m["channel_dependence"], abs=1e-12)
    tied = modes_of_digits(np.repeat(rng.integers(0, 10, 50_000), 3))  # 000, 111, ..., 999: channels tied
    parts = digit_kls(tied)
    assert max(parts[f"digit_kl_{c}"] for c in "rgb") < 0.001  # every channel's digits are uniform ...
    assert parts["channel_dependence"] == pytest.approx(np.log(100), abs=0.001)  # ... but only 10 modes
    one = digit_kls(np.full(100, 333))
    assert one == pytest.approx({"digit_kl_r": np.log(10), "digit_kl_g": np.log(10), "digit_kl_b": np.log(10),
                                 "channel_dependence": 0.0}, abs=1e-12)


@pytest.mark.slow
def test_download_stage_builds_it_with_all_1000_modes(mnist_dir, tmp_path):
    """The real download stage (MNIST from the cache the mnist_dir fixture filled)."""
    copy_params(tmp_path / "params.yaml")
    set_params(tmp_path / "params.yaml", {"base.dataset": "stacked-mnist"})
    out = tmp_path / "data/stacked-mnist"
    proc = run_stage("download", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    info = load_info(out, "stacked-mnist")
    x, y = load_split(out, "train")
    assert x.shape == (60_000, 3, 28, 28) and info["shape"] == [3, 28, 28] and len(info["classes"]) == MODES
    assert min(info["class_counts"]["train"]) > 0 and len(np.unique(y)) == MODES  # every mode is present
    assert info["counts"] == {"train": 60_000, "test": 10_000} and "stacked from mnist" in info["source"]


@pytest.fixture(scope="module")
def tiny_stacked_dir(mnist_dir, tmp_path_factory):
    """A small Stacked MNIST in the prepared format (3000 train, 1000 test), built from real MNIST."""
    from ganforge.data.stacked import CLASSES
    from ganforge.io import atomic_save_npz

    out = tmp_path_factory.mktemp("data") / "stacked-mnist"
    out.mkdir()
    info = {"name": "stacked-mnist", "kind": "stacked", "classes": list(CLASSES), "shape": [3, 28, 28],
            "counts": {}, "sha256": {}}
    for split, n in (("train", 3000), ("test", 1000)):
        x, y = load_split(mnist_dir, split)
        images, labels, _ = stack(x, y, n, seed=0, split=split)
        atomic_save_npz(out / f"{split}.npz", images=images, labels=labels)
        info["counts"][split] = n
    (out / "info.json").write_text(json.dumps(info))
    return out


@pytest.mark.slow
def test_evaluator_and_evaluate_count_1000_modes(tiny_stacked_dir, tmp_path):
    """The evaluator stage trains the MNIST judge on the unstacked digits; evaluate counts the modes of the
    samples of a generator that draws one image only (a collapsed one): 1 mode, KL near log 1000."""
    from ganforge.io import atomic_save_npz
    from ganforge.tracking.store import Run

    store = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", **ONE_THREAD}  # Run.start's
    copy_params(tmp_path / "params.yaml")
    set_params(tmp_path / "params.yaml", {
        "base.dataset": "stacked-mnist", "evaluator.device": "cpu", "evaluator.epochs": 2,
        "evaluator.batch_size": 128, "evaluate.device": "cpu", "evaluate.n": 2000,
        "evaluate.modes.min_count": 1})
    proc = run_stage("evaluator", "--data", str(tiny_stacked_dir), cwd=tmp_path, env=store)
    assert proc.returncode == 0, proc.stderr
    judge = json.loads((tmp_path / "results/evaluator/metrics.json").read_text())
    assert judge["accuracy"] > 0.9 and judge["test_mode_accuracy"] > 0.7  # 9000 digits, 2 epochs
    assert judge["floor"]["modes_total"] == MODES and judge["floor"]["modes_covered"] > 800  # of 2000 images
    x, _ = load_split(tiny_stacked_dir, "train")
    atomic_save_npz(tmp_path / "samples/images.npz", images=np.repeat(x[:1], 2000, axis=0))
    run = Run.start("test-stacked", {"train": {"kimg": 0}}, tags={"dataset": "stacked-mnist"}, root=tmp_path)
    run.write_json(tmp_path / "results/train/run.json")
    run.finish()
    proc = run_stage("evaluate", "--data", str(tiny_stacked_dir), cwd=tmp_path, env=store)
    assert proc.returncode == 0, proc.stderr
    m = json.loads((tmp_path / "results/evaluate/metrics.json").read_text())
    assert m["modes_covered"] == 1 and m["mode_kl"] == pytest.approx(np.log(MODES)) and m["n"] == 2000
    for c in "rgb":  # one image: each channel's digit is always the same
        assert m[f"digit_kl_{c}"] == pytest.approx(np.log(10))
    assert m["channel_dependence"] == pytest.approx(0, abs=1e-9)
    assert "channel dependence" in proc.stdout and "digit_kl_r" in judge["floor"]
    assert m["clear_samples"] in (0.0, 1.0) and "read clearly" in proc.stdout  # one image, read one way

    from ganforge.metrics.evaluator import load_evaluator
    from ganforge.metrics.stacked import read_stacked

    net, _ = load_evaluator(tmp_path / "models/evaluator.pt")
    x_test, y_test = load_split(tiny_stacked_dir, "test")
    modes, clear = read_stacked(net, x_test, "cpu")
    assert clear.dtype == bool and clear.shape == (len(x_test),)
    assert (modes[clear] == y_test[clear]).mean() > (modes[~clear] == y_test[~clear]).mean()  # clear = right
    noise = np.random.default_rng(0).integers(0, 256, x_test.shape, dtype=np.uint8)
    assert read_stacked(net, noise, "cpu")[1].mean() < clear.mean()  # noise is read clearly less often
    assert judge["floor"]["clear_samples"] > 0.5
    assert len((tmp_path / "results/evaluate/class_hist.tsv").read_text().splitlines()) == MODES + 1
