"""Issue 34, the CI findings: scripts/retrain.sh and the workflows on the toy DVC project of test_workflow.py.

(3)  pull and push (the steps that hold the remote's keys) run dvc from .venv-dvc, a venv built from
     hash-locked requirements before the project's own install; no step of the project's venv sees the keys.
(11) overrides with a control character (a newline would drop what follows) or a non-ASCII letter or digit
     are refused under any locale, and the words that passed are printed.
(13) a value that is `..`, holds `..` or starts with `.` (a path out of the project, a hidden folder) is
     refused, numbers such as .0001 are not.
(14) the reproduce log (an uploaded artifact) masks the tracking URI and any user:password@; the git token
     of exp-push is removed from .git/config on every exit, a failed push included.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import test_workflow
import yaml
from test_workflow import SWEEP, TOY_STAGE, VENV_BIN, git, retrain, run, stand_in_dvc_venv

from conftest import ROOT, dvc

pytestmark = pytest.mark.slow  # retrains through dvc
toy = test_workflow.toy  # the fixture: a git + DVC project, one stage, a local remote, a stand-in .venv-dvc
REAL_DVC = Path(VENV_BIN) / "dvc"


def executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


# --- (3) the dvc venv ---------------------------------------------------------------------------------------
ENV_PROBE = ('"$* | AWS=${AWS_SECRET_ACCESS_KEY:-unset} MLFLOW=${MLFLOW_TRACKING_PASSWORD:-unset}'
             ' TOKEN=${GITHUB_TOKEN:-unset}')


def test_pull_and_push_run_from_the_dvc_venv_and_no_project_step_sees_the_remote_keys(toy):
    log = toy / "calls.log"
    # the project's venv (.venv) and the dvc venv (.venv-dvc), each a wrapper that logs what it sees
    executable(toy / ".venv" / "bin" / "dvc",
               f'#!/bin/sh\necho {ENV_PROBE}" | sed "s/^/project dvc /" >> "{log}"\nexec "{REAL_DVC}" "$@"\n')
    stand_in_dvc_venv(toy, wrapper=(
        'case ":$PATH:" in *":$PWD/.venv/bin:"*) v=on-PATH ;; *) v=off-PATH ;; esac\n'
        f'echo {ENV_PROBE} .venv=$v" | sed "s/^/dvc-venv dvc /" >> "{log}"'))
    (toy / ".gitignore").write_text("/results/\n/.venv/\n/calls.log\n")
    # the stage (the project's code) reports what it sees too
    (toy / "toy.py").write_text(
        "import os\n"
        f"open({str(log)!r}, 'a').write('stage | AWS=' + os.environ.get('AWS_SECRET_ACCESS_KEY', 'unset')"
        " + ' MLFLOW=' + os.environ.get('MLFLOW_TRACKING_PASSWORD', 'unset')"
        " + ' TOKEN=' + os.environ.get('GITHUB_TOKEN', 'unset') + '\\n')\n"
        + TOY_STAGE)
    git("add", "-A", cwd=toy)
    git("commit", "-qm", "probes", cwd=toy)

    # `make retrain` locally: one process with every secret in its environment
    proc, report = retrain(toy, AWS_SECRET_ACCESS_KEY="remote-key-123",
                           MLFLOW_TRACKING_PASSWORD="tracking-pw", GITHUB_TOKEN="git-token-1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Stages run: toy." in report
    calls = log.read_text().splitlines()
    by_dvc_venv = [c for c in calls if c.startswith("dvc-venv dvc ")]
    assert any(c.startswith("dvc-venv dvc pull --run-cache --allow-missing | AWS=remote-key-123 ")
               for c in by_dvc_venv), calls
    assert any(c.startswith("dvc-venv dvc push --run-cache | AWS=remote-key-123 ")
               for c in by_dvc_venv), calls
    # the dvc venv gets the remote's keys only, and nothing of the project's venv on PATH
    assert all("MLFLOW=unset TOKEN=unset .venv=off-PATH" in c for c in by_dvc_venv), by_dvc_venv
    project = [c for c in calls if c.startswith(("project dvc ", "stage "))]
    assert any(c.startswith(("project dvc exp run", "project dvc repro")) for c in project), calls
    assert any(c.startswith("stage ") for c in project), calls
    # the project's venv and its code never get the remote's keys, nor run pull or push
    assert all("AWS=unset" in c and "TOKEN=unset" in c for c in project), project
    assert not [c for c in project if re.match(r"project dvc (pull|push|fetch|exp push)\b", c)], project
    # only reproducing (dvc repro and the stage it runs) gets the tracking server's password
    reproducing = ("project dvc repro", "project dvc exp run", "stage ")
    assert all(c.startswith(reproducing) for c in calls if "MLFLOW=tracking-pw" in c), calls
    assert all("MLFLOW=tracking-pw" in c for c in project if c.startswith(reproducing)), calls


def test_setup_builds_the_dvc_venv_from_hashes_before_the_projects_install(toy, tmp_path):
    """`scripts/retrain.sh setup` with stand-ins for python3 (venv + pip) and make, which log their calls."""
    shutil.rmtree(toy / ".venv-dvc")
    log, fake = tmp_path / "calls.log", tmp_path / "fake-bin"
    executable(fake / "make", f'#!/bin/sh\necho "make $*" >> "{log}"\n')
    # python3 -m venv DIR: a venv whose python logs `-m pip install ...` and, for the lock of dvc, adds dvc
    executable(fake / "python3", f"""#!/bin/sh
