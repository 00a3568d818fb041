"""The label-free judge (SimCLR, metrics/ssl.py) and the memorisation check (metrics/memorisation.py).

That the judge judges: on real MNIST test images, every disturbance of Heusel et al. 2017 and mode dropping
raise its FID at every level. That the memorisation check tells copies from fresh images: samples that are
train images are flagged, real images the judge never saw are not. And that a flat folder of images, with no
classes, goes through every stage with it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import copy_params, run_stage, set_params
from ganforge.io import atomic_save_npz

TINY = {"evaluator.device": "cpu", "evaluator.kind": "self-supervised", "evaluator.batch_size": 256,
        "evaluator.self_supervised.epochs": 2, "evaluate.n": 400, "evaluate.device": "cpu",
        "evaluate.kid_subsets": 10, "evaluate.kid_subset_size": 100}
FEATURE_KEYS = {"n", "fid", "fid_ratio", "kid_mean", "kid_std", "precision", "recall", "density", "coverage",
                "copy_share", "copy_z", "copies_flagged", "copy_threshold"}  # and no class metrics


N_TRAIN, N_TEST = 50000, 10000


@pytest.fixture(scope="module")
def digits(tmp_path_factory, mnist_dir):
    """Real MNIST, 50000 train images (the judge's) and the 10000 test images (its reference); the other
    10000 train images are real digits it never saw. A judge of a few thousand images for 100 steps is
    too weak to see the smallest disturbances (noise of std 0.05 lowered its FID): two epochs here."""
    from ganforge.data.prepared import load_info, load_split, write_prepared

    splits = {}
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        x, y = load_split(mnist_dir, split)
        splits[split] = (x[:n], y[:n])
    out = tmp_path_factory.mktemp("data") / "mnist"
    write_prepared(out, splits, {**load_info(mnist_dir), "subset_of": str(mnist_dir)})
    return out


@pytest.fixture(scope="module")
def judged(tmp_path_factory, digits):
    """The evaluator stage's label-free judge of 50000 real MNIST digits (labels unused: 2 SimCLR epochs),
    and an MLflow run for the evaluate stage to log to."""
    from ganforge.tracking.store import Run

    cwd = tmp_path_factory.mktemp("label-free")
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlflow.db'}", "OMP_NUM_THREADS": "1"}
    copy_params(cwd / "params.yaml")
    set_params(cwd / "params.yaml", TINY)
    proc = run_stage("evaluator", "--data", str(digits), cwd=cwd, env=env)
    assert proc.returncode == 0, proc.stderr
    run = Run.start("test-label-free", {"train": {"kimg": 0}}, tags={"dataset": "mnist"}, root=cwd)
    run.write_json(cwd / "results/train/run.json")
    run.finish()
    return cwd, env, proc.stdout


def test_the_judge_needs_no_labels(judged):
    cwd, _, stdout = judged
    from ganforge.metrics import Reference, load_evaluator

    metrics = json.loads((cwd / "results/evaluator/metrics.json").read_text())
    assert metrics["kind"] == "self-supervised" and metrics["accuracy"] is None
    assert set(metrics["floor"]) == FEATURE_KEYS - {"fid_ratio", "copy_share", "copy_z", "copies_flagged",
                                                    "copy_threshold"}
    net, meta = load_evaluator(cwd / "models/evaluator.pt")
    ref = Reference.load(cwd / "results/evaluator/reference.npz")
    assert net.kind == meta["kind"] == "self-supervised" and net.num_classes == 0
    assert ref.features.shape == (N_TEST, 128) and ref.probs.shape == (N_TEST, 0) and ref.class_hist.size == 0
    assert f"self-supervised on {N_TEST} test images" in stdout


def test_disturbances_raise_fid_at_every_level(judged, mnist_dir):
    """Heusel et al. 2017's check, appendix A1: Gaussian noise, blur, salt and pepper, swirl, each at four
    levels, and mode dropping (real images of fewer and fewer classes)."""
    from ganforge.data.prepared import load_split
    from ganforge.metrics import Reference, extract, load_evaluator
    from ganforge.metrics.disturb import LEVELS, disturb, drop_modes
    from ganforge.metrics.fid import feature_stats, fid_from_stats

    cwd, _, _ = judged
    net, _ = load_evaluator(cwd / "models/evaluator.pt")
    ref = Reference.load(cwd / "results/evaluator/reference.npz")

    def fid(images):
        feats = extract(net, images, torch.device("cpu")).features
        return fid_from_stats(ref.mu, ref.sigma, *feature_stats(feats))

    x, y = load_split(mnist_dir, "train")
    fresh, fresh_labels = x[N_TRAIN : N_TRAIN + 8000], y[N_TRAIN : N_TRAIN + 8000]  # unseen real digits
    clean = fid(fresh)
    for kind, levels in LEVELS.items():
        curve = [clean] + [fid(disturb(fresh, kind, level, seed=1)) for level in levels]
        assert all(a < b for a, b in zip(curve, curve[1:], strict=False)), (kind, curve)
    dropped = [clean] + [fid(drop_modes(fresh, fresh_labels, keep, len(fresh), seed=1))
                         for keep in (9, 7, 5, 3)]
    assert all(a < b for a, b in zip(dropped, dropped[1:], strict=False)), dropped


@pytest.mark.parametrize("source", ["train", "fresh"])
def test_memorisation_flags_a_generator_that_returns_its_training_images(judged, digits, mnist_dir, source):
    from ganforge.data.prepared import load_split

    cwd, env, _ = judged
    x, _ = load_split(mnist_dir, "train")
    # "train": 400 of the images the judge and the generator were trained on; "fresh": 400 real digits from
    # outside that training split (a generator of new, real-looking images)
    images = x[:N_TRAIN][::20][:400] if source == "train" else x[N_TRAIN + 3000 : N_TRAIN + 3400]
    out = cwd / f"results/evaluate-{source}"
    atomic_save_npz(cwd / f"samples-{source}.npz", images=images)
    proc = run_stage("evaluate", "--data", str(digits), "--samples", str(cwd / f"samples-{source}.npz"),
                     "--out", str(out), cwd=cwd, env=env)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == FEATURE_KEYS
    picture = np.asarray(Image.open(out / "closest_pairs.png"))
    if source == "train":
        assert metrics["copies_flagged"] == 1 and metrics["copy_share"] == 1 and metrics["copy_z"] < -10
        assert "FLAGGED" in proc.stdout and "not judged (memorisation" in proc.stdout
        # each pair is a sample and its nearest train image: here the same image twice
        tile = 28 + 2
        assert np.array_equal(picture[2:30, 2:30], picture[2:30, 2 + tile : 30 + tile])
    else:
        assert metrics["copies_flagged"] == 0 and metrics["copy_share"] < 0.05 and abs(metrics["copy_z"]) < 3
        assert "FLAGGED" not in proc.stdout


def _flat_folder(root, tiny_mnist_dir, n=600):
    from ganforge.data.prepared import load_split

    x, _ = load_split(tiny_mnist_dir, "train")
    root.mkdir()
    for i in range(n):
        Image.fromarray(x[i, 0]).save(root / f"{i:04d}.png")
    return root


@pytest.mark.slow
def test_a_flat_folder_trains_samples_and_evaluates_with_the_label_free_judge(tmp_path, tiny_mnist_dir):
    folder = _flat_folder(tmp_path / "my-images", tiny_mnist_dir)
    cwd = tmp_path / "project"
    cwd.mkdir()
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlflow.db'}", "OMP_NUM_THREADS": "1"}
    copy_params(cwd / "params.yaml")
    set_params(cwd / "params.yaml", {
        **TINY, "evaluator.kind": "auto", "base.dataset": "folder", "download.folder.path": str(folder),
        "download.folder.resolution": 28, "download.folder.channels": 1, "download.folder.test_fraction": 0.2,
        "evaluate.n": 200, "evaluate.kid_subset_size": 50, "train.conditional": False, "train.device": "cpu",
        "train.kimg": 0.5, "train.eval.every_kimg": 0.25, "train.eval.n": 100, "sample.device": "cpu"})
    data = cwd / "data/folder"
    assert run_stage("download", "--out", str(data), cwd=cwd, env=env).returncode == 0

    # a classifier needs classes: a flat folder has one
    set_params(cwd / "params.yaml", {"evaluator.kind": "classifier"})
    proc = run_stage("evaluator", "--data", str(data), cwd=cwd, env=env)
    assert proc.returncode == 2 and "evaluator.kind" in proc.stderr and "Traceback" not in proc.stderr
    set_params(cwd / "params.yaml", {"evaluator.kind": "auto"})  # auto: no classes, so self-supervised
    proc = run_stage("evaluator", "--data", str(data), cwd=cwd, env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((cwd / "results/evaluator/metrics.json").read_text())["kind"] == "self-supervised"

    # a class-conditional generator needs labels
    set_params(cwd / "params.yaml", {"train.conditional": True})
    proc = run_stage("train", "--data", str(data), cwd=cwd, env=env)
    assert proc.returncode == 2 and "train.conditional" in proc.stderr and "Traceback" not in proc.stderr
    set_params(cwd / "params.yaml", {"train.conditional": False})
    for stage, args in (("train", ("--data", str(data))), ("sample", ()),
                        ("evaluate", ("--data", str(data)))):
        proc = run_stage(stage, *args, cwd=cwd, env=env)
        assert proc.returncode == 0, (stage, proc.stderr)
    metrics = json.loads((cwd / "results/evaluate/metrics.json").read_text())
    assert set(metrics) == FEATURE_KEYS and metrics["n"] == 200 and metrics["fid_ratio"] > 1
    assert (cwd / "results/evaluate/closest_pairs.png").stat().st_size > 0
    # the in-training FID is measured in the label-free judge's features too
    assert len((cwd / "results/train/eval.tsv").read_text().splitlines()) == 3  # header + 2 evaluations
    # CAS needs classes: the synthesize stage says so instead of failing in the classifier
    proc = run_stage("synthesize", "--data", str(data), cwd=cwd, env=env)
    assert proc.returncode == 2 and "without labels" in proc.stderr and "Traceback" not in proc.stderr


def test_too_few_real_images_for_the_evaluation_exits_2_naming_the_key(judged, tiny_mnist_dir):
    cwd, env, _ = judged
    params = cwd / "params-too-many.yaml"
    params.write_text((cwd / "params.yaml").read_text())
    set_params(params, {"evaluate.n": 5000})
    proc = run_stage("evaluator", "--params", str(params), "--data", str(tiny_mnist_dir), "--model",
                     str(cwd / "unused.pt"), "--results", str(cwd / "unused"), cwd=cwd, env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "evaluate.n (5000)" in proc.stderr and "2048 images" in proc.stderr
    assert not (cwd / "unused.pt").exists()
