"""The plumbing of a one-process training stage (super-resolution, translation) around the one engine: the
checkpoint it resumes, its MLflow run (and run.json), metrics and pictures through the spool, and signals.

    t = train_tracked(task, steps=..., config=..., engine={ema_decay, lr_decay, fast_path, log_every,
                      image_every, ckpt_every}, checkpoints=..., results=..., run=RunSpec(...))
    ... write the model file and pictures ...
    t.finish()          # flush the spool, then mark the run FINISHED (after registering the model)

SIGTERM or Ctrl-C checkpoint the step, mark the run KILLED and raise cli.Interrupted (exit 143 / 130, rerun to
resume); any other failure marks it FAILED (closed_on_failure, which the generation trainer, train/run.py,
uses too: it has more to do, ranks and in-training evaluation, and does the other steps itself).
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class RunSpec:
    """The MLflow run of a training: its params, experiment, name and tags."""

    params: dict
    experiment: str
    name: str
    tags: dict = field(default_factory=dict)


@dataclass
class Tracked:
    result: object  # engine.TrainResult
    mlrun: object  # tracking.store.Run
    log: object  # tracking.spool.TrainingLog

    def finish(self, wait_seconds: float = 60) -> None:
        self.log.flush(wait_seconds=wait_seconds)
        self.mlrun.finish("FINISHED")


def train_tracked(task, *, steps: int, config: dict, engine: dict, checkpoints: Path, results: Path,
                  run: RunSpec, picture_key: str, announce: str) -> Tracked:
    """Train `task` for `steps` steps (resuming checkpoints/ when its config matches `config`), tracked in
    MLflow; `announce` starts the line that names the run."""
    from ganforge.cli import GracefulStop
    from ganforge.tracking.spool import TrainingLog
    from ganforge.tracking.store import open_training_run, params_hash
    from ganforge.train.checkpoint import CHECKPOINT_FILE, load_checkpoint, remove_stale_temp_files
    from ganforge.train.engine import train as run_engine

    ckpt_path = checkpoints / CHECKPOINT_FILE
    for stale in remove_stale_temp_files(ckpt_path):
        print(f"removed {stale}: a checkpoint write that a kill cut short")
    ckpt = load_checkpoint(ckpt_path, config)
    mlrun = open_training_run(run.params, ckpt["meta"] if ckpt else None, experiment=run.experiment,
                              run_name=run.name, tags=run.tags)
    meta = {"params_hash": params_hash(run.params), "mlflow_run_id": mlrun.run_id}
    print(f"{announce}, MLflow run {mlrun.run_id}")
    mlrun.write_json(results / "run.json")
    tracked = TrainingLog(mlrun, checkpoints)  # best effort: an outage spools, never stops training
    if ckpt:
        tracked.replay(ckpt["history"])

    def log(step: int, stats: dict) -> None:
        tracked.metrics(step, stats)
        if not sys.stderr.isatty():  # no live progress bar: one line per report in the log
            print(f"step {step}  " + "  ".join(f"{k} {v:.4g}" for k, v in stats.items()), flush=True)

    with closed_on_failure(mlrun, tracked), GracefulStop() as stop:
        result = run_engine(task, steps=steps, config=config, **engine, checkpoint_path=ckpt_path,
                            resume=ckpt, checkpoint_meta=meta, log=log,
                            log_grid=lambda step, pic: tracked.image(step, picture_key, pic),
                            stop=lambda: stop.requested, progress=sys.stderr.isatty())
    return Tracked(result, mlrun, tracked)


@contextmanager
def closed_on_failure(mlrun, tracked):
    """Around a tracked training: a signal's engine.Stopped marks the run KILLED (with the signal and the
    step) and becomes cli.Interrupted; a second signal KILLED; anything else FAILED. Re-raises."""
    from ganforge.cli import Interrupted
    from ganforge.train.engine import Stopped

    try:
        yield
    except Stopped as e:
        tracked.flush(wait_seconds=5)  # inside the grace period a scheduler gives
        mlrun.close("KILLED", {"ganforge.stopped_by": e.signal_name, "ganforge.stopped_at_step": e.step})
        raise Interrupted(e.exit_code - 128, str(e)) from None
    except KeyboardInterrupt:  # a second signal, or one before training started
        mlrun.close("KILLED")
        raise
    except BaseException:
        mlrun.close("FAILED")
        raise
