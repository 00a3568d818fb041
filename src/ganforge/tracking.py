"""The only module that imports mlflow: store location, run lifecycle, tags, metrics and images.

One MLflow run per training run. train starts it and writes its id to results/train/run.json;
sample and evaluate attach to that same run, so the UI shows one run per model with everything in it.
Calls go through MlflowClient with an explicit run id (no global "active run"), which makes resuming
and attaching from another process the same operation.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import warnings
from collections.abc import Mapping
from pathlib import Path

from ganforge.errors import GanforgeError
from ganforge.io import atomic_write_json, project_root

# mlflow warns about things we do on purpose (sqlite store, image keys); keep the stage output readable.
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
warnings.filterwarnings("ignore", module="mlflow")

import mlflow  # noqa: E402
from mlflow import MlflowClient  # noqa: E402


def tracking_uri(root: str | Path | None = None) -> str:
    """MLFLOW_TRACKING_URI if set, else sqlite:///<project root>/mlflow.db (shared by dvc exp copies)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{project_root(root) / 'mlflow.db'}"


def artifact_root(root: str | Path | None = None) -> str:
    return (project_root(root) / "mlartifacts").as_uri()


def client(root: str | Path | None = None) -> MlflowClient:
    uri = tracking_uri(root)
    mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri)


def experiment_id(c: MlflowClient, name: str, root: str | Path | None = None) -> str:
    """Get or create `name`; a local store keeps artifacts in <project root>/mlartifacts."""
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    local = not c.tracking_uri.startswith(("http://", "https://", "databricks"))
    try:
        return c.create_experiment(name, artifact_location=artifact_root(root) if local else None)
    except mlflow.exceptions.MlflowException:
        # another process (a queued dvc experiment) created it between our get and create
        exp = c.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


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
        flat = flatten(params)
        all_tags = {**git_state(root), "params_hash": params_hash(params), **(tags or {})}
        if os.environ.get("DVC_EXP_NAME"):
            all_tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
        run = c.create_run(experiment_id(c, experiment, root), run_name=run_name or os.environ.get(
            "DVC_EXP_NAME"), tags={k: str(v) for k, v in all_tags.items()})
        self = cls(run.info.run_id, c)
        self.log_params(flat)
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
        return cls(run_id, c)

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

    def status(self) -> str:
        return self.client.get_run(self.run_id).info.status

    def write_json(self, path: str | Path) -> None:
        atomic_write_json(path, {"run_id": self.run_id, "tracking_uri": self.client.tracking_uri})

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




# =================================================================================================
# Model registry, generator pyfunc and run comparison (issue 6). Everything below this line is owned by
# the registry/team work; the run lifecycle above is shared with the stages.
#
# Stages call:
#   train:    version = log_generator_model(run, "models/generator.pt", dataset)   after save_generator
#   evaluate: decision = promote_if_better(run, dataset, None, metrics["fid_ratio"])
# Users call:  mlflow.pyfunc.load_model("models:/ganforge-mnist@champion").predict({"count": 16, "seed": 0})
# =================================================================================================

import logging  # noqa: E402

import pandas as pd  # noqa: E402  (resolves GeneratorModel.predict's type hint at class creation)

CHAMPION = "champion"
MAX_REQUEST_IMAGES = 10_000  # per predict call: a guard against requests that would exhaust memory


def registered_model_name(dataset: str) -> str:
    return f"ganforge-{dataset}"


