"""The synthesize stage (a generator's labelled images in the prepared format) and CAS (issue 13)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from conftest import copy_params, run_stage, set_params, untrained_generator
from ganforge.data.prepared import load_info, load_split, split_sha256
from ganforge.nets import save_generator
from ganforge.sampling import class_cycle, generate

CLASSIFIER = dict(epochs=2, batch_size=128, lr=3e-3, feature_dim=32)
CAS_KEYS = {"cas", "cas_real", "cas_gap", "cas_mix", "n_synthetic", "labels"}


def test_cas_of_real_images_with_shuffled_labels_is_chance(tiny_mnist_dir):
    """CAS can fail: real images under their true labels teach the classifier (a perfect conditional G),
    the same images under shuffled labels (a G that ignores the class it is asked for) teach it nothing."""
    from ganforge.metrics.cas import classification_accuracy_score

    x, y = load_split(tiny_mnist_dir, "train")
    test = load_split(tiny_mnist_dir, "test")
    settings = dict(real_accuracy=0.99, num_classes=10, classifier=CLASSIFIER, seed=0,
                    device=torch.device("cpu"), progress=False)
    good = classification_accuracy_score((x, y), None, test, **settings)
    bad = classification_accuracy_score((x, np.random.default_rng(0).permutation(y)), None, test, **settings)
    assert good["cas"] > 0.8 and bad["cas"] < 0.25, (good, bad)
    assert bad["cas_gap"] == pytest.approx(0.99 - bad["cas"]) and "cas_mix" not in bad


@pytest.fixture
def workdir(tmp_path, monkeypatch, store, tiny_mnist_dir):
    """What synthesize reads: a generator, the judge's metrics.json and model, an MLflow run, tiny params."""
    from ganforge.metrics import save_evaluator
    from ganforge.metrics.evaluator import train_evaluator
    from ganforge.tracking.store import Run

    for k, v in store.items():
        monkeypatch.setenv(k, v)
    x, y = load_split(tiny_mnist_dir, "train")
    judge = train_evaluator(x[:512], y[:512], num_classes=10, seed=0, device=torch.device("cpu"),
                            progress=False, **CLASSIFIER)
    save_evaluator(tmp_path / "models/evaluator.pt", judge)
    (tmp_path / "results/evaluator").mkdir(parents=True)
    (tmp_path / "results/evaluator/metrics.json").write_text(json.dumps(
        {"accuracy": 0.9, "test_n": 512, "floor": {"fid": 1.0}}))
    run = Run.start("test-synthesize", {"train": {"kimg": 0}}, root=tmp_path)
    run.write_json(tmp_path / "results/train/run.json")
    run.finish()
    copy_params(tmp_path / "params.yaml")
    set_params(tmp_path / "params.yaml", {
        "synthesize.device": "cpu", "synthesize.train_n": 300, "synthesize.test_n": 40,
        "synthesize.batch_size": 64, "synthesize.seed_offset": 1000, "base.seed": 2,
        **{f"evaluator.{k}": v for k, v in CLASSIFIER.items()}, "evaluator.epochs": 1})
    return tmp_path, run.run_id


def synthesize_cli(cwd, data, env):
    return run_stage("synthesize", "--data", str(data), "--out", str(cwd / "data/synthetic-mnist"), cwd=cwd,
                     env=env)


@pytest.mark.slow
def test_synthesize_stage_writes_a_prepared_dataset_and_cas(workdir, tiny_mnist_dir, store):
    cwd, run_id = workdir
    G = untrained_generator(num_classes=10)
    save_generator(cwd / "models/generator.pt", G, {"classes": [str(k) for k in range(10)]})
    proc = synthesize_cli(cwd, tiny_mnist_dir, store)
    assert proc.returncode == 0, proc.stderr
    out = cwd / "data/synthetic-mnist"
    # the download stage's own reader and format: uint8 images, int64 labels, info.json hashes that match
    info = load_info(out, "synthetic-mnist")
    for split, n, first in (("train", 300, 1002), ("test", 40, 1302)):
        x, y = load_split(out, split)
        assert x.shape == (n, 1, 28, 28) and info["counts"][split] == n
        assert info["sha256"][split] == split_sha256(x, y)
        assert info["seeds"][split] == {"first": first, "count": n}
        np.testing.assert_array_equal(y, class_cycle(n, range(10)))  # every class in turn, as asked
        np.testing.assert_array_equal(x[:20], generate(G, 20, seed=first, batch_size=20, labels=y[:20]))
    from ganforge.synthetic import file_sha256

    assert info["generator"]["sha256"] == file_sha256(cwd / "models/generator.pt")
    assert info["labels"] == "requested" and info["classes"][7] == "7"
    metrics = json.loads((cwd / "results/synthesize/metrics.json").read_text())
    assert set(metrics) == CAS_KEYS and metrics["cas_real"] == 0.9 and metrics["n_synthetic"] == 300
    assert 0 <= metrics["cas"] <= 1 and metrics["cas_mix"] > 0.5  # the mix holds the 2048 real images
    logged = MlflowClient(store["MLFLOW_TRACKING_URI"]).get_run(run_id).data.metrics
    assert logged["cas"] == pytest.approx(metrics["cas"])
    assert logged["cas_mix"] == pytest.approx(metrics["cas_mix"])


@pytest.mark.slow
def test_an_unconditional_generator_is_labelled_by_the_judge(workdir, tiny_mnist_dir, store):
    from ganforge.metrics import load_evaluator
    from ganforge.metrics.evaluator import extract

    cwd, _ = workdir
    set_params(cwd / "params.yaml", {"synthesize.mix": False})
    save_generator(cwd / "models/generator.pt", untrained_generator())
    proc = synthesize_cli(cwd, tiny_mnist_dir, store)
    assert proc.returncode == 0, proc.stderr
    x, y = load_split(cwd / "data/synthetic-mnist", "train")
    judge, _ = load_evaluator(cwd / "models/evaluator.pt")
    np.testing.assert_array_equal(y, extract(judge, x, torch.device("cpu")).probs.argmax(axis=1))
    assert load_info(cwd / "data/synthetic-mnist")["labels"] == "judge"
    assert "cas_mix" not in json.loads((cwd / "results/synthesize/metrics.json").read_text())


def test_help_documents_every_option():
    proc = run_stage("synthesize", "--help")
    assert proc.returncode == 0
    for option in ("--params", "--data", "--model", "--evaluator", "--evaluator-results", "--run", "--out",
                   "--results"):
        assert option in proc.stdout, option