[ "$1 $2" = "-m venv" ] || {{ echo "unexpected python3 $*" >> "{log}"; exit 1; }}
echo "python3 -m venv $3" >> "{log}"
mkdir -p "$3/bin"
cat > "$3/bin/python" <<'EOF'
#!/bin/sh
echo "venv-python $*" >> "{log}"
case "$*" in *-r\\ scripts/dvc-requirements.txt*)
    printf '#!/bin/sh\\nexec "{REAL_DVC}" "$@"\\n' > "$(dirname "$0")/dvc"
    chmod +x "$(dirname "$0")/dvc" ;; esac
EOF
chmod +x "$3/bin/python"
""")
    env = {"RETRAIN_SETUP": "true", "PATH": f"{fake}:{VENV_BIN}:/usr/bin:/bin"}
    proc = run(["scripts/retrain.sh", "setup"], cwd=toy, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == "python3 -m venv .venv-dvc", calls
    build, lock = calls[1:3]
    assert build.startswith("venv-python -m pip install") and "--require-hashes" in build.split()
    assert build.endswith("-r scripts/dvc-build-requirements.txt"), build
    assert {"--require-hashes", "--no-build-isolation"} <= set(lock.split()), lock
    assert lock.endswith("-r scripts/dvc-requirements.txt"), lock
    assert calls[3:] == ["make install"], calls  # the project's own install comes after
    # never committed, whatever the project's .gitignore says
    assert (toy / ".venv-dvc" / ".gitignore").read_text() == "*\n"

    # built once: the next set-up finds it matching the lock files and only installs the project
    log.unlink()
    proc = run(["scripts/retrain.sh", "setup"], cwd=toy, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert log.read_text().splitlines() == ["make install"]
    # a moved lock rebuilds it
    log.unlink()
    with open(toy / "scripts" / "dvc-requirements.txt", "a") as f:
        f.write("# moved\n")
    proc = run(["scripts/retrain.sh", "setup"], cwd=toy, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert log.read_text().splitlines()[0] == "python3 -m venv .venv-dvc"


def test_without_the_dvc_venv_only_a_plain_directory_remote_is_served_and_with_no_secret(toy, tmp_path):
    """RETRAIN_SETUP=false skips building .venv-dvc: then a remote that takes credentials stops pull and
    push, and a directory remote (no credentials) is served by the project's dvc with every secret unset."""
    shutil.rmtree(toy / ".venv-dvc")
    log = tmp_path / "calls.log"
    executable(toy / ".venv" / "bin" / "dvc",
               f'#!/bin/sh\necho {ENV_PROBE}" >> "{log}"\nexec "{REAL_DVC}" "$@"\n')
    secrets = {"AWS_SECRET_ACCESS_KEY": "remote-key-123", "GITHUB_TOKEN": "git-token-1"}
    for mode in ("pull", "push"):
        proc = run(["scripts/retrain.sh", mode], cwd=toy, env=secrets)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = log.read_text().splitlines()
    assert any(c.startswith("pull ") for c in calls) and any(c.startswith("push ") for c in calls), calls
    assert all("AWS=unset" in c and "TOKEN=unset" in c for c in calls), calls
    # exp-push with the git token, and any remote with a URL (keys), need the dvc venv
    proc = run(["scripts/retrain.sh", "exp-push"], cwd=toy, env={**secrets, "RETRAIN_EXP_NAME": "sweep-1-a"})
    assert proc.returncode == 2 and "scripts/retrain.sh setup" in proc.stderr, proc.stderr
    assert run(["dvc", "remote", "add", "bucket", "s3://bucket/ganforge"], cwd=toy).returncode == 0
    log.unlink()
    proc = run(["scripts/retrain.sh", "pull"], cwd=toy, env=secrets)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "remote 'bucket' (s3://bucket/ganforge) is reached only from .venv-dvc" in proc.stderr
    assert "scripts/retrain.sh setup" in proc.stderr
    assert "AWS=remote-key-123" not in log.read_text()


