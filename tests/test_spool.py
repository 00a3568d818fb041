"""The training log's spool (tracking.spool): an outage keeps points for later, an entry the store can never
take (a deleted run, an invalid value, a torn line) is set aside in <spool>.rejected and the rest goes on.

Against a real sqlite store (the module's `store`) and, for the outage, a loopback port nothing listens on.
"""

from __future__ import annotations

import json
import socket
import time

from mlflow import MlflowClient

from ganforge.tracking.spool import SPOOL_FILE, TrainingLog
from ganforge.tracking.store import Run


def entry(run_id: str, step: int, **metrics) -> str:
    return json.dumps({"run_id": run_id, "step": step, "metrics": metrics or {"loss_d": step / 100},
                       "ms": 1_700_000_000_000 + step}) + "\n"


def test_permanent_errors_go_to_rejected_and_the_rest_is_sent_at_once(store, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store["MLFLOW_TRACKING_URI"])
    run = Run.start("spool-test", {"train": {"seed": 0}}, root=tmp_path)
    gone = Run.start("spool-test", {"train": {"seed": 1}}, root=tmp_path)
    run.client.delete_run(gone.run_id)
    spool = tmp_path / "checkpoints" / SPOOL_FILE
    spool.parent.mkdir()
    torn = '{"run_id": "' + run.run_id + '", "step": 40, "metr'  # the process died mid-write
    spool.write_text(entry(run.run_id, 10) + entry(gone.run_id, 10) + entry(run.run_id, 20)
                     + entry(run.run_id, 30, loss_d="not a number") + torn)
    said = []
    t0 = time.monotonic()
    log = TrainingLog(run, spool.parent, say=said.append)  # sends the earlier process's spool first
    assert not spool.exists()
    assert log.flush(wait_seconds=300) is True  # nothing left to wait for (the end of training waits)
    assert time.monotonic() - t0 < 30
    assert [(m.step, m.value) for m in run.client.get_metric_history(run.run_id, "loss_d")] == [
        (10, 0.1), (20, 0.2)]
    rejected = [json.loads(line)
                for line in (spool.parent / f"{SPOOL_FILE}.rejected").read_text().splitlines()]
    assert len(rejected) == 3
    torn_line = next(r for r in rejected if "line" in r)
    deleted = next(r for r in rejected if r.get("entry", {}).get("run_id") == gone.run_id)
    bad_value = next(r for r in rejected if r.get("entry", {}).get("step") == 30)
    assert deleted["entry"]["run_id"] == gone.run_id and "deleted" in deleted["reason"]
    assert "not a number" in bad_value["reason"]
    assert torn_line["line"] == torn and "not valid JSON" in torn_line["reason"]
    assert any("3 spooled report(s)" in s and ".rejected" in s for s in said), said
    assert not any("unreachable" in s for s in said)
    # training goes on logging after that
    log.metrics(50, {"loss_d": 0.5})
    assert [m.step for m in run.client.get_metric_history(run.run_id, "loss_d")] == [10, 20, 50]


def test_an_outage_keeps_the_points_and_sets_only_a_torn_line_aside(store, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    with socket.socket() as s:  # a port nothing listens on: connection refused, an outage
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run_id = MlflowClient(store["MLFLOW_TRACKING_URI"]).create_run("0").info.run_id
    down = Run(run_id, MlflowClient(f"http://127.0.0.1:{port}"))
    spool = tmp_path / SPOOL_FILE
    torn = '{"run_id": "' + run_id + '", "st'
    spool.write_text(entry(run_id, 10) + torn)
    said = []
    log = TrainingLog(down, tmp_path, say=said.append)
    log.metrics(20, {"loss_d": 0.2})
    assert log.flush(wait_seconds=0) is False  # still down: kept, not rejected
    kept = [json.loads(line) for line in spool.read_text().splitlines()]
    assert [e["step"] for e in kept] == [10, 20]
    rejected = (tmp_path / f"{SPOOL_FILE}.rejected").read_text().splitlines()
    assert [json.loads(line)["line"] for line in rejected] == [torn]
    assert any("unreachable" in s for s in said)
