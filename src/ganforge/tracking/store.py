"""Where runs live and how one run is opened, continued and written to.

One MLflow run per training run. train opens it (open_training_run) and writes its id to
results/train/run.json; sample and evaluate attach to that same run, so the UI shows one run per model
with everything in it. Calls go through MlflowClient with an explicit run id (no global "active run"),
which makes resuming and attaching from another process the same operation.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import warnings
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from pathlib import Path

from ganforge.errors import GanforgeError
from ganforge.io import atomic_write_json

# mlflow warns about things we do on purpose (sqlite store, image keys); keep the stage output readable.
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
warnings.filterwarnings("ignore", module="mlflow")

import mlflow  # noqa: E402
from mlflow import MlflowClient  # noqa: E402

EXPERIMENT = "ganforge"
# MLflow 3 opens an experiment in its GenAI view (traces, prompts) unless it is marked as model training.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def project_root(start: str | Path | None = None) -> Path:
    """The DVC project root that owns the shared stores (mlflow.db, mlartifacts/).

    `dvc exp run --temp/--queue` executes in a copy under <root>/.dvc/tmp/exps/<tmpdir>/; runs from
    there must land in the workspace's store, so such a path maps back to <root>.
    """
    p = Path(start or os.getcwd()).resolve()
    parts = p.parts
    for i in range(len(parts) - 3):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    for cand in (p, *p.parents):
        if (cand / "dvc.yaml").exists() or (cand / ".dvc").is_dir():
            return cand
    return p


def tracking_uri(root: str | Path | None = None) -> str:
    """MLFLOW_TRACKING_URI if set, else sqlite:///<project root>/mlflow.db (shared by dvc exp copies)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{project_root(root) / 'mlflow.db'}"


def artifact_root(root: str | Path | None = None) -> str:
    return (project_root(root) / "mlartifacts").as_uri()


def client(root: str | Path | None = None) -> MlflowClient:
    # not mlflow.set_tracking_uri: it also exports MLFLOW_TRACKING_URI, so the first store a process opened
    # would silently win over every later root (a bench script, a test session, a notebook)
    return MlflowClient(tracking_uri=tracking_uri(root))


@contextmanager
def fluent_store(uri: str, experiment_id: str):
    """Point mlflow's fluent API (which Model.log uses) at a store and experiment for a block, then unset
    both again, with the MLFLOW_TRACKING_URI and MLFLOW_EXPERIMENT_ID that mlflow exports on the way."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID")}
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment_id=experiment_id)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.tracking.fluent._active_experiment_id = None  # set_experiment has no public undo
        for k, v in saved.items():
            os.environ.pop(k, None)
            if v is not None:
                os.environ[k] = v


def experiment_id(c: MlflowClient, name: str, root: str | Path | None = None) -> str:
    """Get or create `name`, marked as a model-training experiment; a local store keeps artifacts in
    <project root>/mlartifacts."""
    exp = c.get_experiment_by_name(name)
    if exp is None:
        local = not c.tracking_uri.startswith(("http://", "https://", "databricks"))
        try:
            return c.create_experiment(name, artifact_location=artifact_root(root) if local else None,
                                       tags=EXPERIMENT_KIND)
        except mlflow.exceptions.MlflowException:
            # another process (a queued dvc experiment) created it between our get and create
            exp = c.get_experiment_by_name(name)
            if exp is None:
                raise
    for k, v in EXPERIMENT_KIND.items():  # experiments created by older code get the tag on next use
        if exp.tags.get(k) != v:
            c.set_experiment_tag(exp.experiment_id, k, v)
    return exp.experiment_id


def runs_link(base_url: str, root: str | Path | None = None, experiment: str = EXPERIMENT) -> str:
    """The UI address of the experiment's runs table in the model-training view (MLflow 3 would otherwise
    open its GenAI view); the experiments list when the store has no such experiment yet."""
    base = base_url.rstrip("/")
    exp = client(root).get_experiment_by_name(experiment)
    if exp is None:
        return f"{base}/#/experiments"
    return f"{base}/#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning"


def flatten(d: Mapping, prefix: str = "") -> dict:
    """{'train': {'ema': {'decay': 0.9}}} -> {'train.ema.decay': 0.9}"""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def params_hash(params: Mapping) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]


def git_state(cwd: str | Path | None = None) -> dict:
    """Commit and dirty flag of the code that ran (empty when not in a git checkout)."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return {}
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip() != ""
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return {"mlflow.source.git.commit": head.stdout.strip(), "git_commit": head.stdout.strip(),
            "git_dirty": str(dirty).lower()}


