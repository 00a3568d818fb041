"""The generator as a registered MLflow model: a pyfunc that answers requests with the sample stage's images.

train logs models/generator.pt with log_generator_model(run, path, dataset), which registers a new version
of `ganforge-<dataset>` and records the sha256 of every file of it in the version's tag ganforge.sha256;
evaluate may then promote it (tracking.promotion). Users call
    load_verified("models:/ganforge-mnist@champion").predict({"count": 16, "seed": 0})
which checks the files against those digests before anything of the model is unpickled. (Plain
mlflow.pyfunc.load_model trusts the artifact store: it runs whatever python_model.pkl it finds there.)
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
import types
import warnings
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd  # resolves GeneratorModel.predict's type hint when the class is created

from ganforge.errors import GanforgeError
from ganforge.tracking.store import Run, fluent_store

# A request is answered in memory: uint8 images plus their float activations while generating. 10,000
# 28x28 images are ~8 MB of output; the cap is per request (all rows together), not per row, so a request
# of many rows cannot add up to an out-of-memory.
MAX_REQUEST_IMAGES = 10_000
# ... and it is bounded in bytes, since the image count alone does not bound the answer: 10,000 64 px RGB
# images are 123 MB of uint8 (issue 34 measured 989 MB for answering them, and 5 GB in MLflow's scoring
# server, whose .tolist() makes a Python list of 8 B a pixel before the JSON text; ~80 GB at 256 px). A
# 32 MiB answer costs the scoring server ~256 MiB of list plus ~130 MB of text, keeps MNIST's whole count
# cap (10,000 x 784 B = 7.8 MB) and still answers 2,730 64 px RGB images (170 at 256 px) per request.
# The default travels in the model's own config (the MLmodel's pyfunc model_config; a serving limit, not
# a hyperparameter, so not in params.yaml); a deployment with memory to spare raises it when loading:
# load_verified(uri, model_config={"max_response_bytes": N}), or for `mlflow models serve`
# MLFLOW_PYFUNC_INFERENCE_CONFIG='{"max_response_bytes": N}'.
MAX_RESPONSE_BYTES = 32 * 2**20
# The class lists of a request (class / classes), all rows together: image i of a row is of
# class[i mod len], so no request can use more entries than it may have images; a longer list is only
# work for the validation and memory for the labels.
MAX_CLASS_ENTRIES = MAX_REQUEST_IMAGES
BATCH_SIZE = 256  # generation batch; images do not depend on it (one seed per image)
# The model version tag holding {path in the model: sha256} of every file logged with it (JSON, sorted).
DIGEST_TAG = "ganforge.sha256"


class RequestError(GanforgeError, ValueError):
    """A request the model refuses (bad field, too many images or bytes, too long a class list). A
    ValueError, so MLflow's scoring server answers it with HTTP 400 (its message in the stack trace)."""


class ModelIntegrityError(GanforgeError):
    """A registered model whose files differ from the sha256 recorded when it was registered."""


def registered_model_name(dataset: str) -> str:
    return f"ganforge-{dataset}"