class GeneratorModel(mlflow.pyfunc.PythonModel):
    """The generator as an MLflow pyfunc: request rows of (count, seed[, classes]) -> uint8 images.

    predict input: a DataFrame (or a dict / list of dicts) with one row per request:
      count    int >= 1   images to generate
      seed     int >= 0   image i of the row is drawn from z ~ N(0, I) seeded with seed + i, so an image
                          depends only on its seed (not on count, batching or the other rows)
      classes  optional   conditional generators only: the class of every image of the row;
                          an unconditional generator refuses it
    predict output: numpy uint8 [N, H, W, C] with N = sum of counts, rows in request order.

    The weights travel as the artifact "generator" (the models/generator.pt file, loaded with
    torch.load(weights_only=True) through ganforge.nets.load_generator); the ganforge package travels as
    the model's code, so loading needs mlflow + torch, not a ganforge install.
    """

    def load_context(self, context) -> None:
        from ganforge.nets import load_generator

        # no global torch.set_grad_enabled(False) here: loading a model must not change the caller's
        # autograd state (generate_images runs under no_grad itself)
        self.G, self.meta = load_generator(context.artifacts["generator"], device="cpu")

    # the DataFrame hint tells mlflow to take our explicit signature instead of inferring one from hints
    def predict(self, context, model_input: pd.DataFrame, params=None):
        import numpy as np

        if not isinstance(model_input, pd.DataFrame):  # a dict is one request, a list of dicts several
            model_input = pd.DataFrame(model_input if isinstance(model_input, list) else [model_input])
        rows = _request_rows(model_input)
        out = [generate_images(self.G, seed, count, classes) for count, seed, classes in rows]
        return np.concatenate(out) if out else np.zeros((0, *self._image_shape()), np.uint8)

    def _image_shape(self) -> tuple[int, int, int]:
        return self.G.resolution, self.G.resolution, self.G.channels


def _request_rows(df) -> list[tuple[int, int, object]]:
    """Validate a request table; returns [(count, seed, classes or None)] (GanforgeError on bad input)."""
    missing = {"count", "seed"} - set(df.columns)
    if missing:
        raise GanforgeError(f"request needs columns count and seed (missing: {', '.join(sorted(missing))})")
    rows = []
    for i, r in enumerate(df.to_dict("records")):
        count, seed = int(r["count"]), int(r["seed"])
        if not 1 <= count <= MAX_REQUEST_IMAGES or seed < 0:
            raise GanforgeError(f"request row {i}: need 1 <= count <= {MAX_REQUEST_IMAGES} and seed >= 0, "
                                f"got count={count}, seed={seed}")
        classes = r.get("classes")
        if classes is not None and not isinstance(classes, list | tuple) and _isnan(classes):
            classes = None  # pandas fills a missing optional column with NaN
        rows.append((count, seed, classes))
    return rows


def _isnan(x) -> bool:
    try:
        return x != x  # NaN is the only value not equal to itself
    except (TypeError, ValueError):
        return False


def generate_images(G, seed: int, count: int, classes=None, batch_size: int = 256):
    """Images seed .. seed+count-1 from G (eval mode) as numpy uint8 [count, H, W, C] (channels last).

    The sample stage's convention (ganforge.sampling): image i comes from z seeded with seed + i, so the
    result does not depend on batch size, and predict({"count": n, "seed": s}) gives the sample stage's
    images. `classes` is for conditional generators (G.num_classes > 0): one class, or one per image.
    """
    import numpy as np
    import torch

    from ganforge.sampling import latents, to_uint8

    device = next(G.parameters()).device
    num_classes = getattr(G, "num_classes", 0)
    if classes is not None and not num_classes:
        raise GanforgeError("this generator is unconditional: leave `classes` out of the request")
    y = None
    if num_classes:
        if classes is None:
            raise GanforgeError(f"this generator is conditional: give `classes` (0..{num_classes - 1})")
        y = torch.as_tensor(classes if isinstance(classes, list | tuple) else [classes] * count).long()
        if y.shape != (count,) or y.min() < 0 or y.max() >= num_classes:
            raise GanforgeError(f"classes must be one class or {count} classes in 0..{num_classes - 1}")
    out = []
    with torch.no_grad():
        for lo in range(0, count, batch_size):
            n = min(batch_size, count - lo)
            z = latents(seed + lo, n, G.z_dim).to(device)  # [B, z_dim]
            x = G(z) if y is None else G(z, y[lo : lo + n].to(device))  # [B, C, H, W] in [-1, 1]
            out.append(to_uint8(x).permute(0, 2, 3, 1).cpu().numpy())  # [B, H, W, C]
    return np.concatenate(out)


