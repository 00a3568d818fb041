"""The super-resolution pipeline through the real `dvc repro pipelines/superres/dvc.yaml` in a fresh project:
real photographs (the photos data set, from the download cache), one tiny set, CPU. Its stages' deps are
exactly the modules they import (traced as tests/test_pipeline.py traces the generation pipeline's), and
the generation pipeline's plain `dvc repro` does not run them."""

from __future__ import annotations

import json

import pytest
import yaml
from test_pipeline import foreach_deps_mismatch, imported_files

from conftest import dvc, make_project

pytestmark = pytest.mark.slow
PIPELINE = "pipelines/superres/dvc.yaml"
SR_STAGES = ("download", "judge", "psnr", "gan", "upscale", "evaluate")
TINY_SR = {"device": "cpu", "log_every": 2, "image_every": 4, "ckpt_every": 4}
TINY_SET = {"judge": {"n": 256, "batch_size": 64, "crop": 32, "self_supervised": {"epochs": 1}}, "crop": 32,
            "blocks": 1, "width": 8, "psnr": {"kimg": 0.064, "batch_size": 8},
            "gan": {"kimg": 0.032, "batch_size": 8, "d_channels": 8}, "test_n": 2}


def deep(base: dict, over: dict) -> dict:
    """base with the keys of over laid into it, mapping by mapping."""
    return {k: deep(v, over[k]) if isinstance(v, dict) and k in over else over.get(k, v)
            for k, v in base.items()}


def test_dvc_repro_of_the_superres_pipeline(tmp_path):
    project = make_project(tmp_path / "project")
    params = yaml.safe_load((project / "params.yaml").read_text())
    sr = params["superres"]
    sr.update(TINY_SR)
    sr["sets"] = {"photos": deep(sr["sets"]["photos"], TINY_SET)}  # one set: the photos
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {"OMP_NUM_THREADS": "1", "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}

    # a plain `dvc repro` (dvc.yaml by default, as `dvc stage list`) is the generation pipeline alone
    plain = dvc("stage", "list", "--name-only", cwd=project, env=env)
    assert plain.returncode == 0 and "train" in plain.stdout.split() and "@" not in plain.stdout, plain.stdout

    proc = dvc("repro", PIPELINE, cwd=project, env={**env, "PYTHONPROFILEIMPORTTIME": "1"}, merged=True)
    assert proc.returncode == 0, proc.stdout[-6000:]
    metrics = json.loads((project / "results/superres/photos/evaluate/metrics.json").read_text())
    assert metrics["images"] == 2 and set(metrics) >= {"bicubic", "psnr", "gan", "floor_fid"}
    shown = dvc("metrics", "show", "--json", cwd=project, env=env)  # every pipeline's metrics
    assert shown.returncode == 0, shown.stderr
    files = next(iter(json.loads(shown.stdout).values()))["data"]
    assert files["results/superres/photos/evaluate/metrics.json"]["data"]["psnr"] == metrics["psnr"]
    status = dvc("status", PIPELINE, cwd=project, env=env)
    assert "up to date" in status.stdout, status.stdout

    used = imported_files(proc.stdout, project / "src")
    assert set(used) == {f"{s}@photos" for s in SR_STAGES}, sorted(used)
    wrong = foreach_deps_mismatch(project, PIPELINE, dict.fromkeys(SR_STAGES, "photos"), used)
    assert not wrong, f"{PIPELINE} deps differ from what the stages import:\n" + "\n".join(wrong)