class GeneratorModel(mlflow.pyfunc.PythonModel):
    """The generator as an MLflow pyfunc: request rows of (count, seed[, class]) -> uint8 images.

    predict input: a DataFrame (or a dict / list of dicts) with one row per request:
      count    int >= 1   images to generate
      seed     int >= 0   image i of the row is drawn from z seeded with seed + i (ganforge.sampling), so
                          an image depends only on its seed (not on count, batching or the other rows)
      class    optional, class-conditional generators only: one class index in [0, K) or a list of them;
               image i of the row is of class[i mod len] (sampling.class_cycle, as the sample stage with
               sample.classes); absent or null: every class in turn. Out of range or not a whole number:
               an error, no images
      classes  optional, the same as a list-valued class (one of the two per row)
    At most MAX_REQUEST_IMAGES images and max_response_bytes bytes of answer (model_config, default
    MAX_RESPONSE_BYTES) per request, and MAX_CLASS_ENTRIES class list entries, all rows together; a request
    over any of them is refused (RequestError, a ValueError) before an image is generated.
    predict output: numpy uint8 [N, H, W, C] with N = sum of counts, rows in request order (a 2-D point
    generator of the toy data sets: float32 coordinates [N, 1, 1, 2]).

    The weights travel as the artifact "generator" (the models/generator.pt file, loaded with
    torch.load(weights_only=True) through ganforge.nets.load_generator); the ganforge package travels as
    the model's code, so loading needs mlflow + torch, not a ganforge install.
    """

    def load_context(self, context) -> None:
        from ganforge.nets import load_generator

        # no global torch.set_grad_enabled(False) here: loading a model must not change the caller's
        # autograd state (sampling.generate runs under no_grad itself)
        self.G, self.meta = load_generator(context.artifacts["generator"], device="cpu")
        limit = (getattr(context, "model_config", None) or {}).get("max_response_bytes", MAX_RESPONSE_BYTES)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise GanforgeError(f"model_config max_response_bytes must be a whole number >= 1, got {limit!r}")
        self.max_response_bytes = limit

    # the DataFrame hint tells mlflow to take our explicit signature instead of inferring one from hints
    def predict(self, context, model_input: pd.DataFrame, params=None):
        from ganforge.sampling import class_cycle, class_names, draws_points, generate

        if not isinstance(model_input, pd.DataFrame):  # a dict is one request, a list of dicts several
            model_input = pd.DataFrame(model_input if isinstance(model_input, list) else [model_input])
        names = class_names(self.G, self.meta) if self.G.num_classes else []
        shape = (self.G.resolution, self.G.resolution, self.G.channels)
        dtype = np.dtype(np.float32 if draws_points(self.G) else np.uint8)  # 2-D points: coordinates
        per_image = math.prod(shape) * dtype.itemsize
        limit = getattr(self, "max_response_bytes", MAX_RESPONSE_BYTES)
        rows = request_rows(model_input, names, bytes_per_image=per_image, max_bytes=limit)
        # the answer is allocated once, at the size just checked, and filled batch by batch: no list of
        # per-row arrays to concatenate (twice the answer), no row generated whole in float
        out = np.empty((sum(count for count, _, _ in rows), *shape), dtype)
        done = 0  # images written so far, all rows: the answer's running total is done * per_image bytes
        for count, seed, classes in rows:
            labels = class_cycle(count, classes) if names else None
            for lo in range(0, count, BATCH_SIZE):
                n = min(BATCH_SIZE, count - lo)
                x = generate(self.G, n, seed=seed + lo, batch_size=BATCH_SIZE,
                             labels=None if labels is None else labels[lo : lo + n]).transpose(0, 2, 3, 1)
                if x.shape != (n, *shape) or x.dtype != dtype or (done + n) * per_image > limit:
                    # a generator whose output is not what its meta declares must not outgrow the bound
                    raise GanforgeError(f"the generator made {x.dtype} {list(x.shape)} for {n} images, "
                                        f"not {dtype} {[n, *shape]}: the answer would exceed its bound")
                out[done : done + n] = x
                done += n
        return out


def _whole_number(value, what: str, row: int) -> int:
    """An integer-valued request field; NaN, fractions, strings and booleans are refused by name."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value != int(value):
        raise RequestError(f"request row {row}: {what} must be a whole number, got {value!r}")
    return int(value)


def _class_field(value) -> object | None:
    """A row's class: None when absent (NaN or None in a column other rows fill), else as given."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def request_rows(df: pd.DataFrame, names: list[str] | None = None, bytes_per_image: int | None = None,
                 max_bytes: int = MAX_RESPONSE_BYTES) -> list[tuple[int, int, list[int]]]:
    """Validate a request table; returns [(count, seed, class indices)] (RequestError on bad input).
    names: the classes of a conditional generator (empty or None: unconditional, which takes no class);
    a row without a class gets every class. bytes_per_image: what one image of the answer takes; the
    answer may take at most max_bytes."""
    missing = {"count", "seed"} - set(df.columns)
    if missing:
        raise RequestError(f"request needs columns count and seed (missing: {', '.join(sorted(missing))})")
    rows, class_entries = [], 0
    for i, r in enumerate(df.to_dict("records")):
        count, seed = _whole_number(r["count"], "count", i), _whole_number(r["seed"], "seed", i)
        if count < 1 or seed < 0:
            raise RequestError(f"request row {i}: need count >= 1 and seed >= 0, got count={count}, "
                               f"seed={seed}")
        wanted, alias = _class_field(r.get("class")), _class_field(r.get("classes"))
        if wanted is not None and alias is not None:
            raise RequestError(f"request row {i}: give class or classes, not both")
        wanted = alias if wanted is None else wanted
        if wanted is None:
            classes = list(range(len(names or [])))
        else:
            from ganforge.sampling import resolve_classes

            # counted before any entry is looked at: a long list costs nothing but this len()
            class_entries += len(wanted) if isinstance(wanted, list | tuple | np.ndarray) else 1
            if class_entries > MAX_CLASS_ENTRIES:
                raise RequestError(f"request row {i}: a request's class lists may have at most "
                                   f"{MAX_CLASS_ENTRIES} class entries in all rows together (image i of a "
                                   "row is of class[i mod len]: entries past the images are never used)")
            try:
                classes = resolve_classes(wanted, list(names or []), f"request row {i}: class",
                                          by_name=False)
            except GanforgeError as e:
                raise RequestError(str(e)) from None
        rows.append((count, seed, classes))
    total = sum(count for count, _, _ in rows)
    if total > MAX_REQUEST_IMAGES:
        raise RequestError(f"a request may ask for at most {MAX_REQUEST_IMAGES} images in all rows "
                           f"together, got {total}: split it into several requests")
    if bytes_per_image is not None and total * bytes_per_image > max_bytes:
        raise RequestError(f"a request's answer may take at most {max_bytes} bytes (max_response_bytes), "
                           f"got {total * bytes_per_image} ({total} images of {bytes_per_image} bytes): ask "
                           f"for at most {max_bytes // bytes_per_image} images per request")
    return rows