def requirements(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, sha256 hashes) of a hash-locked requirements file; each entry name==version."""
    entries, text = {}, re.sub(r"\\\n", " ", path.read_text())
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)(\s*;[^-]*)?"
                         r"((\s+--hash=sha256:[0-9a-f]{64})+)", line)
        assert m, f"{path.name}: not name==version ; markers --hash=sha256:...: {line[:120]}"
        entries[m[1].lower()] = (m[2], re.findall(r"sha256:([0-9a-f]{64})", m[4]))
    return entries


def test_dvc_requirements_are_hash_locked_at_the_projects_versions():
    lock = requirements(ROOT / "scripts" / "dvc-requirements.txt")
    build = requirements(ROOT / "scripts" / "dvc-build-requirements.txt")
    assert lock["dvc"][0] == "3.67.1" and lock["dvc-s3"][0] == "3.3.0"
    # a closure, not just the two: what they import is pinned too (pip --require-hashes refuses gaps anyway)
    assert {"dvc-data", "dvc-objects", "s3fs", "aiobotocore", "botocore", "scmrepo", "dulwich"} <= set(lock)
    assert build.keys() == {"setuptools"} and build["setuptools"][0] == lock["setuptools"][0]
    # the plugin version that set-up expects for an s3:// remote is the locked one
    script = (ROOT / "scripts" / "retrain.sh").read_text()
    assert re.search(r"s3://\*\) echo dvc-s3==(\S+) ;;", script)[1] == lock["dvc-s3"][0]


def test_workflows_run_setup_first_and_give_the_remote_keys_only_to_the_dvc_venv_steps():
    for wf_path in (ROOT / ".github" / "workflows" / "retrain.yml", SWEEP):
        wf = yaml.safe_load(wf_path.read_text())
        for job in wf["jobs"].values():
            runs = [s.get("run", "") for s in job["steps"]]
            if not any("scripts/retrain.sh" in r for r in runs):
                continue
            assert next(r for r in runs if r).strip() == "scripts/retrain.sh setup"  # the first thing run
            for step in job["steps"]:
                keys = {k for k in step.get("env", {}) if k.startswith("AWS_")}
                mode = step.get("run", "").strip().removeprefix("scripts/retrain.sh ")
                assert not keys or mode in ("pull", "push", "exp-push"), (wf_path.name, step)


# --- (11) control characters, non-ASCII letters and digits; the checked words are printed ------------------
@pytest.fixture(scope="module")
def utf8_locale(tmp_path_factory):
    """en_US.UTF-8, where bash's [A-Za-z0-9] matches é and full-width digits, built into a temporary folder
    when the system does not have it; else C.UTF-8 (the check must hold there too)."""
    env = {"LC_ALL": "en_US.UTF-8"}
    probe = 'LC_ALL=en_US.UTF-8; [[ "é" =~ ^[a-z]$ ]]'
    if subprocess.run(["bash", "-c", probe], env=env, capture_output=True).returncode == 0:
        return env
    if shutil.which("localedef"):
        loc = tmp_path_factory.mktemp("locale")
        subprocess.run(["localedef", "-i", "en_US", "-f", "UTF-8", str(loc / "en_US.UTF-8")],
                       capture_output=True)
        env = {"LOCPATH": str(loc), "LC_ALL": "en_US.UTF-8"}
        if subprocess.run(["bash", "-c", probe], env=env, capture_output=True).returncode == 0:
            return env
    return {"LC_ALL": "C.UTF-8"}


def setup_with(toy, overrides: str, **env) -> subprocess.CompletedProcess:
    return run(["scripts/retrain.sh", "setup"], cwd=toy,
               env={"RETRAIN_SETUP": "false", "RETRAIN_OVERRIDES": overrides, **env})


@pytest.mark.parametrize("overrides", [
    "x=2\ntrain.lr=${oc.env:AWS_SECRET_ACCESS_KEY}",  # a newline: read used to keep the first line only
    "x=2\rtrain.lr=1", "x=2\ttrain.lr=1", "x=2\x1b[2Ktrain.lr=1", "x=2\x7f",
], ids=["newline", "carriage-return", "tab", "escape", "delete"])
def test_overrides_with_a_control_character_are_refused(toy, overrides):
    proc = setup_with(toy, overrides)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "error: RETRAIN_OVERRIDES holds a control character" in proc.stderr, proc.stderr


@pytest.mark.parametrize("word", ["train.lr=é", "x=１２", "x=²", "tráin.lr=1"],
                         ids=["accented", "full-width-digits", "superscript", "accented-key"])
def test_non_ascii_overrides_are_refused_under_a_utf8_locale(toy, utf8_locale, word):
    proc = setup_with(toy, f"x=2 {word}", **utf8_locale)
    assert proc.returncode == 2, (utf8_locale, proc.stdout + proc.stderr)
    assert f"error: override '{word}' is not setting=value" in proc.stderr, proc.stderr


def test_a_non_ascii_experiment_name_is_refused_under_a_utf8_locale(toy, utf8_locale):
    proc = setup_with(toy, "x=2", RETRAIN_EXP_NAME="sweep-é", **utf8_locale)
    assert proc.returncode == 2 and "RETRAIN_EXP_NAME 'sweep-é' is not a name" in proc.stderr, proc.stderr


def test_the_checked_overrides_are_printed(toy):
    proc = setup_with(toy, "x=2   train.lr=0.0001")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "overrides, checked (2): x=2 train.lr=0.0001" in proc.stderr, proc.stderr


# --- (13) paths out of the project --------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["..", "...", ".git", ".venv", "a..b", ".hidden"])
def test_path_values_that_leave_the_project_or_name_hidden_files_are_refused(toy, value):
    with open(toy / "params.yaml", "a") as f:
        f.write("download:\n  folder:\n    path: null\n")
    proc = setup_with(toy, f"download.folder.path={value}")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"error: override 'download.folder.path={value}'" in proc.stderr, proc.stderr
    assert "'.'" in proc.stderr, proc.stderr  # the message says why


def test_numbers_with_a_leading_point_and_plain_relative_paths_still_pass(toy):
    with open(toy / "params.yaml", "a") as f:
        f.write("download:\n  folder:\n    path: null\n")
    proc = setup_with(toy, "train.lr=.0001 download.folder.path=data.v2 x=1.5e-3 x=-.5")
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- (14) the log artifact and the git token ----------------------------------------------------------------
def test_the_reproduce_log_masks_the_tracking_uri_and_credentials_in_urls(toy):
    uri = "https://ci-bot:hunter2-pw@mlflow.example.internal:5000"
    (toy / "toy.py").write_text(
        "import os\n"
        "print('tracking to', os.environ['MLFLOW_TRACKING_URI'], flush=True)\n"
        "print('mirror https://someone:tok3n-xyz@data.example.org/x.tar and password', "
        "os.environ['MLFLOW_TRACKING_PASSWORD'], flush=True)\n"
        + TOY_STAGE)
    git("add", "-A", cwd=toy)
    git("commit", "-qm", "prints its URLs", cwd=toy)
    proc = run(["scripts/retrain.sh", "reproduce"], cwd=toy, env={
        "RETRAIN_SETUP": "false", "MLFLOW_TRACKING_URI": uri, "MLFLOW_TRACKING_PASSWORD": "s3cr3t-pass"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = (toy / "results" / "retrain" / "repro.log").read_text()
    assert "Running stage 'toy'" in text and "tracking to ***" in text, text
    for secret in ("hunter2-pw", "ci-bot", "mlflow.example.internal", "tok3n-xyz", "s3cr3t-pass"):
        assert secret not in text, text
        assert secret not in proc.stdout + proc.stderr
    assert "https://***@data.example.org/x.tar" in text, text


def test_exp_push_removes_the_git_token_from_git_config_even_when_the_push_fails(toy, tmp_path):
    """The sweep's push step as GitHub runs it (bash -e), on an experiment that cannot be pushed."""
    seen = tmp_path / "header-during-push.txt"
    stand_in_dvc_venv(toy, wrapper=f'git config --get-all http.https://github.com/.extraheader > "{seen}"')
    wf = yaml.safe_load(SWEEP.read_text())
    step = next(s for s in wf["jobs"]["experiment"]["steps"] if "exp-push" in s.get("run", ""))
    assert "${{ github.token }}" == step["env"]["GITHUB_TOKEN"]
    env = {"GITHUB_TOKEN": "ghs_token-for-the-test", "RETRAIN_EXP_NAME": "sweep-1-none",
           "RETRAIN_SETUP": "false"}
    proc = run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]], cwd=toy, env=env)
    assert proc.returncode != 0, proc.stdout + proc.stderr  # no such experiment, no origin
    config = subprocess.run(["git", "config", "--local", "--get-all", "http.https://github.com/.extraheader"],
                            cwd=toy, capture_output=True, text=True)
    assert config.returncode == 1 and config.stdout == "", config.stdout  # gone
    assert "ghs_token" not in (toy / ".git" / "config").read_text()
    # and it was there for the push itself
    assert seen.read_text().startswith("AUTHORIZATION: basic "), seen.read_text()


def test_a_remote_whose_plugin_is_not_in_the_lock_stops_set_up(toy):
    """Plugins come from the hash lock only: set-up never installs one on the fly (that ran unpinned code)."""
    assert dvc("remote", "add", "gcs", "gs://bucket/ganforge", cwd=toy).returncode == 0
    proc = setup_with(toy, "")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "remote 'gcs' (gs://bucket/ganforge) needs dvc-gs==" in proc.stderr, proc.stderr
    assert "scripts/dvc-requirements.txt" in proc.stderr
