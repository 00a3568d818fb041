"""Team tracking server: `make mlflow-server`, `make ui` (read-only) and `make compare`, for real.

The server runs on a free loopback port with its store in tmp_path (the Makefile's MLFLOW_STORE and
ARTIFACTS variables); clients reach it over HTTP exactly as a teammate would, logged in as the admin user
its first start created (MLFLOW_AUTH_ADMIN_PASSWORD, a random one per session).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, copy_params, untrained_generator
from ganforge.nets import save_generator
from ganforge.tracking import promotion, serving
from ganforge.tracking.store import Run

pytestmark = pytest.mark.slow  # real servers
VENV_BIN = str(Path(sys.executable).parent)
ADMIN = ("admin", secrets.token_urlsafe(16))  # the server's admin, created by its first start
LOGIN = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_cmd(store: Path, target: str, port: int) -> list[str]:
    port_var = "MLFLOW_UI_PORT" if target == "ui" else "MLFLOW_PORT"
    return ["make", "-s", "-C", str(ROOT), "-o", "install", target, f"{port_var}={port}",
            f"MLFLOW_STORE={store / 'mlflow.db'}", f"ARTIFACTS={store / 'mlartifacts'}"]


def server_env(**extra) -> dict:
    return {**os.environ, "PATH": VENV_BIN + os.pathsep + os.environ["PATH"], **extra}


@contextlib.contextmanager
def make_server(store: Path, target: str = "mlflow-server", timeout: float = 120, port: int | None = None):
    """Run `make <target>` (mlflow-server or ui) on `port` (default: a free one) with its store in `store`;
    yields the URL. `-o install` uses the environment as it is (the suite runs after `make install`).
    While an mlflow-server runs, this process (and what it starts) logs in as its admin, as a teammate
    with MLFLOW_TRACKING_USERNAME/PASSWORD would.
    """
    saved = {k: os.environ.get(k) for k in LOGIN}
    if target == "mlflow-server":
        os.environ.update(dict(zip(LOGIN, ADMIN, strict=True)))
    port = port or free_port()
    log = open(store / f"{target}.log", "a")  # noqa: SIM115 (closed below)
    env = server_env(MLFLOW_AUTH_ADMIN_PASSWORD=ADMIN[1])
    proc = subprocess.Popen(server_cmd(store, target, port), stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"`make {target}` did not come up: {Path(log.name).read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        # make, mlflow and its uvicorn workers share the session we started: end them together
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        for k, v in saved.items():
            os.environ.pop(k, None)
            if v is not None:
                os.environ[k] = v


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    store = tmp_path_factory.mktemp("team-store")
    with make_server(store) as url:
        old = os.environ.get("MLFLOW_TRACKING_URI")
        os.environ["MLFLOW_TRACKING_URI"] = url
        try:
            yield {"url": url, "store": store}
        finally:
            if old is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)
            else:
                os.environ["MLFLOW_TRACKING_URI"] = old


@pytest.fixture(scope="module")
def team_runs(server, tmp_path_factory):
    """Four runs logged through the server: two evaluated (fid_ratio 1.8 and 1.2), one not, and one KILLED
    with the best fid_ratio (0.5, an interrupted training); the first two register their generator and go
    through promote_if_better."""
    root = tmp_path_factory.mktemp("team-project")
    runs = []
    for i, ratio in enumerate((1.8, 1.2, None, 0.5)):
        run = Run.start("team-test", {"base": {"dataset": "mnist"}, "train": {"lr": 10.0 ** -(i + 3),
                                 "loss": "ns"}}, root=root)
        run.log_metrics({"loss_d": 1.0 - i / 10}, step=1)
        if i == 3:
            run.log_metrics({"fid_ratio": ratio})
            run.finish("KILLED")
            runs.append(run)
            continue
        if ratio is not None:
            torch_seed_path = root / f"g{i}.pt"
            save_generator(torch_seed_path, untrained_generator(i))
            version = serving.log_generator_model(run, torch_seed_path, "mnist")
            run.log_metrics({"fid_ratio": ratio, "fid": ratio * 10})
            promotion.promote_if_better(run, "mnist", version, ratio, root=root)
        run.finish()
        runs.append(run)
    return runs


def test_server_keeps_runs_models_and_artifacts_in_the_project_store(server, team_runs, tmp_path):
    from mlflow import MlflowClient

    c = MlflowClient(server["url"])
    exp = c.get_experiment_by_name("team-test")
    assert len(c.search_runs([exp.experiment_id])) == 4
    history = c.get_metric_history(team_runs[0].run_id, "loss_d")
    assert [m.value for m in history] == [1.0]
    # the second generator (fid_ratio 1.2) beat the first: it is the champion
    assert int(c.get_model_version_by_alias("ganforge-mnist", "champion").version) == 2
    # artifacts went through the server's proxy into ARTIFACTS (the project's mlartifacts/)
    models = list((server["store"] / "mlartifacts").rglob("MLmodel"))
    assert len(models) == 2 and all((m.parent / "code" / "ganforge" / "nets").is_dir() for m in models)
    # and a teammate's fresh process loads the champion from the server alone, its files checked against
    # the sha256 recorded at registration (downloaded through the server's artifact proxy)
    code = textwrap.dedent("""
        from ganforge.tracking.serving import load_verified
        x = load_verified("models:/ganforge-mnist@champion").predict({"count": 2, "seed": 0})
        print(x.shape, x.dtype)
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "MLFLOW_TRACKING_URI": server["url"]})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "(2, 28, 28, 1) uint8"