def log_generator_model(run: Run, generator_path: str | Path, dataset: str) -> int:
    """Log models/generator.pt as an MLflow pyfunc model of `run` and register it as a new version.

    The registered model is `ganforge-<dataset>`; the version is tagged with the sha256 of every file of
    the model as it was uploaded (DIGEST_TAG), the run id, dataset and the generator file's meta, and is
    returned (an int). Load it with load_verified("models:/ganforge-<dataset>/<version>") or, once
    evaluate has promoted it, "models:/ganforge-<dataset>@champion".
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec
    from mlflow.types.schema import AnyType, Array

    from ganforge.nets import load_generator
    from ganforge.sampling import draws_points

    generator_path = Path(generator_path)
    G, meta = load_generator(generator_path)  # validates the file before anything is logged
    points = draws_points(G)
    signature = ModelSignature(
        # class: an int or a list of ints (conditional generators), checked by request_rows. The Array
        # column also makes mlflow read a dict as ONE request row: without one it would spread a dict whose
        # class is a list over one row per class, each with the whole count
        inputs=Schema([ColSpec("long", "count"), ColSpec("long", "seed"),
                       ColSpec(AnyType(), "class", required=False),
                       ColSpec(Array("long"), "classes", required=False)]),
        # a generator of 2-D points (the MLP) answers float32 coordinates [N, 1, 1, 2]
        outputs=Schema([TensorSpec(np.dtype(np.float32 if points else np.uint8),
                                   (-1, G.resolution, G.resolution, G.channels))]),
    )
    name = registered_model_name(dataset)
    description = (f"ganforge generator trained on {dataset}. predict rows of count (int >= 1) and seed "
                   f"(int >= 0); image i of a row comes from seed + i; at most {MAX_REQUEST_IMAGES} images "
                   "per request; returns " + ("float32 points [N, 1, 1, 2] (2-D coordinates)."
                                              if points else "uint8 [N, H, W, C]."))
    if G.num_classes:
        description += (f" Class-conditional ({G.num_classes} classes: "
                        f"{', '.join(meta.get('classes', []))}): a row may add class, an index or a list of "
                        "them (image i of the row is of class[i mod len]).")
    version = _register(run, name, "generator", GeneratorModel(), {"generator": str(generator_path)},
                        signature, {"max_response_bytes": MAX_RESPONSE_BYTES}, description,
                        {"dataset": dataset, **{f"meta.{k}": v for k, v in meta.items()}})
    run.set_tags({"registry.model": name, "registry.version": version})
    return version


def _register(run: Run, name: str, logged_as: str, python_model, artifacts: dict, signature,
              model_config: dict, description: str, tags: dict) -> int:
    """Log python_model with `artifacts` as the MLflow pyfunc model `logged_as` of `run`, register it as a
    new version of `name` tagged with the sha256 of every file as uploaded (DIGEST_TAG, first), the run id
    and `tags`, and return the version (an int)."""
    import torch
    from mlflow.models import Model

    import ganforge

    # no per-file download bars in stage logs; the cloudpickle warning is about python_model.pkl, which
    # holds only a reference to the model class (the code itself ships as code_paths)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
    # the logged model belongs to the run's experiment (mlflow otherwise picks the global/default one)
    experiment = run.client.get_run(run.run_id).info.experiment_id
    flavor = _DigestingPyfunc(model_config)
    with warnings.catch_warnings(), fluent_store(run.client.tracking_uri, experiment):
        warnings.simplefilter("ignore")  # "no input example": the signature is the contract
        info = Model.log(
            artifact_path=None,
            name=logged_as,
            flavor=flavor,
            run_id=run.run_id,  # explicit: no global active run, so the run's status is left alone
            python_model=python_model,
            artifacts=artifacts,
            code_paths=[str(Path(ganforge.__file__).parent)],
            signature=signature,
            # explicit requirements: skips mlflow's inference, which loads the model in a subprocess
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}",
                              f"mlflow=={mlflow.__version__}", "pandas", "pydantic", "pyyaml"],
            registered_model_name=name,
            await_registration_for=0,  # local and server stores register synchronously
        )
    version = int(info.registered_model_version)
    if flavor.digests is None:  # Model.log did not save through the flavor: nothing to vouch for the files
        raise GanforgeError(f"{name} version {version}: its files were not hashed when saved")
    # first of the tags: a version without it is never loaded, promoted or trusted by compare
    run.client.set_model_version_tag(name, str(version), DIGEST_TAG,
                                     json.dumps(flavor.digests, sort_keys=True))
    run.client.update_model_version(name, str(version), description=description)
    for k, v in {"run_id": run.run_id, **tags}.items():
        run.client.set_model_version_tag(name, str(version), k, str(v))
    return version


# integrity ------------------------------------------------------------------------------------------------
def file_digests(root: str | Path) -> dict[str, str]:
    """{path relative to root (posix): sha256 hex} of every file under root. A symbolic link is refused:
    a model's files are plain files, and a link could point anywhere."""
    root = Path(root)
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            raise ModelIntegrityError(f"{rel}: a symbolic link, not a file of the model")
        if p.is_file():
            h = hashlib.sha256()
            with open(p, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
            out[rel] = h.hexdigest()
    return out


def _digesting_save(model_config: dict, record: types.SimpleNamespace):
    def save_model(path, **kwargs):
        # model_config here rather than in Model.log's arguments, which would also log it as params of the
        # training run (its params are params.yaml's)
        mlflow.pyfunc.save_model(path, model_config=model_config, **kwargs)
        for pycache in Path(path).rglob("__pycache__"):  # what Model.log removes before uploading
            shutil.rmtree(pycache, ignore_errors=True)
        record.digests = file_digests(path)  # the files exactly as they are about to be uploaded

    return save_model


def _DigestingPyfunc(model_config: dict) -> types.SimpleNamespace:  # noqa: N802 (stands for a module)
    """mlflow.pyfunc as Model.log's flavor, recording the sha256 of each file it saved (in .digests):
    hashed from the local copy Model.log uploads, so what is recorded is what was logged, not what the
    artifact store holds by the time it is read back."""
    record = types.SimpleNamespace(__name__="mlflow.pyfunc", digests=None)  # __name__: the logged flavor
    record.save_model = _digesting_save(model_config, record)
    return record


_MLFLOW_META_FILE = "registered_model_meta"  # mlflow.store.artifact.models_artifact_repo's, not the model's
_MODEL_URI = re.compile(r"models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[^/@]+))/?")


def _model_version(client, model_uri: str):
    """The registered model version a models:/<name>/<version> or models:/<name>@<alias> URI names,
    resolved once (an alias moved afterwards does not change what is checked and loaded)."""
    m = _MODEL_URI.fullmatch(model_uri.strip())
    if not m:
        raise GanforgeError(f"{model_uri!r}: a registered version is needed, models:/<name>/<version> or "
                            "models:/<name>@<alias> (only those carry the sha256 of their files)")
    if m["alias"]:
        return client.get_model_version_by_alias(m["name"], m["alias"])
    return client.get_model_version(m["name"], m["version"])


def verified_copy(client, name: str, version: int | str, dst: str | Path | None = None) -> Path:
    """Download version `version` of registered model `name` and check every file against the sha256
    recorded at registration (DIGEST_TAG); returns the local copy, or raises ModelIntegrityError naming
    each file that is missing, changed or not part of the model (the copy is then removed). Nothing is
    unpickled or imported. dst: an empty folder to download into (default: a new temporary one)."""
    mv = client.get_model_version(name, str(version))
    what = f"{name} version {mv.version}"
    try:
        recorded = json.loads(mv.tags[DIGEST_TAG])
        if not isinstance(recorded, dict) or not recorded:
            raise ValueError("not a non-empty mapping")
    except KeyError:
        raise ModelIntegrityError(f"{what} has no recorded sha256 of its files (tag {DIGEST_TAG}: registered "
                                  "before ganforge recorded them, or its registration was cut short), so "
                                  "its files cannot be checked: not trusted") from None
    except ValueError as e:
        raise ModelIntegrityError(f"{what}: its tag {DIGEST_TAG} is unreadable ({e}): not trusted") from None
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bar per file in stage logs
    made = dst is None
    dst = Path(tempfile.mkdtemp(prefix=f"ganforge-{name}-{mv.version}-") if made else dst)
    local = None
    try:
        from mlflow.artifacts import download_artifacts

        # the version's own artifact location, not models:/..., whose download adds a file of its own
        uri = client.get_model_version_download_uri(name, str(mv.version))
        local = Path(download_artifacts(artifact_uri=uri, dst_path=str(dst),
                                        tracking_uri=client.tracking_uri))
        # mlflow writes this {model_name, model_version} YAML next to the model when a local store's version
        # is loaded through models:/... (in the store itself): not a file of the model, read as plain YAML,
        # never run; it leaves the checked copy, so what is loaded is exactly the registered files
        if (local / _MLFLOW_META_FILE).is_file() and not (local / _MLFLOW_META_FILE).is_symlink():
            (local / _MLFLOW_META_FILE).unlink()
        actual = file_digests(local)
        problems = [f"{p}: changed" for p in sorted(recorded) if p in actual and actual[p] != recorded[p]]
        problems += [f"{p}: missing" for p in sorted(recorded) if p not in actual]
        problems += [f"{p}: not in the registered model" for p in sorted(actual) if p not in recorded]
        if problems:
            more = f"; and {len(problems) - 10} more" if len(problems) > 10 else ""
            raise ModelIntegrityError(
                f"{what} does not match the sha256 recorded when it was registered "
                f"({'; '.join(problems[:10])}{more}): its files were changed in the artifact store since, "
                "so nothing of it is loaded or trusted")
        return local
    except BaseException:
        if made or local is not None:
            shutil.rmtree(dst if made else local, ignore_errors=True)
        raise


def integrity_problem(client, name: str, version: int | str) -> str | None:
    """None when the version's files match their recorded sha256, else why not. For promotion and
    compare, which check without loading: the downloaded copy is removed either way."""
    with tempfile.TemporaryDirectory(prefix="ganforge-check-") as tmp:
        try:
            verified_copy(client, name, version, tmp)
        except ModelIntegrityError as e:
            return str(e)
    return None


def download_verified(model_uri: str, dst: str | Path | None = None, tracking_uri: str | None = None) -> Path:
    """The registered model `model_uri` (models:/<name>/<version> or models:/<name>@<alias>) downloaded
    and checked file by file against the sha256 recorded at registration; returns the local folder (for
    `mlflow models serve -m <folder>`). tracking_uri: default MLFLOW_TRACKING_URI, else the project's
    store, as the stages use."""
    from mlflow import MlflowClient

    from ganforge.tracking.store import tracking_uri as default_uri

    client = MlflowClient(tracking_uri or default_uri())
    mv = _model_version(client, model_uri)
    return verified_copy(client, mv.name, mv.version, dst)


def load_verified(model_uri: str, model_config: dict | None = None, tracking_uri: str | None = None,
                  dst: str | Path | None = None):
    """mlflow.pyfunc.load_model for a registered generator, but only once every file of it matches the
    sha256 recorded when it was registered (ModelIntegrityError naming the files otherwise, before
    anything is unpickled). The pyfunc is loaded from the checked local copy, so what runs is what was
    checked (a new temporary folder unless dst, kept: the model's code is imported from it).
    model_config: e.g. {"max_response_bytes": N} to change the model's response bound."""
    local = download_verified(model_uri, dst, tracking_uri)
    return mlflow.pyfunc.load_model(str(local), model_config=model_config)


# inpainting -----------------------------------------------------------------------------------------------
# Each image of an inpainting request is a projection (invert.project.steps optimisation steps): about
# 0.1 s an image on a CPU, so a request is bounded in images, not bytes.
MAX_INPAINT_IMAGES = 256


def inpainting_model_name(dataset: str) -> str:
    return f"ganforge-{dataset}-inpaint"


class InpaintingModel(mlflow.pyfunc.PythonModel):
    """The generator as an inpainting prior (ganforge.invert): request rows of (image, mask) -> uint8 images
    with the holes filled by masked inversion and every known pixel as it was.

    predict input: a DataFrame or a list of dicts, one row per image (mlflow spreads a lone dict of arrays
    over one row per array entry, so wrap one image in a list):
      image  uint8 values [H, W] (grey) or [H, W, C]: the generator's size and channels
      mask   [H, W]: nonzero = hole; a mask without a hole or without a known pixel is refused
    At most MAX_INPAINT_IMAGES rows per request, projected as one batch (one bank warm start for all):
    row i's projection noise is seeded with i, so a request answers the same every time.
    predict output: numpy uint8 [N, H, W, C].
    The projector's settings are the inpaint stage's invert.project, carried in the model's config
    ({"project": {...}}); the artifacts are the generator and the judge (the perceptual term).
    """

    def load_context(self, context) -> None:
        from ganforge.config import Project
        from ganforge.metrics import load_evaluator
        from ganforge.nets import load_generator

        self.G, self.meta = load_generator(context.artifacts["generator"], device="cpu")
        self.judge, _ = load_evaluator(context.artifacts["evaluator"], device="cpu")
        self.project = Project.model_validate((getattr(context, "model_config", None) or {})["project"])

    def predict(self, context, model_input: pd.DataFrame, params=None):
        from ganforge.invert.inpaint import compose
        from ganforge.invert.projector import invert

        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input if isinstance(model_input, list) else [model_input])
        targets, holes = inpainting_rows(model_input, self.G.channels, self.G.resolution)
        P = invert(self.G, targets, holes, self.project, judge=self.judge, seed=0, batch_size=len(targets),
                   device="cpu")
        return compose(targets, P.images, holes).transpose(0, 2, 3, 1)  # [N, H, W, C]


