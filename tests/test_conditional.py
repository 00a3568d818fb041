"""Class-conditional generation (issue 13): conditional BatchNorm G, projection D, conditional training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import copy_params, run_stage, set_params, tiny_fit, tiny_params, untrained_generator
from ganforge.nets import build_networks, load_generator, save_generator
from ganforge.sampling import generate

K = 10


def conditional_pair(arch: str, d_sn: bool = False, seed: int = 0):
    torch.manual_seed(seed)
    return build_networks(arch, z_dim=8, channels=1, resolution=28, g_channels=8, d_channels=16,
                          g_spectral_norm=False, d_spectral_norm=d_sn, num_classes=K)


@pytest.mark.parametrize("arch", ["dcgan", "resnet"])
def test_projection_d_is_the_unconditional_term_plus_embedding_dot_features(arch):
    """D(x, y) = psi(phi(x)) + <embed(y), phi(x)> (Miyato & Koyama 2018), on hand-made embedding weights."""
    _, D = conditional_pair(arch)
    D.eval()
    x = torch.rand(6, 1, 28, 28) * 2 - 1
    y = torch.tensor([0, 3, 3, 7, 9, 1])
    with torch.no_grad():
        D.embed.weight.zero_()  # embedding 0: the unconditional D with the same weights
        uncond = build_networks(arch, z_dim=8, channels=1, resolution=28, g_channels=8, d_channels=16,
                                g_spectral_norm=False, d_spectral_norm=False)[1].eval()
        uncond.load_state_dict({k: v for k, v in D.state_dict().items() if not k.startswith("embed")})
        psi = uncond(x)  # [6]
        torch.testing.assert_close(D(x, y), psi)
        # embed(c) = c * ones: the projection adds c * sum(phi(x)), by hand
        D.embed.weight.copy_(torch.arange(K, dtype=torch.float32)[:, None].expand_as(D.embed.weight))
        phi = D.features(x).flatten(1)  # [6, F]
        torch.testing.assert_close(D(x, y), psi + y.float() * phi.sum(1))
        # a one-hot embedding picks one feature: class c reads feature c
        D.embed.weight.copy_(torch.eye(K, D.embed.weight.shape[1]))
        torch.testing.assert_close(D(x, y), psi + phi[torch.arange(6), y])
    assert psi.abs().sum() > 0 and phi.abs().sum() > 0  # the terms compared are not all zero


@pytest.mark.parametrize("arch", ["dcgan", "resnet"])
def test_conditional_g_obeys_the_class_and_the_file_rebuilds_it(tmp_path, arch):
    G = untrained_generator(arch=arch, num_classes=K)
    z = torch.randn(4, 16)
    with torch.no_grad():
        a, b = G(z, torch.tensor([1, 1, 1, 1])), G(z, torch.tensor([2, 2, 2, 2]))
    assert (a - b).abs().mean() > 1e-3  # the class changes the image
    with pytest.raises(ValueError, match="needs labels"):
        G(z)
    save_generator(tmp_path / "g.pt", G, {"classes": [str(c) for c in range(K)]})
    G2, meta = load_generator(tmp_path / "g.pt")
    assert G2.num_classes == K and meta["classes"][3] == "3"
    a, b = generate(G2, 12, seed=5, batch_size=5), generate(G, 12, seed=5, batch_size=12)
    if arch == "dcgan":
        np.testing.assert_array_equal(a, b)
    else:  # the ResNet's CPU convolutions round differently per batch size (~1e-6, unconditional ones too):
        assert np.abs(a.astype(int) - b).max() <= 1 and (a != b).mean() < 1e-3  # a grey level, rarely


def test_unconditional_networks_take_no_labels_and_have_no_class_parameters():
    G, D = build_networks("resnet", z_dim=8, channels=1, resolution=28, g_channels=8, d_channels=8,
                          g_spectral_norm=False, d_spectral_norm=True)
    assert G.num_classes == 0 and D.embed is None
    assert not any("gain" in k or "embed" in k for k in [*G.state_dict(), *D.state_dict()])
    with pytest.raises(ValueError, match="no labels"):
        D(torch.zeros(2, 1, 28, 28), torch.tensor([0, 1]))


def labelled_data(data_dir, n: int = 256):
    from ganforge.data.prepared import load_split

    x, y = load_split(data_dir, "train")
    return x[:n], y[:n]


@pytest.mark.parametrize("arch, loss, reg, d_sn, fake_labels", [
    ("dcgan", "ns", "r1", False, "uniform"),
    ("resnet", "hinge", "gp", True, "histogram"),
])
def test_conditional_training_runs_and_keeps_its_labels(tiny_mnist_dir, arch, loss, reg, d_sn, fake_labels):
    x, y = labelled_data(tiny_mnist_dir)
    overrides = {"train.arch": arch, "train.loss": loss, "train.reg.kind": reg, "train.spectral_norm.d": d_sn,
                 "train.conditional": True, "train.fake_labels": fake_labels, "train.kimg": 0.096}
    result = tiny_fit(x, y, K, overrides)
    assert result.ema.num_classes == K and result.nets["D"].embed is not None
    assert np.isfinite(result.history[-1]["loss_d"])
    assert result.grid.shape == (K * 30 + 2, 8 * 30 + 2)  # one row per class, 8 columns
    # the same seed, same labels, same weights: training is deterministic
    again = tiny_fit(x, y, K, overrides)
    for k, v in result.nets["G"].state_dict().items():
        torch.testing.assert_close(v, again.nets["G"].state_dict()[k], rtol=0, atol=0)


@pytest.mark.parametrize("arch", ["dcgan", "resnet"])
def test_class_logits_are_the_projection_terms_of_every_class(arch):
    """The projection D read as a classifier (P2GAN): D(x, k) = psi(phi(x)) + logits[:, k] for every class k,
    so D(x, k) - logits[:, k] is one value whatever k; and logits = phi(x) @ embed^T, under spectral norm."""
    from ganforge.nets.conditional import class_logits

    _, D = conditional_pair(arch, d_sn=True)
    D.eval()  # no power iteration: every call reads the same normalised weights
    x = torch.rand(5, 1, 28, 28) * 2 - 1
    with torch.no_grad():
        logits = D(x, classes=True)  # [5, K]
        assert logits.shape == (5, K)
        psi = [D(x, torch.full((5,), k)) - logits[:, k] for k in range(K)]
        for other in psi[1:]:
            torch.testing.assert_close(other, psi[0])
        torch.testing.assert_close(logits, D.features(x).flatten(1) @ D.embed.weight.T)
        assert logits.std(1).min() > 0  # classes score differently: the comparison is not 0 = 0
    with pytest.raises(ValueError, match="class-conditional D"):
        class_logits(None, torch.zeros(2, 3))


def test_label_matching_teaches_d_the_classes_and_is_deterministic(tiny_mnist_dir):
    """train.label_matching adds P2GAN's class cross-entropy: D's classifier learns the real labels (its CE
    falls well below chance, ln 10 = 2.30, within a tiny run), the stats are reported, and training stays
    deterministic. Without it, the same run reports no class stats."""
    x, y = labelled_data(tiny_mnist_dir)
    overrides = {"train.conditional": True, "train.label_matching": 1.0, "train.kimg": 2.56,
                 "train.log_every": 20, "train.d.lr": 1e-3}
    result = tiny_fit(x, y, K, overrides)
    ce_real = [h["class_ce_real"] for h in result.history if "class_ce_real" in h]
    ce_fake = [h["class_ce_fake"] for h in result.history if "class_ce_fake" in h]
    assert len(ce_real) >= 3 and all(np.isfinite(ce_fake))
    assert ce_real[0] > 2.0 and ce_real[-1] < 1.5, ce_real  # from chance to well above it
    again = tiny_fit(x, y, K, overrides)
    for k, v in result.nets["G"].state_dict().items():
        torch.testing.assert_close(v, again.nets["G"].state_dict()[k], rtol=0, atol=0)
    plain = tiny_fit(x, y, K, {**overrides, "train.label_matching": 0.0, "train.kimg": 0.32})
    assert not any("class_ce_real" in h for h in plain.history)


# info.json as run.validate reads it: MNIST's ten classes, and a flat image folder's single one
MNIST_INFO = {"shape": [1, 28, 28], "classes": [str(c) for c in range(K)]}
FLAT_INFO = {"shape": [1, 28, 28], "classes": ["faces"]}


def test_label_matching_needs_a_conditional_run():
    from ganforge.errors import ConfigError
    from ganforge.train import validate

    with pytest.raises(ConfigError, match="train.label_matching.*train.conditional: true"):
        validate(tiny_params({"train.label_matching": 1.0}), MNIST_INFO, 1)
    both = tiny_params({"train.label_matching": 1.0, "train.conditional": True})
    assert validate(both, MNIST_INFO, 1) == []


def test_conditional_training_needs_labels():
    from ganforge.errors import ConfigError
    from ganforge.train import validate

    for info in (FLAT_INFO, {"shape": [1, 28, 28]}):  # one class, or none at all
        with pytest.raises(ConfigError, match=r"train\.conditional: mnist has no labels \([01] class"):
            validate(tiny_params({"train.conditional": True}), info, 1)
    # both problems at once: one message, one line each
    with pytest.raises(ConfigError, match=r"(?s)invalid params for training:\n  train\.conditional: .*no "
                                          r"labels.*\n  train\.pack: PacGAN packing"):
        validate(tiny_params({"train.conditional": True, "train.pack": 2}), FLAT_INFO, 1)


def test_train_stage_exits_2_on_a_flat_folder_dataset(tmp_path, store):
    from ganforge.io import atomic_save_npz

    data = tmp_path / "data"  # a flat folder: one class
    images = np.random.default_rng(0).integers(0, 256, (64, 1, 28, 28), dtype=np.uint8)
    for split in ("train", "test"):
        atomic_save_npz(data / f"{split}.npz", images=images, labels=np.zeros(64, np.int64))
    (data / "info.json").write_text(json.dumps({"name": "mnist", "sha256": {}, "classes": ["faces"],
                                                "shape": [1, 28, 28]}))  # as prepared.write_prepared writes
    cwd = tmp_path / "work"
    cwd.mkdir()
    copy_params(cwd / "params.yaml")
    set_params(cwd / "params.yaml", {"train.conditional": True, "train.device": "cpu"})
    proc = run_stage("train", "--params", "params.yaml", "--data", str(data), cwd=cwd, env=store)
    assert proc.returncode == 2, proc.stderr
    assert "train.conditional" in proc.stderr and "no labels" in proc.stderr
    assert "Traceback" not in proc.stderr and not (cwd / "checkpoints").exists()


# --- controlled sampling: the sample stage and the pyfunc ---

def test_same_seed_and_class_give_the_same_image_for_any_batch_size():
    G = untrained_generator(num_classes=K)
    labels = np.array([3, 3, 7, 0, 9, 3, 1, 7, 7, 2, 5])
    whole = generate(G, 11, seed=20, batch_size=11, labels=labels)
    for batch in (1, 4):
        np.testing.assert_array_equal(generate(G, 11, seed=20, batch_size=batch, labels=labels), whole)
    one = generate(G, 1, seed=20 + 4, batch_size=1, labels=np.array([9]))  # image 4 alone
    np.testing.assert_array_equal(one[0], whole[4])
    assert not np.array_equal(generate(G, 1, seed=24, batch_size=1, labels=np.array([8]))[0], whole[4])


@pytest.fixture
def conditional_run(tmp_path, monkeypatch, store):
    """A conditional generator file with class names, an MLflow run, and params for 30 images."""
    from ganforge.tracking.store import Run

    for k, v in store.items():
        monkeypatch.setenv(k, v)
    G = untrained_generator(num_classes=K)
    save_generator(tmp_path / "models/generator.pt", G, {"weights": "G", "kimg": 0,
                                                          "classes": [str(c) for c in range(K)]})
    run = Run.start("test-conditional-sample", {"train": {"kimg": 0}}, root=tmp_path)
    run.write_json(tmp_path / "results/train/run.json")
    run.finish()
    copy_params(tmp_path / "params.yaml")
    set_params(tmp_path / "params.yaml", {"evaluate.n": 30, "sample.batch_size": 8, "sample.device": "cpu",
                                          "base.seed": 4, "sample.classes": [3, "7"]})
    return tmp_path, run


def test_sample_stage_writes_requested_labels_and_one_grid_row_per_class(conditional_run, store):
    from PIL import Image

    cwd, _ = conditional_run
    proc = run_stage("sample", cwd=cwd, env=store)
    assert proc.returncode == 0, proc.stderr
    with np.load(cwd / "samples/images.npz") as z:
        images, labels = z["images"], z["labels"]
    np.testing.assert_array_equal(labels, np.array([3, 7] * 15))  # classes[i mod 2], "7" by name
    G, _ = load_generator(cwd / "models/generator.pt")
    np.testing.assert_array_equal(images, generate(G, 30, seed=4, batch_size=30, labels=labels))
    grid = np.asarray(Image.open(cwd / "samples/grid.png"))
    assert grid.shape == (2 * 30 + 2, 10 * 30 + 2)  # 2 classes -> 2 rows of 10


@pytest.mark.parametrize("classes, message", [
    ([3, 10], "sample.classes: unknown class 10 (the classes: 0=0, 1=1,"),
    (["seven"], "sample.classes: unknown class 'seven'"),
])
def test_sample_stage_exits_2_on_an_unknown_class(conditional_run, store, classes, message):
    cwd, _ = conditional_run
    set_params(cwd / "params.yaml", {"sample.classes": classes})
    proc = run_stage("sample", cwd=cwd, env=store)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "9=9" in proc.stderr and not (cwd / "samples").exists()


def test_sample_classes_on_an_unconditional_generator_exit_2(conditional_run, store):
    cwd, _ = conditional_run
    save_generator(cwd / "models/generator.pt", untrained_generator(), {"weights": "G"})
    proc = run_stage("sample", cwd=cwd, env=store)
    assert proc.returncode == 2 and "unconditional" in proc.stderr, proc.stderr


def test_pyfunc_equals_the_sample_stage_for_the_same_seeds_and_classes(conditional_run, store):
    import mlflow
    import pandas as pd

    from ganforge.errors import GanforgeError
    from ganforge.tracking.serving import log_generator_model
    from ganforge.tracking.store import Run

    cwd, _ = conditional_run
    assert run_stage("sample", cwd=cwd, env=store).returncode == 0
    with np.load(cwd / "samples/images.npz") as z:
        stage = z["images"].transpose(0, 2, 3, 1)  # classes [3, 7], seeds 4..33
    run = Run.start("test-conditional-pyfunc", {"train": {"kimg": 0}}, root=cwd)
    version = log_generator_model(run, cwd / "models/generator.pt", "mnist")
    run.finish()
    m = mlflow.pyfunc.load_model(f"models:/ganforge-mnist/{version}")
    np.testing.assert_array_equal(m.predict({"count": 30, "seed": 4, "class": [3, 7]}), stage)
    np.testing.assert_array_equal(m.predict({"count": 30, "seed": 4, "classes": [3, 7]}), stage)
    # a row per class and seed pair: image 1 (seed 5) is a 7, image 2 (seed 6) a 3
    two = m.predict(pd.DataFrame({"count": [1, 1], "seed": [5, 6], "class": [7, 3]}))
    np.testing.assert_array_equal(two, stage[1:3])
    # without a class: every class in turn, as the sample stage with sample.classes null
    G, _ = load_generator(cwd / "models/generator.pt")
    np.testing.assert_array_equal(m.predict({"count": 12, "seed": 0}),
                                  generate(G, 12, seed=0, batch_size=12).transpose(0, 2, 3, 1))
    for bad, message in ((10, "unknown class 10"), (2.5, "unknown class 2.5"), ("x", "unknown class 'x'"),
                         ([1, -1], "unknown class -1")):
        with pytest.raises(GanforgeError, match=message):
            m.predict({"count": 2, "seed": 0, "class": bad})


# --- conditional metrics ---

def test_conditional_metrics_on_hand_made_features():
    """Features of class k ~ N(6 e_k, I) and a judge that predicts the nearest class mean: samples with
    their true classes score accuracy ~1 and an intra-class FID near 0; the same samples with shuffled
    classes score chance and a large intra-class FID."""
    from ganforge.metrics.conditional import conditional_metrics
    from ganforge.metrics.evaluator import FeatureSet

    rng = np.random.default_rng(0)
    means = 6 * np.eye(K, 16)

    def features(labels):
        f = means[labels] + rng.standard_normal((len(labels), 16))
        probs = np.eye(K)[np.argmin(((f[:, None, :] - means[None]) ** 2).sum(-1), axis=1)]
        return FeatureSet(f.astype(np.float32), probs.astype(np.float32))

    real_labels, labels = rng.integers(0, K, 3000), rng.integers(0, K, 3000)
    real, gen = features(real_labels), features(labels)
    good, rows = conditional_metrics(gen, labels, real, real_labels)
    assert good["cond_accuracy"] > 0.95 and good["intra_fid"] < 1 and good["classes_measured"] == K
    assert [r["class"] for r in rows] == list(range(K)) and sum(r["n"] for r in rows) == 3000
    bad, _ = conditional_metrics(gen, rng.permutation(labels), real, real_labels)
    assert bad["cond_accuracy"] < 0.2 and bad["intra_fid"] > 10


# --- interpolation ---

def test_slerp_ends_at_its_end_points_and_keeps_the_norm_between_equal_norms():
    from ganforge.sampling import slerp

    a, b = torch.randn(64), torch.randn(64)
    b = b / b.norm() * a.norm()
    assert torch.equal(slerp(a, b, 0.0), a) and torch.equal(slerp(a, b, 1.0), b)
    for t in (0.25, 0.5, 0.9):
        assert slerp(a, b, t).norm() == pytest.approx(a.norm().item(), rel=1e-5)  # a straight line would dip
    assert ((a + b) / 2).norm() < 0.9 * a.norm()


@pytest.mark.parametrize("num_classes", [0, K])
def test_interpolation_frames_start_and_end_at_sample_images(num_classes):
    from ganforge.sampling import interpolation, interpolation_pictures

    G = untrained_generator(num_classes=num_classes)
    frames = interpolation(G, seed=7, walks=3, steps=5)
    rows = 6 if num_classes else 3  # latent walks (+ class walks)
    assert frames.shape == (5, rows, 1, 28, 28) and frames.dtype == np.uint8
    def image(seed, *label):
        return generate(G, 1, seed=seed, batch_size=1, **({"labels": np.array(label)} if label else {}))[0]

    for w in range(3):
        cls = (w,) if num_classes else ()  # a latent walk keeps its class
        np.testing.assert_array_equal(frames[0, w], image(7 + w, *cls))
        np.testing.assert_array_equal(frames[-1, w], image(8 + w, *cls))
        assert not np.array_equal(frames[2, w], frames[0, w])  # the walk moves
        if num_classes:  # class walk: the z of seed 7 + w, class w -> w + 1
            np.testing.assert_array_equal(frames[0, 3 + w], frames[0, w])
            np.testing.assert_array_equal(frames[-1, 3 + w], image(7 + w, w + 1))
    strip, gif = interpolation_pictures(frames)
    assert strip.shape == (rows * 30 + 2, 5 * 30 + 2) and gif[:6] == b"GIF89a"
    import io

    from PIL import Image

    assert Image.open(io.BytesIO(gif)).n_frames == 5 + 3  # there and back