def test_make_compare_lists_runs_best_fid_ratio_first(server, team_runs):
    env = {**os.environ, "PATH": VENV_BIN + os.pathsep + os.environ["PATH"]}
    proc = subprocess.run(["make", "-s", "-C", str(ROOT), "-o", "install", "compare",
                           "ARGS=--experiment team-test --metric fid_ratio --metric fid"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if any(r.run_id in line for r in team_runs)]
    assert [next(r.run_id for r in team_runs if r.run_id in line) for line in rows] == \
        [team_runs[1].run_id, team_runs[0].run_id, team_runs[2].run_id]  # 1.2, 1.8, not evaluated
    assert "train.loss" in proc.stdout and "fid_ratio" in proc.stdout and "1.2" in rows[0]
    assert rows[2].rstrip("│ ").endswith("-")  # no metrics: dashes, listed last
    assert "FINISHED" in rows[0] and team_runs[3].run_id not in proc.stdout  # the KILLED run is left out
    proc = subprocess.run(["make", "-s", "-C", str(ROOT), "-o", "install", "compare",
                           "ARGS=--experiment team-test --metric fid_ratio --all"],
                          capture_output=True, text=True, timeout=120, env=env)
    rows = [line for line in proc.stdout.splitlines() if any(r.run_id in line for r in team_runs)]
    assert proc.returncode == 0 and len(rows) == 4
    assert team_runs[3].run_id in rows[0] and "KILLED" in rows[0]  # asked for: shown, with its status


def basic(auth: tuple[str, str] | None) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(":".join(auth).encode()).decode()} if auth else {}