def inpainting_rows(df: pd.DataFrame, channels: int, resolution: int):
    """Validate an inpainting request: (images uint8 [N, C, H, W], holes bool [N, 1, H, W]), or
    RequestError naming the row and what is wrong."""
    missing = {"image", "mask"} - set(df.columns)
    if missing:
        raise RequestError(f"an inpainting request needs columns image and mask (missing: "
                           f"{', '.join(sorted(missing))})")
    if len(df) > MAX_INPAINT_IMAGES:
        raise RequestError(f"an inpainting request may hold at most {MAX_INPAINT_IMAGES} images, got "
                           f"{len(df)}: split it")
    want = (resolution, resolution)
    images, holes = [], []
    for i, r in enumerate(df.to_dict("records")):
        try:
            x = np.asarray(r["image"], dtype=np.float64)
            m = np.asarray(r["mask"], dtype=np.float64)
        except (TypeError, ValueError):
            raise RequestError(f"request row {i}: image and mask must be arrays of numbers") from None
        if x.ndim == 2:
            x = x[:, :, None]
        if x.ndim != 3 or x.shape[:2] != want or x.shape[2] != channels:
            raise RequestError(f"request row {i}: image of shape {list(x.shape)}, but the generator draws "
                               f"[{resolution}, {resolution}, {channels}] (H, W, C); send a list of rows, "
                               "one {image, mask} mapping per image (a lone mapping is spread over its rows)")
        if not np.isfinite(x).all() or x.min() < 0 or x.max() > 255 or (x != np.round(x)).any():
            raise RequestError(f"request row {i}: image values must be whole numbers in 0..255")
        if m.shape != want:
            raise RequestError(f"request row {i}: mask of shape {list(m.shape)}, the image is {list(want)}")
        hole = m != 0
        if not hole.any() or hole.all():
            raise RequestError(f"request row {i}: the mask has " + ("no hole (no nonzero value)"
                                                                    if not hole.any() else "no known pixel"))
        images.append(x.astype(np.uint8).transpose(2, 0, 1))
        holes.append(hole[None])
    return np.stack(images), np.stack(holes)


