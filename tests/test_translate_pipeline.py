"""The translation pipeline through the real `dvc repro pipelines/translate/dvc.yaml` in a fresh project:
real Animal-MNIST horses and zebras (from the download cache), their judge the classifier of all 10
Animal-MNIST classes, one tiny CycleGAN, CPU. Its stages' deps are exactly the modules they import (traced
as tests/test_pipeline.py traces the generation pipeline's), and a plain `dvc repro` does not run them."""

from __future__ import annotations

import json

import pytest
import yaml
from test_pipeline import foreach_deps_mismatch, imported_files

from conftest import dvc, make_project

pytestmark = pytest.mark.slow
PIPELINE = "pipelines/translate/dvc.yaml"
STAGES = {"download": "horse-zebra", "judge": "horse-zebra", "train": "hz", "translate": "hz",
          "evaluate": "hz"}


def test_dvc_repro_of_the_translate_pipeline(tmp_path):
    project = make_project(tmp_path / "project")
    params = yaml.safe_load((project / "params.yaml").read_text())
    t = params["translate"]
    t.update({"device": "cpu", "log_every": 2, "image_every": 4, "ckpt_every": 4})
    t["sets"] = {"horse-zebra": {**t["sets"]["horse-zebra"], "test_n": 50,
                                 "judge": {**t["sets"]["horse-zebra"]["judge"], "epochs": 1}}}
    t["models"] = {"hz": {**t["models"]["horse-zebra-cyclegan"], "g_width": 4, "g_blocks": 1, "d_width": 4,
                          "batch_size": 4, "kimg": 0.032}}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {"OMP_NUM_THREADS": "1", "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}

    plain = dvc("stage", "list", "--name-only", cwd=project, env=env)  # the generation pipeline alone
    assert plain.returncode == 0 and "train" in plain.stdout.split() and "@" not in plain.stdout, plain.stdout

    proc = dvc("repro", PIPELINE, cwd=project, env={**env, "PYTHONPROFILEIMPORTTIME": "1"}, merged=True)
    assert proc.returncode == 0, proc.stdout[-6000:]
    metrics = json.loads((project / "results/translate/hz/evaluate/metrics.json").read_text())
    assert metrics["ab"]["source"] == "horse" and metrics["ab"]["images"] == 50
    assert set(metrics["ab"]["cyclegan"]) == {"fid", "fid_ratio", "reads_as_target", "cycle_psnr"}
    judge = json.loads((project / "results/translate/horse-zebra/judge/metrics.json").read_text())
    assert judge["b"]["trained_on"] == "animal-mnist" and judge["b"]["accuracy"] > 0.5
    shown = dvc("metrics", "show", "--json", cwd=project, env=env)
    assert shown.returncode == 0, shown.stderr
    files = next(iter(json.loads(shown.stdout).values()))["data"]
    assert files["results/translate/hz/evaluate/metrics.json"]["data"]["ab"] == metrics["ab"]
    status = dvc("status", PIPELINE, cwd=project, env=env)
    assert "up to date" in status.stdout, status.stdout

    used = imported_files(proc.stdout, project / "src")
    assert set(used) == {f"{s}@{k}" for s, k in STAGES.items()}, sorted(used)
    wrong = foreach_deps_mismatch(project, PIPELINE, STAGES, used)
    assert not wrong, f"{PIPELINE} deps differ from what the stages import:\n" + "\n".join(wrong)
