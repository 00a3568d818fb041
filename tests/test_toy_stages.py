"""The toy 2-D data sets through the real stage CLIs: download -> evaluator (the mode table) -> train (the
MLP, GAN-Lab pictures) -> sample -> evaluate (mode counting), against a real MLflow store."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mlflow import MlflowClient
from PIL import Image

from conftest import copy_params, run_stage, set_params
from ganforge.data.prepared import load_info, load_split
from ganforge.metrics.modes import ModeTable

pytestmark = pytest.mark.slow  # five stage subprocesses (each imports torch; three import mlflow)

TINY = {"base.dataset": "ring8", "train.arch": "mlp", "train.device": "cpu", "train.batch_size": 64,
        "train.kimg": 1.28, "train.z_dim": 8, "train.g_channels": 32, "train.d_channels": 32,
        "train.log_every": 5, "train.image_every": 5, "train.ckpt_every": 10, "train.pack": 2,
        "train.mbstd_group": 4, "evaluate.n": 2500, "evaluate.device": "cpu", "sample.device": "cpu"}


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory, store) -> tuple:
    cwd = tmp_path_factory.mktemp("toy")
    copy_params(cwd / "params.yaml")
    set_params(cwd / "params.yaml", TINY)
    data = cwd / "data/ring8"
    procs = {"download": run_stage("download", "--out", str(data), cwd=cwd, env=store)}
    for stage in ("evaluator", "train", "sample", "evaluate"):
        args = () if stage == "sample" else ("--data", str(data))
        procs[stage] = run_stage(stage, *args, cwd=cwd, env=store)
        assert procs[stage].returncode == 0, (stage, procs[stage].stderr)
    return cwd, data, procs


def test_download_writes_points_and_the_mode_table(toy_run):
    _, data, procs = toy_run
    info = load_info(data, "ring8")
    x, y = load_split(data, "train")
    assert x.dtype == np.float32 and x.shape == (100_000, 2, 1, 1) and info["shape"] == [2, 1, 1]
    assert info["kind"] == "toy2d" and len(info["centres"]) == 8 and info["std"] == 0.02
    assert info["class_counts"]["train"] == np.bincount(y, minlength=8).tolist()
    assert "no download" in info["source"]


def test_evaluator_writes_the_mode_table_and_the_real_floor(toy_run):
    cwd, data, procs = toy_run
    t = ModeTable.load(cwd / "models/evaluator.pt")
    assert np.allclose(t.centres, load_info(data)["centres"]) and t.std == 0.02
    floor = json.loads((cwd / "results/evaluator/metrics.json").read_text())["floor"]
    assert floor["modes_covered"] == 8 and floor["high_quality"] > 0.99 and floor["n"] == 2500
    assert "mode table" in procs["evaluator"].stdout


def test_train_logs_plane_pictures_and_a_gif(toy_run, store):
    cwd, _, _ = toy_run
    gif = Image.open(cwd / "results/train/training.gif")
    assert gif.n_frames == 4  # 20 steps, a picture every 5
    assert Image.open(cwd / "results/train/samples.png").size == (256, 256)
    run_id = json.loads((cwd / "results/train/run.json").read_text())["run_id"]
    client = MlflowClient(store["MLFLOW_TRACKING_URI"])
    artifacts = [a.path for a in client.list_artifacts(run_id)]
    assert "training.gif" in artifacts
    assert any("decision_surface" in p for p in artifacts + [a.path for a in client.list_artifacts(
        run_id, "images")]), artifacts
    # the registered version says what its predictions are: coordinates, not uint8 images
    versions = [v for v in client.search_model_versions("name='ganforge-ring8'") if v.run_id == run_id]
    assert len(versions) == 1 and "float32 points" in versions[0].description, versions


def test_every_output_dvc_yaml_declares_is_written(toy_run):
    """`dvc repro` fails a stage whose declared out is missing: the image-only outputs (the interpolation
    strip and GIF) must exist for 2-D runs too (there: the latent walks drawn on the plane)."""
    import yaml

    from conftest import ROOT

    cwd, _, _ = toy_run
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    missing = []
    for name in ("download", "evaluator", "train", "sample", "evaluate"):
        for kind in ("outs", "plots", "metrics"):
            for entry in stages[name].get(kind, []):
                path = next(iter(entry)) if isinstance(entry, dict) else entry
                path = path.replace("${base.dataset}", "ring8")
                if not (cwd / path).exists() and not path.startswith("checkpoints"):
                    missing.append(f"{name}: {path}")
    assert not missing
    walk = Image.open(cwd / "results/train/interpolation.gif")
    assert walk.n_frames == 2 * 10 - 2  # 10 steps there and back
    strip = np.asarray(Image.open(cwd / "results/train/interpolation.png"))
    assert strip.shape == (256, 256, 3) and (strip == [200, 0, 160]).all(-1).any()  # the walks' points


def test_synthesize_on_toy_data_exits_2_pointing_at_evaluate(toy_run, store):
    cwd, data, _ = toy_run
    proc = run_stage("synthesize", "--data", str(data), cwd=cwd, env=store)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "base.dataset: ring8" in proc.stderr and "dvc repro evaluate" in proc.stderr


def test_sample_and_evaluate_count_modes(toy_run, store):
    cwd, _, procs = toy_run
    with np.load(cwd / "samples/images.npz") as z:
        points = z["images"]
    assert points.dtype == np.float32 and points.shape == (2500, 2, 1, 1)
    metrics = json.loads((cwd / "results/evaluate/metrics.json").read_text())
    assert set(metrics) == {"modes_covered", "modes_total", "high_quality", "mode_kl", "mode_min_count", "n",
                            "copy_share", "copy_z", "copies_flagged", "copy_threshold"}
    # a short MLP run draws points near the modes, not the train points themselves
    assert metrics["copies_flagged"] == 0 and (cwd / "results/evaluate/closest_pairs.png").stat().st_size
    assert metrics["modes_total"] == 8 and metrics["n"] == 2500 and 0 <= metrics["modes_covered"] <= 8
    hist = (cwd / "results/evaluate/class_hist.tsv").read_text().splitlines()
    assert hist[0] == "class\treal\tgenerated" and len(hist) == 9
    assert "modes covered" in procs["evaluate"].stdout


def test_a_cnn_on_toy_data_exits_2_naming_the_key(toy_run, store):
    cwd, data, _ = toy_run
    set_params(cwd / "params.yaml", {"train.arch": "dcgan"})
    try:
        proc = run_stage("train", "--data", str(data), cwd=cwd, env=store)
    finally:
        set_params(cwd / "params.yaml", {"train.arch": "mlp"})
    assert proc.returncode == 2
    assert "train.arch" in proc.stderr and "use mlp" in proc.stderr and "Traceback" not in proc.stderr


def test_a_pack_that_does_not_divide_the_batch_exits_2(toy_run, store):
    cwd, data, _ = toy_run
    set_params(cwd / "params.yaml", {"train.pack": 3})
    try:
        proc = run_stage("train", "--data", str(data), cwd=cwd, env=store)
    finally:
        set_params(cwd / "params.yaml", {"train.pack": 2})
    assert proc.returncode == 2
    assert "train.pack: 3 does not divide the 64 samples per process" in proc.stderr
    assert "Traceback" not in proc.stderr