def log_inpainting_model(run: Run, generator_path: str | Path, evaluator_path: str | Path, dataset: str,
                         project: dict) -> int:
    """Register the generator and judge as a new version of ganforge-<dataset>-inpaint (InpaintingModel),
    with the projector settings `project` (config.Project, as a dict) in its model config."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec
    from mlflow.types.schema import AnyType

    from ganforge.nets import load_generator

    G, meta = load_generator(generator_path)
    signature = ModelSignature(
        inputs=Schema([ColSpec(AnyType(), "image"), ColSpec(AnyType(), "mask")]),
        outputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, G.resolution, G.resolution, G.channels))]),
    )
    name = inpainting_model_name(dataset)
    description = (f"ganforge inpainting by masked inversion of a generator trained on {dataset}. predict "
                   f"rows of image (uint8 [{G.resolution}, {G.resolution}, {G.channels}]) and mask "
                   f"([{G.resolution}, {G.resolution}], nonzero = hole); at most "
                   f"{MAX_INPAINT_IMAGES} rows; returns uint8 [N, H, W, C], known pixels unchanged.")
    return _register(run, name, "inpainting", InpaintingModel(),
                     {"generator": str(generator_path), "evaluator": str(evaluator_path)}, signature,
                     {"project": dict(project)}, description,
                     {"dataset": dataset, **{f"meta.{k}": v for k, v in meta.items()}})


# super-resolution ----------------------------------------------------------------------------------------
# LR pixels per request, all rows together: the output is scale^2 times as many (x4: a 4-Mpx request answers
# 64 Mpx, 192 MB of uint8 RGB); the model upscales in tiles, so memory for activations stays one tile's.
MAX_SR_PIXELS = 4 * 2**20
SR_TILE = 128  # LR pixels per tile side (the tiles' overlap is the model's receptive radius: seam-free)


def sr_model_name(set_name: str) -> str:
    return f"ganforge-{set_name}-sr"


class SuperResolutionModel(mlflow.pyfunc.PythonModel):
    """An SR network (ganforge.superres) as a pyfunc: request rows of image -> the upscaled images.

    predict input: a DataFrame or a list of dicts, one row per image: image, uint8 values [h, w] (grey) or
    [h, w, C] of any size (at most MAX_SR_PIXELS LR pixels per request, all rows together).
    predict output: a DataFrame with one column, image: uint8 [h * scale, w * scale, C] per row, computed
    in seam-free tiles of model_config["tile"] LR pixels."""

    def load_context(self, context) -> None:
        from ganforge.superres.nets import load_sr

        self.net, self.meta = load_sr(context.artifacts["model"], device="cpu")
        self.tile = int((getattr(context, "model_config", None) or {}).get("tile", SR_TILE))

    def predict(self, context, model_input: pd.DataFrame, params=None):
        from ganforge.superres.tiles import upscale

        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input if isinstance(model_input, list) else [model_input])
        images = sr_rows(model_input, self.net.channels)
        return pd.DataFrame({"image": [upscale(self.net, x, tile=self.tile).transpose(1, 2, 0)
                                       for x in images]})


def sr_rows(df: pd.DataFrame, channels: int) -> list[np.ndarray]:
    """Validate a super-resolution request: uint8 [C, h, w] per row, or RequestError naming the row."""
    if "image" not in df.columns:
        raise RequestError("a super-resolution request needs a column image")
    images, pixels = [], 0
    for i, r in enumerate(df.to_dict("records")):
        try:
            x = np.asarray(r["image"], dtype=np.float64)
        except (TypeError, ValueError):
            raise RequestError(f"request row {i}: image must be an array of numbers") from None
        x = x[:, :, None] if x.ndim == 2 else x
        if x.ndim != 3 or x.shape[2] != channels or min(x.shape[:2]) < 1:
            raise RequestError(f"request row {i}: image of shape {list(x.shape)}, but the model upscales "
                               f"[h, w, {channels}] images (send a list of rows, one {{image}} each)")
        if not np.isfinite(x).all() or x.min() < 0 or x.max() > 255 or (x != np.round(x)).any():
            raise RequestError(f"request row {i}: image values must be whole numbers in 0..255")
        pixels += x.shape[0] * x.shape[1]
        if pixels > MAX_SR_PIXELS:
            raise RequestError(f"a super-resolution request may hold at most {MAX_SR_PIXELS} LR pixels, all "
                               "rows together: split it")
        images.append(x.astype(np.uint8).transpose(2, 0, 1))
    return images


def log_sr_model(run: Run, model_path: str | Path, set_name: str, stage: str) -> int:
    """Register an SR model file as a new version of ganforge-<set>-sr (SuperResolutionModel), tagged with
    its stage (psnr: the distortion-optimal model; gan: the perceptual one)."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema
    from mlflow.types.schema import AnyType

    from ganforge.superres.nets import load_sr

    net, meta = load_sr(model_path)
    signature = ModelSignature(inputs=Schema([ColSpec(AnyType(), "image")]),
                               outputs=Schema([ColSpec(AnyType(), "image")]))
    description = (f"ganforge x{net.scale} super-resolution ({stage} stage) trained on {set_name}. predict "
                   f"rows of image (uint8 [h, w] or [h, w, {net.channels}], any size; at most "
                   f"{MAX_SR_PIXELS} LR pixels per request); returns a column image of uint8 "
                   f"[h * {net.scale}, w * {net.scale}, {net.channels}], upscaled in seam-free tiles.")
    return _register(run, sr_model_name(set_name), "superres", SuperResolutionModel(),
                     {"model": str(model_path)}, signature, {"tile": SR_TILE}, description,
                     {"set": set_name, "stage": stage, **{f"meta.{k}": v for k, v in meta.items()}})


