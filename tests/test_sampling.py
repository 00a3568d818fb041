"""Sampling: one seed per image, truncation, grids, and the sample stage through its CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mlflow import MlflowClient
from PIL import Image

from conftest import copy_params, run_stage, set_params, untrained_generator
from ganforge.nets import save_generator
from ganforge.sampling import generate, latent, latents, load_images, make_grid


def test_images_do_not_depend_on_batch_size():
    G = untrained_generator()
    a = generate(G, 60, seed=3, batch_size=7)
    b = generate(G, 60, seed=3, batch_size=500)
    assert a.dtype == np.uint8 and a.shape == (60, 1, 28, 28)
    np.testing.assert_array_equal(a, b)
    assert len(np.unique(a.reshape(60, -1), axis=0)) == 60  # and they are 60 different images
    # image i is image i of the run, whatever slice is asked for: seed s + i
    np.testing.assert_array_equal(generate(G, 10, seed=3 + 50, batch_size=4), a[50:])


def test_latents_are_one_seed_per_image():
    z = latents(5, 4, 16)
    for i in range(4):
        torch.testing.assert_close(z[i], torch.randn(16, generator=torch.Generator().manual_seed(5 + i)))


def test_truncation_bounds_every_entry_and_keeps_the_rest():
    plain, cut = latent(11, 512), latent(11, 512, truncation=0.5)
    assert cut.abs().max() <= 0.5 and plain.abs().max() > 0.5
    keep = plain.abs() <= 0.5
    torch.testing.assert_close(cut[keep], plain[keep])  # only the entries above the threshold are redrawn
    torch.testing.assert_close(latent(11, 512, truncation=0.5), cut)  # deterministic


def test_grid_layout():
    images = np.arange(5 * 3 * 4 * 4, dtype=np.uint8).reshape(5, 3, 4, 4)
    grid = make_grid(images, nrow=3, pad=1)  # 2 rows of 3 (one empty cell)
    assert grid.shape == (2 * 5 + 1, 3 * 5 + 1, 3)
    np.testing.assert_array_equal(grid[6:10, 6:10], images[4].transpose(1, 2, 0))
    assert make_grid(images[:, :1]).shape == (2 * 6 + 2, 3 * 6 + 2)  # grayscale: [H, W], square-ish


@pytest.fixture(params=[("dcgan", False), ("resnet", True)], ids=["dcgan", "resnet-sn"])
def trained_run(request, tmp_path, monkeypatch, store):
    """A generator file (each architecture; spectral norm on G for the ResNet) and an MLflow run recorded in
    results/train/run.json, as train leaves them."""
    from ganforge.tracking.store import Run

    env = store
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    arch, sn = request.param
    G = untrained_generator(arch=arch, spectral_norm=sn)
    save_generator(tmp_path / "models/generator.pt", G, {"weights": "G", "kimg": 0})
    run = Run.start("test-sample", {"train": {"kimg": 0}}, root=tmp_path)
    run.write_json(tmp_path / "results/train/run.json")
    run.finish()
    copy_params(tmp_path / "params.yaml")
    set_params(tmp_path / "params.yaml", {"evaluate.n": 30, "sample.batch_size": 8, "sample.device": "cpu",
                                          "base.seed": 4})
    return tmp_path, env, run.run_id


def test_sample_stage_writes_images_and_grid_and_logs_the_grid(trained_run):
    cwd, env, run_id = trained_run
    proc = run_stage("sample", cwd=cwd, env=env)
    assert proc.returncode == 0, proc.stderr
    images = load_images(cwd / "samples/images.npz")
    assert images.shape == (30, 1, 28, 28) and images.dtype == np.uint8
    from ganforge.nets import load_generator

    G, _ = load_generator(cwd / "models/generator.pt")
    np.testing.assert_array_equal(images, generate(G, 30, seed=4, batch_size=30))  # base.seed + i
    grid = np.asarray(Image.open(cwd / "samples/grid.png"))
    assert grid.shape == (5 * 30 + 2, 6 * 30 + 2)  # 30 images: 5 rows of 6 cells of 28 + 2 px
    logged = [a.path for a in MlflowClient(env["MLFLOW_TRACKING_URI"]).list_artifacts(run_id)]
    assert "samples_final.png" in logged


def test_sample_stage_errors_are_one_line(trained_run):
    cwd, env, _ = trained_run
    proc = run_stage("sample", "--model", "nope.pt", cwd=cwd, env=env)
    assert proc.returncode == 1 and proc.stderr == "error: file not found: nope.pt\n"
    assert not (cwd / "samples").exists()
    set_params(cwd / "params.yaml", {"sample.truncation": -1})
    proc = run_stage("sample", cwd=cwd, env=env)
    assert proc.returncode == 2 and "sample.truncation" in proc.stderr
    # w-space truncation needs a style-based G: this one is a DCGAN
    set_params(cwd / "params.yaml", {"sample.truncation": None, "sample.psi": 0.7})
    proc = run_stage("sample", cwd=cwd, env=env)
    assert proc.returncode == 2 and "sample.psi" in proc.stderr and "stylegan2" in proc.stderr, proc.stderr
    assert not (cwd / "samples").exists()
