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
- An entry the store can never take is not an outage: a line that is not JSON (a write torn by a kill),
  one that is not a report (a hand-edited file, a value that is not a number), or one the store refuses
  as such (MLflow's INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST, BAD_REQUEST: a deleted run, an
  invalid key or value). It is moved to <spool>.rejected, one JSON line with the reason, and the entries
  after it are sent at once; retrying it would block every later report, and every later training of
  the workspace, for good. Everything else (connection errors, timeouts, 5xx, 401/403, 429) is an outage.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from ganforge.tracking.store import Run

SPOOL_FILE = "mlflow-spool.jsonl"
REJECTED_SUFFIX = ".rejected"  # <spool>.rejected: the entries set aside, each with its reason
# MLflow's answers that judge the request itself: sending it again can never succeed. Authentication
# (401/403) is left out on purpose: wrong credentials refuse every entry alike and are fixed by the user
# while training goes on, so they are an outage here, not a reason to set the whole spool aside.
PERMANENT_ERRORS = frozenset({"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "BAD_REQUEST"})
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
        self.rejected = self.spool.with_name(SPOOL_FILE + REJECTED_SUFFIX)
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
            except Exception as e:  # an outage: connection errors, timeouts, 5xx (never a permanent one)
                if self.backoff == FIRST_RETRY_SECONDS:
                    self.say(f"warning: tracking store unreachable ({_first_line(e)[:250]}); training "
                             f"goes on, points are kept in {self.spool} and sent when it is back")
                self.retry_at = time.monotonic() + self.backoff
                self.backoff = min(self.backoff * 2, MAX_RETRY_SECONDS)
                continue
            self.retry_at, self.backoff = 0.0, FIRST_RETRY_SECONDS
        return True

    def _send_spool(self) -> None:
        """Send every entry, oldest first. An entry that is not a report is set aside before anything is
        sent, one the store refuses as such when it does; an outage keeps the entry it hit and those after
        it (in order) and raises."""
        from mlflow.entities import Metric

        reports, rejected = [], 0
        for line in self.spool.read_text().splitlines():
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                points = [Metric(k, float(v), entry["ms"], entry["step"])
                          for k, v in entry["metrics"].items()]
                if not isinstance(entry["run_id"], str):
                    raise TypeError(f"run_id {entry['run_id']!r} is not a string")
            except json.JSONDecodeError as e:
                self._reject({"line": line}, f"not valid JSON (a write torn by a kill?): {e}")
                rejected += 1
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                self._reject({"entry": entry}, f"not a report ({type(e).__name__}: {e})")
                rejected += 1
            else:
                reports.append((line, entry, points))
        for i, (_, entry, points) in enumerate(reports):
            try:
                self.run.client.log_batch(entry["run_id"], metrics=points)
            except Exception as e:
                if not permanent(e):
                    self._rewrite([line for line, _, _ in reports[i:]])  # keep what was not sent, in order
                    self._said_rejected(rejected)
                    raise
                self._reject({"entry": entry}, f"refused by the store: {_first_line(e)}")
                rejected += 1
        self.spool.unlink()
        self._said_rejected(rejected)

    def _reject(self, record: dict, reason: str) -> None:
        """Append one set-aside entry to <spool>.rejected (before the spool is rewritten without it: a kill
        in between sets it aside twice, never loses it)."""
        with open(self.rejected, "a") as f:
            f.write(json.dumps({**record, "reason": reason, "rejected_ms": int(time.time() * 1000)}) + "\n")
            f.flush()

    def _said_rejected(self, n: int) -> None:
        if n:
            self.say(f"warning: {n} spooled report(s) can never be logged (deleted run, invalid value or a "
                     f"torn line): moved to {self.rejected} with the reason; the others go on")

    def _append(self, entry: dict) -> None:
        self.spool.parent.mkdir(parents=True, exist_ok=True)
        with open(self.spool, "ab+") as f:  # appends; reads only to look at the last byte
            end = f.seek(0, os.SEEK_END)
            torn = end > 0 and f.seek(end - 1) >= 0 and f.read(1) != b"\n"
            # a last line torn by a kill would swallow this entry: start a line of its own
            f.write((("\n" if torn else "") + json.dumps(entry) + "\n").encode())
            f.flush()

    def _rewrite(self, lines: list[str]) -> None:
        from ganforge.io import atomic_write_text

        atomic_write_text(self.spool, "".join(line + "\n" for line in lines))


def permanent(e: Exception) -> bool:
    """Whether the store refused the request itself (never to succeed), rather than being unreachable."""
    import mlflow

    return isinstance(e, mlflow.exceptions.MlflowException) and e.error_code in PERMANENT_ERRORS


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:300] if text else ''}"