# translation ----------------------------------------------------------------------------------------------
MAX_TRANSLATE_IMAGES = 4096  # images per request, all rows together (a 64 px RGB image is 12 KiB)


def translation_model_name(model: str) -> str:
    return f"ganforge-{model}-translate"


class TranslationModel(mlflow.pyfunc.PythonModel):
    """A translation model (ganforge.translate) as a pyfunc: request rows of image (and direction) -> the
    translated images.

    predict input: a DataFrame or a list of dicts, one row per image: image, uint8 values [H, W] (grey) or
    [H, W, C] of exactly the model's size and the source domain's channels; direction, "ab" (A -> B, the
    default) or "ba" (CycleGAN only). predict output: a DataFrame with one column, image: uint8 [H, W, C]
    of the target domain. A bad row is a RequestError naming it, and nothing is translated."""

    def load_context(self, context) -> None:
        from ganforge.translate.nets import load_translators

        self.net, self.meta = load_translators(context.artifacts["model"], device="cpu")

    def predict(self, context, model_input: pd.DataFrame, params=None):
        import torch

        from ganforge.translate.run import apply

        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input if isinstance(model_input, list) else [model_input])
        rows = translation_rows(model_input, self.net, self.meta)
        out: list[np.ndarray | None] = [None] * len(rows)
        for direction in self.net.directions:  # one batch per direction, in the request's order
            index = [i for i, (d, _) in enumerate(rows) if d == direction]
            if index:
                y = apply(self.net, np.stack([rows[i][1] for i in index]), direction, torch.device("cpu"))
                for i, img in zip(index, y, strict=True):
                    out[i] = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
        return pd.DataFrame({"image": out})