def post(url: str, path: str, body: dict, auth: tuple[str, str] | None = None) -> tuple[int, str]:
    """One REST call, no retries (the client would retry a 503 for minutes); anonymous unless auth."""
    req = urllib.request.Request(url + "/api/2.0/mlflow/" + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", **basic(auth)}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def request(url: str, method: str, body: bytes | None = None, auth: tuple[str, str] | None = None) -> int:
    req = urllib.request.Request(url, data=body, method=method, headers=basic(auth))
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_the_team_server_refuses_anonymous_and_read_only_writers(server, team_runs):
    """Issue 34: no local process may move the champion or replace python_model.pkl through the server."""
    from mlflow import MlflowClient

    url = server["url"]
    c = MlflowClient(url)
    champ = c.get_model_version_by_alias("ganforge-mnist", "champion")
    # mlflow-artifacts:/<experiment>/models/<model id>/artifacts, proxied into the store's mlartifacts/
    where = c.get_model_version_download_uri("ganforge-mnist", champ.version)
    where = where.removeprefix("mlflow-artifacts:/")
    pkl = server["store"] / "mlartifacts" / where / "python_model.pkl"
    before = pkl.read_bytes()
    proxied = f"{url}/api/2.0/mlflow-artifacts/artifacts/{where}/python_model.pkl"
    alias = ("registered-models/alias", {"name": "ganforge-mnist", "alias": "champion", "version": "1"})
    assert post(url, *alias)[0] == 401  # anonymous
    assert request(proxied, "PUT", b"code") == 401
    assert post(url, *alias, auth=("admin", "wrong password"))[0] == 401
    # a teammate's account (the admin creates it): reads everything, writes nothing it was not granted
    reader = ("reader", secrets.token_urlsafe(12))
    assert post(url, "users/create", {"username": reader[0], "password": reader[1]}, auth=ADMIN)[0] == 200
    assert post(url, *alias, auth=reader)[0] == 403
    assert request(proxied, "PUT", b"code", auth=reader) == 403
    get = f"{url}/api/2.0/mlflow/registered-models/get?name=ganforge-mnist"
    assert request(get, "GET", auth=reader) == 200
    assert pkl.read_bytes() == before
    assert MlflowClient(url).get_model_version_by_alias("ganforge-mnist", "champion").version == champ.version


def test_make_mlflow_server_needs_an_admin_password_to_start(tmp_path):
    env = server_env()
    env.pop("MLFLOW_AUTH_ADMIN_PASSWORD", None)
    proc = subprocess.Popen(server_cmd(tmp_path, "mlflow-server", free_port()), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # it started a server: without authentication
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail("`make mlflow-server` started without MLFLOW_AUTH_ADMIN_PASSWORD")
    assert proc.returncode != 0
    assert "requires authentication: set MLFLOW_AUTH_ADMIN_PASSWORD" in out
    assert not (tmp_path / "mlflow.db").exists()


def test_make_ui_opens_the_same_store_read_only(server, team_runs, tmp_path):
    from mlflow import MlflowClient

    # a run logged to the project's own store (as the stages do), with an artifact on local disk
    store = tmp_path / "project"
    store.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        local = Run.start("ganforge", {"train": {"lr": 1}}, root=store)
        (tmp_path / "note.txt").write_text("hello")
        local.log_artifact(tmp_path / "note.txt")
        local.finish()
    finally:
        os.environ["MLFLOW_TRACKING_URI"] = server["url"]
    artifacts = store / "mlartifacts"
    with make_server(store, target="ui") as ui_url:
        # browsing works: the run and its artifact, read from the local path
        query = f"run_id={local.run_id}&path=note.txt"
        with urllib.request.urlopen(f"{ui_url}/get-artifact?{query}", timeout=30) as r:
            assert r.read() == b"hello"
        # the artifact proxy is off: no upload next to a model's python_model.pkl, no delete
        proxy = f"{ui_url}/api/2.0/mlflow-artifacts/artifacts/1/{local.run_id}/artifacts"
        assert request(f"{proxy}/python_model.pkl", "PUT", b"code") == 503
        assert request(f"{proxy}/note.txt", "DELETE") == 503
        assert [p.name for p in artifacts.rglob("*") if p.is_file()] == ["note.txt"]
    log = (store / "ui.log").read_text()
    exp_id = MlflowClient(uri).get_experiment_by_name("ganforge").experiment_id
    assert f"{ui_url}/#/experiments/{exp_id}/runs?workflowType=machine_learning" in log

    with make_server(server["store"], target="ui") as ui_url:
        c = MlflowClient(ui_url)
        exp = c.get_experiment_by_name("team-test")
        runs = c.search_runs([exp.experiment_id])
        assert {r.info.run_id for r in runs} == {r.run_id for r in team_runs}
        # writes reach SQLite, which refuses them: mlflow answers 503 "attempt to write a readonly database"
        status, text = post(ui_url, "runs/set-tag", {"run_id": team_runs[0].run_id, "key": "x", "value": "y"})
        assert status == 503 and "readonly database" in text
        status, text = post(ui_url, "experiments/create", {"name": "not-allowed"})
        assert status == 503 and "readonly database" in text
    assert "x" not in MlflowClient(server["url"]).get_run(team_runs[0].run_id).data.tags


def test_a_tracking_outage_loses_no_training_and_no_point(tmp_path, tiny_mnist_dir):
    """The server dies during training and comes back later: training goes on, spools its points, sends
    them when the store is back, and the run ends FINISHED with every report exactly once."""
    from mlflow import MlflowClient

    from conftest import set_params

    steps = 300
    store, cwd = tmp_path / "store", tmp_path / "work"
    store.mkdir()
    cwd.mkdir()
    copy_params(cwd / "params.yaml")
    set_params(cwd / "params.yaml", {"train.device": "cpu", "train.batch_size": 32,
                                     "train.kimg": steps * 0.032, "train.z_dim": 16, "train.g_channels": 8,
                                     "train.d_channels": 8,
                                     "train.log_every": 10, "train.image_every": 100, "train.ckpt_every": 50})
    port = free_port()
    with make_server(store, port=port) as url:
        env = {**os.environ, "MLFLOW_TRACKING_URI": url, "OMP_NUM_THREADS": "1"}
        proc = subprocess.Popen([sys.executable, str(ROOT / "stages/train.py"), "--data",
                                 str(tiny_mnist_dir)], cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        for line in proc.stdout:
            if line.startswith("step 30 "):
                break
    # the server is down now; training goes on (the end of training waits for the store to come back)
    time.sleep(3)
    with make_server(store, port=port) as url:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        assert "warning: tracking store unreachable" in out and "training goes on" in out
        run_id = json.loads((cwd / "results/train/run.json").read_text())["run_id"]
        client = MlflowClient(url)
        assert client.get_run(run_id).info.status == "FINISHED"
        for key in ("loss_d", "kimg"):
            logged = sorted(m.step for m in client.get_metric_history(run_id, key))
            assert logged == list(range(10, steps + 1, 10)), key
    assert not (cwd / "checkpoints/mlflow-spool.jsonl").exists()  # all sent


def test_make_compare_ranks_one_sweep_by_its_experiment_prefix(tmp_path, monkeypatch):
    # what the sweep workflow's last job runs: the runs of DVC experiments sweep-7-*, best first, no others
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    runs = {}
    for exp_name, ratio in (("sweep-7-a", 2.0), ("sweep-7-b", 1.5), ("sweep-8-a", 1.0), ("", 0.5)):
        monkeypatch.setenv("DVC_EXP_NAME", exp_name)
        run = Run.start("sweep-test", {"train": {"loss": "ns"}}, root=tmp_path)
        run.log_metrics({"fid_ratio": ratio})
        run.finish()
        runs[exp_name] = run.run_id
    env = {**os.environ, "PATH": VENV_BIN + os.pathsep + os.environ["PATH"],
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    compare = ["make", "-s", "-C", str(ROOT), "-o", "install", "compare"]
    proc = subprocess.run([*compare, "ARGS=--experiment sweep-test --metric fid_ratio --exp-prefix sweep-7-"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    listed = [name for line in proc.stdout.splitlines() for name, rid in runs.items() if rid in line]
    assert listed == ["sweep-7-b", "sweep-7-a"]  # 1.5 before 2.0; the other sweep and the plain run left out
    proc = subprocess.run([*compare, "ARGS=--experiment sweep-test --exp-prefix sweep-%"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2 and "letters, digits and _.- only" in proc.stderr  # no filter text