def _registry_lock(root: str | Path | None = None):
    """An exclusive file lock for read-decide-write on the registry from one machine.

    The registry has no compare-and-set: two queued experiments (`dvc queue start -j 2`) finishing together
    could both read the old champion and both move the alias. The lock lives in the DVC project that owns
    the store (queued copies map back to it), so it serialises every process of one workspace. Processes on
    different machines are not serialised; there the last writer wins.
    """
    import contextlib

    try:
        import fcntl
    except ImportError:  # Windows: no flock; single-user use there
        return contextlib.nullcontext()
    base = project_root(root)
    lock_dir = base / ".dvc" / "tmp" if (base / ".dvc").is_dir() else base
    lock_dir.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def held():
        with open(lock_dir / "ganforge-registry.lock", "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    return held()


def log_generator_model(run: Run, generator_path: str | Path, dataset: str) -> int:
    """Log models/generator.pt as an MLflow pyfunc model of `run` and register it as a new version.

    Call from stages/train.py after save_generator(...). The registered model is `ganforge-<dataset>`; the
    version is tagged with the run id, dataset and the generator file's meta, and is returned (an int).
    Load it with mlflow.pyfunc.load_model("models:/ganforge-<dataset>/<version>") or, once evaluate has
    promoted it, "models:/ganforge-<dataset>@champion".
    """
    import numpy as np
    import torch
    from mlflow.models import Model, ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    import ganforge
    from ganforge.nets import load_generator

    generator_path = Path(generator_path)
    G, meta = load_generator(generator_path)  # validates the file before anything is logged
    mlflow.set_tracking_uri(run.client.tracking_uri)
    # the logged model belongs to the run's experiment (mlflow otherwise picks the global/default one)
    mlflow.set_experiment(experiment_id=run.client.get_run(run.run_id).info.experiment_id)
    request = [ColSpec("long", "count"), ColSpec("long", "seed")]
    if getattr(G, "num_classes", 0):  # conditional generators (a later issue) take a class per row
        request.append(ColSpec("long", "classes", required=False))
    signature = ModelSignature(
        inputs=Schema(request),
        outputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, G.resolution, G.resolution, G.channels))]),
    )
    name = registered_model_name(dataset)
    # no per-file download bars in stage logs; the cloudpickle warning is about python_model.pkl, which
    # holds only a reference to GeneratorModel (the code itself ships as code_paths)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
    with warnings.catch_warnings():  # "no input example": the signature above is the contract
        warnings.simplefilter("ignore")
        info = Model.log(
            artifact_path=None,
            name="generator",
            flavor=mlflow.pyfunc,
            run_id=run.run_id,  # explicit: no global active run, so the run's status is left alone
            python_model=GeneratorModel(),
            artifacts={"generator": str(generator_path)},
            code_paths=[str(Path(ganforge.__file__).parent)],
            signature=signature,
            # explicit requirements: skips mlflow's inference, which loads the model in a subprocess
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}",
                              f"mlflow=={mlflow.__version__}", "pandas", "pydantic", "pyyaml"],
            registered_model_name=name,
            await_registration_for=0,  # local and server stores register synchronously
        )
    version = int(info.registered_model_version)
    tags = {"run_id": run.run_id, "dataset": dataset, **{f"meta.{k}": v for k, v in meta.items()}}
    for k, v in tags.items():
        run.client.set_model_version_tag(name, str(version), k, str(v))
    run.set_tags({"registry.model": name, "registry.version": version})
    return version


def model_version_of(run: Run, dataset: str) -> int | None:
    """The newest version of ganforge-<dataset> logged by `run`, or None."""
    name = registered_model_name(dataset)
    found = run.client.search_model_versions(f"name='{name}' and run_id='{run.run_id}'")
    return max((int(v.version) for v in found), default=None)


