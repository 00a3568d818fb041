"""End to end: `dvc repro` of the whole pipeline in a fresh project, tiny params, real MNIST, CPU.

Also the promise of `dvc repro`: each stage's deps in dvc.yaml are exactly the modules it runs, traced with
Python's own import log during the real repro, and editing any module re-runs exactly its stages.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from conftest import dvc, make_project

pytestmark = pytest.mark.slow
STAGES = ("download", "evaluator", "train", "sample", "synthesize", "evaluate", "invert", "inpaint", "edit")

# Tiny everywhere: one evaluator epoch (~97% accuracy), 20 training steps (an almost untrained G),
# 500 samples against a 500-image floor, KID on subsets of 100.
TINY = {
    "evaluator.device": "cpu", "evaluator.epochs": 1, "evaluator.batch_size": 512,
    "train.device": "cpu", "train.batch_size": 32, "train.kimg": 0.64, "train.z_dim": 16,
    "train.g_channels": 8, "train.d_channels": 8, "train.log_every": 5, "train.image_every": 10,
    "train.ckpt_every": 10,
    "sample.device": "cpu", "sample.batch_size": 128,
    "evaluate.device": "cpu", "evaluate.n": 500, "evaluate.kid_subsets": 10, "evaluate.kid_subset_size": 100,
    "synthesize.device": "cpu", "synthesize.train_n": 500, "synthesize.test_n": 100, "synthesize.mix": False,
    "invert.device": "cpu",
}
KEYS = {"n", "fid", "fid_ratio", "kid_mean", "kid_std", "precision", "recall", "density", "coverage",
        "classifier_score", "class_kl", "classes_covered", "copy_share", "copy_z", "copies_flagged",
        "copy_threshold"}


def imported_files(log: str, src: Path) -> dict[str, set[str]]:
    """{stage: the ganforge source files it imported, relative to src/}, from a merged `dvc repro` output with
    PYTHONPROFILEIMPORTTIME=1: dvc announces each stage, then the stage's interpreter logs every import."""
    out: dict[str, set[str]] = {}
    stage = None
    for line in log.splitlines():
        if m := re.match(r"Running stage '(?:[\w/.-]+:)?([\w@-]+)'", line):
            stage = m.group(1)
            out[stage] = set()
        elif stage and (m := re.search(r"\|\s+(ganforge(?:\.\w+)*)\s*$", line)):
            path = src.joinpath(*m.group(1).split("."))
            out[stage].add(str((path / "__init__.py" if path.is_dir() else path.with_suffix(".py"))
                               .relative_to(src)))
    return out


def foreach_deps_mismatch(project: Path, pipeline: str, stages: dict[str, str], used: dict) -> list[str]:
    """One line per foreach stage of `pipeline` whose src/ deps differ from what its instance
    <stage>@<stages[stage]> imported (used: imported_files); empty when all agree."""
    declared_stages = yaml.safe_load((project / pipeline).read_text())["stages"]
    wrong = []
    for name, key in stages.items():
        deps = [project / d for d in declared_stages[name]["do"]["deps"] if d.startswith("src/")]
        declared = {str(f.relative_to(project / "src")) for d in deps
                    for f in (d.glob("*.py") if d.is_dir() else [d])}
        got = used[f"{name}@{key}"]
        if got != declared:
            wrong.append(f"{name}: missing {sorted(got - declared)}, not used {sorted(declared - got)}, "
                         f"imported {sorted(got)}")
    return wrong


def declared_files(project: Path) -> dict[str, set[str]]:
    """{stage: the files under src/ its dvc.yaml deps cover} (a directory covers its .py files)."""
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    src = project / "src"
    out = {}
    for name, stage in stages.items():
        deps = [src.parent / d for d in stage["deps"] if d.startswith("src/")]
        out[name] = {str(f.relative_to(src)) for d in deps for f in (d.glob("*.py") if d.is_dir() else [d])}
    return out


def test_dvc_repro_runs_the_pipeline_and_reports_metrics(tmp_path):
    project = make_project(tmp_path / "project", TINY)
    env = {"OMP_NUM_THREADS": "1", "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}
    proc = dvc("repro", cwd=project, env={**env, "PYTHONPROFILEIMPORTTIME": "1"}, merged=True)
    assert proc.returncode == 0, proc.stdout[-6000:]

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

    # nothing changed: nothing reruns (dvc.yaml: `dvc status` alone also reports the other pipelines, which
    # this test does not run)
    status = dvc("status", "dvc.yaml", cwd=project, env=env)
    assert "up to date" in status.stdout, status.stdout

    # deps: what each stage imported during the repro is exactly what dvc.yaml declares for it
    used = imported_files(proc.stdout, project / "src")
    assert set(used) == set(STAGES), sorted(used)
    declared = declared_files(project)
    for name in STAGES:
        assert used[name] == declared[name], (
            f"dvc.yaml deps of {name} differ from what it imports: missing "
            f"{sorted(used[name] - declared[name])}, not used {sorted(declared[name] - used[name])}")

    # and so editing a comment in a library module makes `dvc status` name exactly the stages using it: one
    # module for each distinct set of stages that import it (the deps check above covers the others; a
    # `dvc status` per module would cost two minutes)
    samples: dict[frozenset, str] = {}
    for module in sorted((project / "src").rglob("*.py")):
        rel = str(module.relative_to(project / "src"))
        samples.setdefault(frozenset(s for s in STAGES if rel in used[s]), rel)
    assert len(samples) > 5  # stages share some modules and not others
    for users, rel in samples.items():
        module = project / "src" / rel
        text = module.read_text()
        module.write_text(text + "# an edited comment\n")
        try:
            status = dvc("status", "--json", "dvc.yaml", cwd=project, env=env)
        finally:
            module.write_text(text)
        named = set(json.loads(status.stdout or "{}"))
        assert named == users, (rel, named)
