"""Team use end to end, on the real pipeline with tiny params, against a real `mlflow server`.

One server and one project for the module, used in order (tests share state on purpose, each builds on
the last: pytest runs them in file order):
  1. scripts/retrain.sh in a fresh project with a local DVC remote: the whole pipeline, one MLflow run
     with everything in it, version 1 registered and champion;
  2. a fresh clone of that commit: retrain.sh trains nothing (cache) and reports no diff; a params change
     retrains, the report shows the metric diff, and the champion is the better of the two versions
     (tests/test_team.py and tests/test_registry.py load a champion in a fresh process);
  3. `dvc exp run --queue` x2 and `dvc queue start -j 2`: every experiment gets its own run, none lost, no
     "database is locked".
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_team import make_server

from conftest import ONE_THREAD, ROOT, dvc, make_project, set_params

pytestmark = pytest.mark.slow  # whole pipelines against a real server
# retrain runs `dvc repro`: every stage
STAGES = ("download", "evaluator", "train", "sample", "evaluate", "synthesize", "invert", "inpaint", "edit")

# Every stage at toy size: the point is the plumbing (DVC, MLflow server, registry), not the quality.
TINY = {
    "evaluator.epochs": 1, "evaluator.device": "cpu",
    "train.device": "cpu", "train.batch_size": 32, "train.kimg": 0.32, "train.z_dim": 16,
    "train.g_channels": 8, "train.d_channels": 8, "train.log_every": 2, "train.image_every": 4,
    "train.ckpt_every": 5,
    "sample.batch_size": 250, "sample.device": "cpu",
    "evaluate.device": "cpu", "evaluate.n": 500, "evaluate.kid_subsets": 10, "evaluate.kid_subset_size": 100,
    "synthesize.device": "cpu", "synthesize.train_n": 500, "synthesize.test_n": 100, "synthesize.mix": False,
}
QUEUED_LRS = ("0.0001", "0.0005")  # two at once with -j 2: concurrent writes to the server


def git(*args, cwd):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                   capture_output=True)


def retrain(cwd: Path, env: dict) -> tuple[subprocess.CompletedProcess, str]:
    bindir = str(Path(sys.executable).parent)
    proc = subprocess.run(["scripts/retrain.sh"], cwd=cwd, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PATH": bindir + os.pathsep + os.environ["PATH"],
                               "RETRAIN_SETUP": "false", **env})
    report = cwd / "results" / "retrain" / "report.md"
    return proc, report.read_text() if report.exists() else ""


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    base = tmp_path_factory.mktemp("team-e2e")
    (base / "store").mkdir()
    with make_server(base / "store") as url:
        from mlflow import MlflowClient

        project = make_project(base / "p", TINY)
        shutil.copytree(ROOT / "scripts", project / "scripts")
        assert dvc("remote", "add", "-d", "shared", str(base / "remote"), cwd=project).returncode == 0
        git("add", "-A", cwd=project)
        git("commit", "-qm", "project with a remote", cwd=project)
        env = {"MLFLOW_TRACKING_URI": url, **ONE_THREAD}
        yield {"base": base, "url": url, "project": project, "env": env, "client": MlflowClient(url)}


def stages_run(report: str) -> set[str]:
    line = re.search(r"^Stages run: (.*)\.$", report, re.M).group(1)
    return set() if line.startswith("none") else set(line.split(", "))


def runs_of(team) -> list:
    c = team["client"]
    exp = c.get_experiment_by_name("ganforge")
    return [] if exp is None else c.search_runs([exp.experiment_id])


def test_retrain_runs_the_pipeline_into_the_server(team):
    proc, report = retrain(team["project"], team["env"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert stages_run(report) == set(STAGES), report
    (run,) = runs_of(team)
    c = team["client"]
    assert run.data.params["train.kimg"] == "0.32" and run.data.params["base.dataset"] == "mnist"
    assert len(c.get_metric_history(run.info.run_id, "loss_d")) > 1
    # per-step fixed-z grids (mlflow.log_image with key and step) and the final sample grid
    images = [f.path for f in c.list_artifacts(run.info.run_id, "images")]
    steps = {m.group(1) for p in images if (m := re.search(r"samples_fixed_z[+%]step[+%](\d+)", p))}
    assert len(steps) > 1, images
    names = [f.path for f in c.list_artifacts(run.info.run_id)]
    assert "samples_final.png" in names, names  # the sample stage's grid
    metrics = json.loads((team["project"] / "results/evaluate/metrics.json").read_text())
    assert run.data.metrics["fid_ratio"] == pytest.approx(metrics["fid_ratio"])
    assert run.data.metrics["fid_ratio"] > 1  # 10 steps of training: far from the real-data floor
    # registry: version 1, from this run, champion (there was none)
    assert "registry.version" in run.data.tags, \
        "no model version: stages/train.py must call serving.log_generator_model(run, model, dataset)"
    mv = c.get_model_version_by_alias("ganforge-mnist", "champion")
    assert int(mv.version) == 1 and mv.run_id == run.info.run_id
    assert run.data.tags["registry.decision"] == "promoted"
    assert any((team["base"] / "remote").rglob("*"))  # pushed


def test_fresh_clone_hits_the_cache_then_a_params_change_retrains(team):
    project, env = team["project"], team["env"]
    git("add", "dvc.lock", cwd=project)
    git("commit", "-qm", "retrained", cwd=project)
    clone = team["base"] / "clone"
    git("clone", "-q", str(project), str(clone), cwd=team["base"])

    proc, report = retrain(clone, env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # every output came from the remote; outputs declared `cache: false` in dvc.yaml cannot (not in git)
    assert stages_run(report) == set(), f"stages re-ran in a fresh clone (cache: false outputs?):\n{report}"
    assert "No metric changed." in report and "No param changed." in report
    assert len(runs_of(team)) == 1

    set_params(clone / "params.yaml", {"train.g.lr": 0.001})
    proc, report = retrain(clone, env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert stages_run(report) == set(STAGES) - {"download", "evaluator"}, report  # all that follow train
    assert re.search(r"\| params.yaml +\| train.g.lr +\| 0.0002 +\| 0.001 ", report), report
    row = re.search(r"\| results/evaluate/metrics.json +\| fid_ratio +\| ([\d.]+) +\| ([\d.]+) ", report)
    assert row and row.group(1) != row.group(2), report  # the base's value and the new one
    runs = runs_of(team)
    assert len(runs) == 2
    ratio = {int(r.data.tags["registry.version"]): r.data.metrics["fid_ratio"] for r in runs}
    best = min(ratio, key=ratio.get)
    champion = team["client"].get_model_version_by_alias("ganforge-mnist", "champion")
    assert int(champion.version) == best  # a worse retrain left the alias where it was


def test_queued_experiments_each_get_a_run(team):
    project, env = team["project"], team["env"]
    before = {r.info.run_id for r in runs_of(team)}
    names = []
    for lr in QUEUED_LRS:
        # up to evaluate (its fid_ratio decides the champion): synthesize and the prior stages would only add
        # minutes to what this test is about, concurrent runs on one server
        proc = dvc("exp", "run", "--queue", "-S", f"train.g.lr={lr}", "evaluate", cwd=project, env=env)
        assert proc.returncode == 0, proc.stderr
        names.append(re.search(r"Queued experiment '([^']+)'", proc.stdout).group(1))
    proc = dvc("queue", "start", "-j", "2", cwd=project, env=env)
    assert proc.returncode == 0, proc.stderr
    deadline = time.monotonic() + 600
    while True:
        status = dvc("queue", "status", cwd=project, env=env).stdout
        if not re.search(r"\b(Queued|Running)\b", status) or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert all(re.search(rf"{n}\s+\S+ \S+\s+Success", status) for n in names), status
    logs = "".join(dvc("queue", "logs", n, cwd=project, env=env).stdout for n in names)
    server_log = (team["base"] / "store" / "mlflow-server.log").read_text()
    assert "database is locked" not in logs + server_log

    new = [r for r in runs_of(team) if r.info.run_id not in before]
    by_exp = {r.data.tags.get("dvc_exp_name"): r for r in new}
    assert len(new) == len(QUEUED_LRS) and set(by_exp) == set(names)
    for name, lr in zip(names, QUEUED_LRS, strict=True):
        run = by_exp[name]
        assert run.info.status == "FINISHED" and run.data.params["train.g.lr"] == lr
        assert "fid_ratio" in run.data.metrics and run.data.tags["registry.decision"] in ("promoted", "kept")
    # with parallel evaluations the champion is still the best version of all
    versions = team["client"].search_model_versions("name='ganforge-mnist'")
    ratio = {int(v.version): float(v.tags["fid_ratio"]) for v in versions}
    champion = team["client"].get_model_version_by_alias("ganforge-mnist", "champion")
    # (ties keep the earlier champion: only a strictly better fid_ratio moves the alias)
    assert len(ratio) == 2 + len(QUEUED_LRS) and ratio[int(champion.version)] == min(ratio.values())
    assert int(champion.version) == min(v for v, r in ratio.items() if r == min(ratio.values()))