def translation_rows(df: pd.DataFrame, net, meta: dict) -> list[tuple[str, np.ndarray]]:
    """Validate a translation request: (direction, uint8 [C, H, W]) per row, or RequestError naming it."""
    if "image" not in df.columns:
        raise RequestError("a translation request needs a column image (and optionally direction)")
    if len(df) > MAX_TRANSLATE_IMAGES:
        raise RequestError(f"a translation request may hold at most {MAX_TRANSLATE_IMAGES} images: split it")
    rows = []
    for i, r in enumerate(df.to_dict("records")):
        direction = r.get("direction", "ab")
        direction = "ab" if direction is None or (isinstance(direction, float) and math.isnan(direction)) \
            else direction
        if direction not in net.directions:
            ways = " or ".join(repr(d) for d in net.directions)
            back = " and back" if len(net.directions) > 1 else ""
            raise RequestError(f"request row {i}: direction {direction!r}; this model translates {ways} "
                               f"({' -> '.join(meta['domains'])}{back})")
        c_in = net.channels(direction)[0]
        side = meta["shape"]["a" if direction == "ab" else "b"][1:]
        try:
            x = np.asarray(r["image"])
        except (TypeError, ValueError):
            raise RequestError(f"request row {i}: image must be an array of numbers") from None
        x = x[:, :, None] if x.ndim == 2 else x
        if x.ndim != 3 or list(x.shape) != [*side, c_in]:
            raise RequestError(f"request row {i}: image of shape {list(x.shape)}, but direction {direction} "
                               f"translates [{side[0]}, {side[1]}, {c_in}] images")
        if x.dtype != np.uint8:
            if x.dtype.kind not in "iuf" or not np.isfinite(x).all() or x.min() < 0 or x.max() > 255 \
                    or (x != np.round(x)).any():
                raise RequestError(f"request row {i}: image values must be uint8 (whole numbers in 0..255), "
                                   f"got {x.dtype}")
            x = x.astype(np.uint8)
        rows.append((direction, np.ascontiguousarray(x.transpose(2, 0, 1))))
    return rows


def log_translation_model(run: Run, model_path: str | Path, model: str) -> int:
    """Register a translation model file as a new version of ganforge-<model>-translate."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema
    from mlflow.types.schema import AnyType

    from ganforge.translate.nets import load_translators

    net, meta = load_translators(model_path)
    signature = ModelSignature(inputs=Schema([ColSpec(AnyType(), "image"), ColSpec(AnyType(), "direction",
                                                                                   required=False)]),
                               outputs=Schema([ColSpec(AnyType(), "image")]))
    a, b = meta["domains"]
    description = (f"ganforge {net.model} translation {a} -> {b}"
                   f"{f' and {b} -> {a}' if 'ba' in net.directions else ''}, trained on {meta['dataset']}. "
                   f"predict rows of image (uint8 [H, W] or [H, W, C] of the source domain's size: "
                   f"{meta['shape']}) and direction ({', '.join(net.directions)}; default ab); returns a "
                   "column image of the translations, uint8 [H, W, C] of the target domain.")
    return _register(run, translation_model_name(model), "translation", TranslationModel(),
                     {"model": str(model_path)}, signature, {}, description,
                     {"model": model, **{f"meta.{k}": v for k, v in meta.items()}})