def champion(c: MlflowClient, dataset: str) -> tuple[int, float | None] | None:
    """(version, fid_ratio) of the current champion of ganforge-<dataset>, or None when there is none."""
    name = registered_model_name(dataset)
    try:
        mv = c.get_model_version_by_alias(name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        return None
    ratio = mv.tags.get("fid_ratio")
    if ratio is None and mv.run_id:  # promoted before tags existed: fall back to its run's metric
        ratio = c.get_run(mv.run_id).data.metrics.get("fid_ratio")
    return int(mv.version), (float(ratio) if ratio is not None else None)


def promote_if_better(run: Run, dataset: str, version: int | None, fid_ratio: float,
                      root: str | Path | None = None) -> dict:
    """Set alias `champion` on `version` of ganforge-<dataset> if its fid_ratio beats the champion's.

    Call from stages/evaluate.py once fid_ratio is known. version None = the version this run registered
    (model_version_of). Lower fid_ratio is better; a tie keeps the current champion; no champion (or one
    without a known fid_ratio) means this version is promoted. The version gets a `fid_ratio` tag; the run
    gets tags registry.decision (promoted | kept | unregistered), registry.champion_version and
    registry.previous_champion_* , and the same dict is returned.
    """
    name = registered_model_name(dataset)
    if version is None:
        version = model_version_of(run, dataset)
    if version is None:
        decision = {"registry.decision": "unregistered", "registry.model": name}
        run.set_tags(decision)
        return decision
    c = run.client
    with _registry_lock(root):
        c.set_model_version_tag(name, str(version), "fid_ratio", repr(float(fid_ratio)))
        current = champion(c, dataset)
        better = current is None or current[1] is None or float(fid_ratio) < current[1]
        if current is not None and current[0] == version:
            better = True  # re-evaluating the champion itself: it stays, with its new fid_ratio
        if better:
            c.set_registered_model_alias(name, CHAMPION, str(version))
    decision = {
        "registry.model": name,
        "registry.version": version,
        "registry.fid_ratio": float(fid_ratio),
        "registry.decision": "promoted" if better else "kept",
        "registry.champion_version": version if better else current[0],
        "registry.previous_champion_version": current[0] if current else "none",
        "registry.previous_champion_fid_ratio": current[1] if current and current[1] is not None else "none",
    }
    run.set_tags(decision)
    return decision


# comparing runs -----------------------------------------------------------------------------------------
COMPARE_PARAMS = ("base.dataset", "train.loss", "train.kimg", "train.lr", "train.batch_size",
                  "train.ema.enabled")
COMPARE_METRICS = ("fid_ratio", "fid", "kid_mean", "precision", "recall", "coverage", "classifier_score")


def experiment_of(run_json: str | Path, root: str | Path | None = None) -> str:
    """The name of the experiment that holds the run recorded in results/train/run.json."""
    run = Run.attach(run_json, root)
    exp_id = run.client.get_run(run.run_id).info.experiment_id
    return run.client.get_experiment(exp_id).name


def compare_runs(experiment: str | None, params=COMPARE_PARAMS, metrics=COMPARE_METRICS,
                 max_results: int = 100, root: str | Path | None = None):
    """The runs of `experiment` as a pandas DataFrame (best fid_ratio first, unevaluated runs last).

    Columns: run_id, run_name, status, then the requested params and metrics that any run has.
    """
    client(root)  # points mlflow at the project's store (or MLFLOW_TRACKING_URI)
    if experiment is None:
        raise GanforgeError("no experiment given (and no results/train/run.json to take it from)")
    if mlflow.get_experiment_by_name(experiment) is None:
        raise GanforgeError(f"no experiment named {experiment!r} in {tracking_uri(root)}")
    df = mlflow.search_runs(experiment_names=[experiment], max_results=max_results,
                            order_by=["metrics.fid_ratio ASC", "attributes.start_time DESC"])
    if df.empty:
        return pd.DataFrame(columns=["run_id", "run_name", "status"])
    df = df.rename(columns={"tags.mlflow.runName": "run_name"})
    # search_runs puts NULL metrics first for ASC on some stores: sort again, NaN last, stable
    if "metrics.fid_ratio" in df.columns:
        df = df.sort_values("metrics.fid_ratio", na_position="last", kind="stable")
    cols = ["run_id", "run_name", "status"]
    cols += [f"params.{p}" for p in params if f"params.{p}" in df.columns]
    cols += [f"metrics.{m}" for m in metrics if f"metrics.{m}" in df.columns]
    out = df.reindex(columns=cols).reset_index(drop=True)
    short = {c: c.split(".", 1)[1] for c in cols if c.startswith(("params.", "metrics."))}
    return out.rename(columns=short)