class Run:
    """A handle on one MLflow run, by id. Every method is safe to call from any process."""

    def __init__(self, run_id: str, c: MlflowClient):
        self.run_id, self.client = run_id, c

    # lifecycle ---------------------------------------------------------------------------------
    @classmethod
    def start(cls, experiment: str, params: Mapping, tags: Mapping | None = None,
              run_name: str | None = None, root: str | Path | None = None) -> Run:
        c = client(root)
        all_tags = {**git_state(root), "params_hash": params_hash(params), **owner_tags(root), **(tags or {})}
        if os.environ.get("DVC_EXP_NAME"):
            all_tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
        run = c.create_run(experiment_id(c, experiment, root), run_name=run_name,
                           tags={k: str(v) for k, v in all_tags.items()})
        self = cls(run.info.run_id, c)
        self.log_params(flatten(params))
        return self

    @classmethod
    def resume(cls, run_id: str, root: str | Path | None = None) -> Run | None:
        """Reopen a run (after a crash) so it shows RUNNING again; None if the store no longer has it."""
        c = client(root)
        try:
            c.get_run(run_id)
        except mlflow.exceptions.MlflowException:
            return None
        c.update_run(run_id, status="RUNNING")
        self = cls(run_id, c)
        self.set_tags(owner_tags(root))  # this process owns it now
        return self

    @classmethod
    def attach(cls, run_json: str | Path, root: str | Path | None = None) -> Run:
        """The run that trained the model, as recorded in results/train/run.json."""
        path = Path(run_json)
        try:
            info = json.loads(path.read_text())
            run_id = info["run_id"]
        except (OSError, ValueError, KeyError) as e:
            raise GanforgeError(f"cannot read the training run id from {path}: {e}") from None
        c = client(root)
        try:
            c.get_run(run_id)
        except mlflow.exceptions.MlflowException:
            raise GanforgeError(
                f"MLflow run {run_id} (from {path}) is not in the store {c.tracking_uri}; "
                "set MLFLOW_TRACKING_URI to the store that trained the model, or rerun training"
            ) from None
        return cls(run_id, c)

    def finish(self, status: str = "FINISHED") -> None:
        """status: FINISHED | FAILED | KILLED."""
        self.client.set_terminated(self.run_id, status=status)

    def close(self, status: str, tags: Mapping | None = None, say: Callable[[str], None] = print) -> None:
        """finish(status) with tags, for the paths where something else already went wrong: a store that
        cannot be reached is reported in one line, never raised over the error that ended the run."""
        try:
            self.set_tags(tags or {})
            self.finish(status)
        except Exception as e:
            say(f"warning: could not mark MLflow run {self.run_id} {status} ({type(e).__name__}); the next "
                "training start in this workspace marks it KILLED if its process is gone")

    def status(self) -> str:
        return self.client.get_run(self.run_id).info.status

    def write_json(self, path: str | Path, **extra) -> None:
        """results/train/run.json: how sample/evaluate find this run, plus `extra` facts for people."""
        atomic_write_json(path, {"run_id": self.run_id, "tracking_uri": self.client.tracking_uri, **extra})

    # logging -----------------------------------------------------------------------------------
    def log_params(self, flat: Mapping) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)) for k, v in flat.items()]
        for i in range(0, len(items), 100):  # the store accepts at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, stats: Mapping[str, float], step: int | None = None) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, step or 0) for k, v in stats.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def log_image(self, image, key: str, step: int | None = None) -> None:
        """image: uint8 numpy [H, W, C] or [H, W]. With step, the UI shows one image per step."""
        if step is None:
            self.client.log_image(self.run_id, image, artifact_file=f"{key}.png")
        else:
            self.client.log_image(self.run_id, image, key=key, step=step)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_dict(self, obj: Mapping, artifact_file: str) -> None:
        self.client.log_dict(self.run_id, dict(obj), artifact_file)

    def set_tags(self, tags: Mapping) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, str(v))

    def log_dataset(self, name: str, digest: str, source: str, context: str, profile: Mapping) -> None:
        """Record the data a run trained on as an MLflow dataset input: the runs table's Dataset column
        shows `name` (digest), and the run page lists its source and profile (counts, shape)."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        dataset = Dataset(name=name, digest=digest, source_type="local", source=json.dumps({"uri": source}),
                          profile=json.dumps(dict(profile)))
        self.client.log_inputs(self.run_id, datasets=[
            DatasetInput(dataset, tags=[InputTag("mlflow.data.context", context)])])


def owner_tags(root: str | Path | None = None) -> dict:
    """Which process runs a run: host, pid and workspace, so a later start can tell a live run from one
    whose process died without closing it (kill -9, power loss, the OOM killer)."""
    import socket

    return {"ganforge.host": socket.gethostname(), "ganforge.pid": os.getpid(),
            "ganforge.workspace": str(project_root(root))}


def _alive(pid: int) -> bool:
    """A process with this pid exists on this host (pid reuse could keep a dead run looking alive; it is
    then marked at a later start, never wrongly killed)."""
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def mark_orphans(root: str | Path | None = None, experiment: str = EXPERIMENT,
                 say: Callable[[str], None] = print) -> list[str]:
    """Runs of this workspace and host still RUNNING whose process is gone: marked KILLED with the tag
    ganforge.orphaned=true (the UI and `make compare` would otherwise show them live forever)."""
    import socket

    c = client(root)
    exp = c.get_experiment_by_name(experiment)
    if exp is None:
        return []
    mine = owner_tags(root)
    found = c.search_runs([exp.experiment_id], "attributes.status = 'RUNNING' and "
                          f"tags.`ganforge.host` = '{socket.gethostname()}'", max_results=1000)
    orphans = []
    for r in found:
        pid = r.data.tags.get("ganforge.pid", "")
        if r.data.tags.get("ganforge.workspace") != mine["ganforge.workspace"] or not pid.isdigit() \
                or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        c.set_tag(r.info.run_id, "ganforge.orphaned", "true")
        c.set_terminated(r.info.run_id, status="KILLED")
        orphans.append(r.info.run_id)
        say(f"marked MLflow run {r.info.run_id} KILLED: its process {pid} is gone (ganforge.orphaned=true)")
    return orphans


def open_training_run(params: Mapping, checkpoint_meta: Mapping | None, run_name: str, tags: Mapping,
                      say: Callable[[str], None] = print, experiment: str = EXPERIMENT) -> Run:
    """The run a training logs to: the checkpoint's own run when its logged params still hold, else a new
    one (tagged continues_run when it continues the checkpoint's weights).

    MLflow params are immutable, so a longer kimg continues the weights but gets a run of its own.
    checkpoint_meta: the `meta` of the checkpoint being resumed (None = no checkpoint): mlflow_run_id and
    params_hash, as this function's caller stores them.
    """
    # before resuming: the checkpoint's own run may be one of them
    mark_orphans(experiment=experiment, say=say)
    old_id = (checkpoint_meta or {}).get("mlflow_run_id")
    same = checkpoint_meta is not None and checkpoint_meta.get("params_hash") == params_hash(params)
    run = Run.resume(old_id) if old_id and same else None
    if old_id and run is None:
        say(f"logging to a new MLflow run (the checkpoint's run {old_id} is gone or had other params)")
    if run is None:
        tags = {**tags, "continues_run": old_id} if old_id else tags
        run = Run.start(experiment, params, tags=tags, run_name=run_name)
    return run
