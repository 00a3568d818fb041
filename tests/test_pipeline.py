"""End to end: `dvc repro` of the whole pipeline in a fresh project, tiny params, real MNIST, CPU."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from mlflow import MlflowClient

from conftest import ROOT, dvc, make_project

STAGES = ("download", "evaluator", "train", "sample", "evaluate")
pytestmark = pytest.mark.skipif(not all((ROOT / "stages" / f"{s}.py").exists() for s in STAGES),
                                reason="needs every stage script (stages/train.py comes with training)")

# Tiny everywhere: one evaluator epoch (~97% accuracy), 20 training steps (an almost untrained G),
# 500 samples against a 500-image floor, KID on subsets of 100.
TINY = {
    "evaluator.device": "cpu", "evaluator.epochs": 1, "evaluator.batch_size": 512, "evaluator.floor_n": 500,
    "train.device": "cpu", "train.batch_size": 32, "train.kimg": 0.64, "train.z_dim": 16,
    "train.g_channels": 8, "train.d_channels": 8, "train.log_every": 5, "train.image_every": 10,
    "train.ckpt_every": 10,
    "sample.device": "cpu", "sample.n": 500, "sample.batch_size": 128,
    "evaluate.device": "cpu", "evaluate.kid_subsets": 10, "evaluate.kid_subset_size": 100,
}
KEYS = {"n", "fid", "fid_ratio", "kid_mean", "kid_std", "precision", "recall", "density", "coverage",
        "classifier_score", "class_kl", "classes_covered"}


def test_dvc_repro_runs_the_pipeline_and_reports_metrics(tmp_path):
    project = make_project(tmp_path / "project", TINY)
    env = {"OMP_NUM_THREADS": "1", "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}
    proc = dvc("repro", cwd=project, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    judge = json.loads((project / "results/evaluator/metrics.json").read_text())
    metrics = json.loads((project / "results/evaluate/metrics.json").read_text())
    assert set(metrics) == KEYS and metrics["n"] == 500 and judge["accuracy"] > 0.9
    assert metrics["fid_ratio"] > 3  # an almost untrained generator is far from the real-data floor
    assert (project / "samples/grid.png").stat().st_size > 0

    shown = dvc("metrics", "show", "--json", cwd=project, env=env)
    assert shown.returncode == 0, shown.stderr
    files = next(iter(json.loads(shown.stdout).values()))["data"]
    assert files["results/evaluate/metrics.json"]["data"] == pytest.approx(metrics)
    assert files["results/evaluator/metrics.json"]["data"]["floor"]["fid"] == judge["floor"]["fid"]

    # the training's MLflow run holds the sample grid and the metrics
    run_id = json.loads((project / "results/train/run.json").read_text())["run_id"]
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    assert client.get_run(run_id).data.metrics["fid_ratio"] == pytest.approx(metrics["fid_ratio"])
    assert "samples_final.png" in {a.path for a in client.list_artifacts(run_id)}

    report = subprocess.run([sys.executable, "-m", "ganforge.report"], cwd=project, capture_output=True,
                            text=True, env={"COLUMNS": "100", "PATH": "/usr/bin:/bin"})
    assert report.returncode == 0 and "fid_ratio" in report.stdout and "real floor" in report.stdout

    # nothing changed: nothing reruns
    status = dvc("status", cwd=project, env=env)
    assert "up to date" in status.stdout, status.stdout
