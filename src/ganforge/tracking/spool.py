"""Best-effort logging for a training run: a tracking outage never stops training, and no point is lost
or logged twice.

- A point the store does not take is appended to a spool file next to the checkpoint (JSON lines, one
  per report, with its run id) and sent, oldest first, once the store answers again; retries back off
  from 10 s to a minute so an outage costs the loop at most one failed request a minute.
- A resumed run first sends what an earlier process spooled, then asks the store for the last step it
  has and skips every point up to it: the loop re-computes the steps after its checkpoint bit for bit,
  so each step's points reach the store exactly once across kills and resumes. Rows the checkpoint holds
  but the store lacks (a crash between the checkpoint and its report) are sent by `replay`.
- Images are not spooled (they are also in results/ and regenerate from the checkpoint); one that cannot
  be sent is counted and reported at the end.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from ganforge.tracking.store import Run

SPOOL_FILE = "mlflow-spool.jsonl"
STEP_KEY = "kimg"  # logged with every report: its history tells which steps the store already has
FIRST_RETRY_SECONDS, MAX_RETRY_SECONDS = 10.0, 60.0


class TrainingLog:
    def __init__(self, run: Run, spool_dir: str | Path, say: Callable[[str], None] = print):
        # mlflow's HTTP client would retry a dead server for minutes inside one call, blocking training;
        # one quick retry per call is enough here, since this class retries across calls
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        self.run, self.say = run, say
        self.spool = Path(spool_dir) / SPOOL_FILE
        self.retry_at, self.backoff = 0.0, FIRST_RETRY_SECONDS
        self.images_lost = 0
        self.flush()  # an earlier process's points first: they come before ours
        self.skip_through = self._last_logged_step()  # steps the store has from earlier processes

    def _last_logged_step(self) -> int:
        try:
            return max((m.step for m in self.run.client.get_metric_history(self.run.run_id, STEP_KEY)),
                       default=0)
        except Exception:  # the store is down right now: nothing to skip can be known, skip nothing
            return 0

    # sending ------------------------------------------------------------------------------------
    def metrics(self, step: int, stats: Mapping[str, float]) -> None:
        """Log one report; never raises. Steps the store already has are skipped."""
        if step <= self.skip_through:
            return
        self._append({"run_id": self.run.run_id, "step": step, "metrics": dict(stats),
                      "ms": int(time.time() * 1000)})
        self.flush()

    def replay(self, history: list[dict]) -> None:
        """Send the checkpoint's report rows that the store does not have (see the module docstring)."""
        for row in history:
            self.metrics(row["step"], {k: v for k, v in row.items() if k != "step"})

    def image(self, step: int, key: str, image) -> None:
        if step <= self.skip_through:
            return
        try:
            self.run.log_image(image, key, step)
        except Exception:
            self.images_lost += 1

    def flush(self, wait_seconds: float = 0.0) -> bool:
        """Send the spool, oldest first; True when it is empty. Retries only after the back-off time,
        waiting up to `wait_seconds` for the store (the end of training waits; a step never does)."""
        deadline = time.monotonic() + wait_seconds
        while self.spool.exists():
            now = time.monotonic()
            if now < self.retry_at:
                if self.retry_at > deadline:
                    return False
                time.sleep(self.retry_at - now)
            try:
                self._send_spool()
            except Exception as e:  # the store's own errors, connection errors, timeouts: all alike here
                if self.backoff == FIRST_RETRY_SECONDS:
                    self.say(f"warning: tracking store unreachable ({type(e).__name__}: "
                             f"{str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}); training "
                             f"goes on, points are kept in {self.spool} and sent when it is back")
                self.retry_at = time.monotonic() + self.backoff
                self.backoff = min(self.backoff * 2, MAX_RETRY_SECONDS)
                continue
            self.retry_at, self.backoff = 0.0, FIRST_RETRY_SECONDS
        return True

    def _send_spool(self) -> None:
        from mlflow.entities import Metric

        lines = [json.loads(line) for line in self.spool.read_text().splitlines() if line.strip()]
        for i, entry in enumerate(lines):
            points = [Metric(k, float(v), entry["ms"], entry["step"]) for k, v in entry["metrics"].items()]
            try:
                self.run.client.log_batch(entry["run_id"], metrics=points)
            except Exception:
                self._rewrite(lines[i:])  # keep what was not sent, in order
                raise
        self.spool.unlink()

    def _append(self, entry: dict) -> None:
        self.spool.parent.mkdir(parents=True, exist_ok=True)
        with open(self.spool, "a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()

    def _rewrite(self, entries: list[dict]) -> None:
        from ganforge.io import atomic_write_text

        atomic_write_text(self.spool, "".join(json.dumps(e) + "\n" for e in entries))
