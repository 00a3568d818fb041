"""The generator as a registered MLflow model: a pyfunc that answers requests with the sample stage's images.

train logs models/generator.pt with log_generator_model(run, path, dataset), which registers a new version
of `ganforge-<dataset>`; evaluate may then promote it (tracking.promotion). Users call
    mlflow.pyfunc.load_model("models:/ganforge-mnist@champion").predict({"count": 16, "seed": 0})
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from pathlib import Path

import mlflow
import pandas as pd  # resolves GeneratorModel.predict's type hint when the class is created

from ganforge.errors import GanforgeError
from ganforge.tracking.store import Run, fluent_store

# A request is answered in memory: uint8 images plus their float activations while generating. 10,000
# 28x28 images are ~8 MB of output; the cap is per request (all rows together), not per row, so a request
# of many rows cannot add up to an out-of-memory.
MAX_REQUEST_IMAGES = 10_000
BATCH_SIZE = 256  # generation batch; images do not depend on it (one seed per image)


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
    At most MAX_REQUEST_IMAGES images per request, all rows together.
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

    # the DataFrame hint tells mlflow to take our explicit signature instead of inferring one from hints
    def predict(self, context, model_input: pd.DataFrame, params=None):
        import numpy as np

        from ganforge.sampling import generate

        if not isinstance(model_input, pd.DataFrame):  # a dict is one request, a list of dicts several
            model_input = pd.DataFrame(model_input if isinstance(model_input, list) else [model_input])
        from ganforge.sampling import class_cycle, class_names

        names = class_names(self.G, self.meta) if self.G.num_classes else []
        out = [generate(self.G, count, seed=seed, batch_size=BATCH_SIZE,
                        labels=class_cycle(count, classes) if names else None).transpose(0, 2, 3, 1)
               for count, seed, classes in request_rows(model_input, names)]  # each uint8 [count, H, W, C]
        shape = (self.G.resolution, self.G.resolution, self.G.channels)
        dtype = np.float32 if getattr(self.G, "points", False) else np.uint8  # 2-D points: coordinates
        return np.concatenate(out) if out else np.zeros((0, *shape), dtype)


def _whole_number(value, what: str, row: int) -> int:
    """An integer-valued request field; NaN, fractions, strings and booleans are refused by name."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value != int(value):
        raise GanforgeError(f"request row {row}: {what} must be a whole number, got {value!r}")
    return int(value)


def _class_field(value) -> object | None:
    """A row's class: None when absent (NaN or None in a column other rows fill), else as given."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def request_rows(df: pd.DataFrame, names: list[str] | None = None) -> list[tuple[int, int, list[int]]]:
    """Validate a request table; returns [(count, seed, class indices)] (GanforgeError on bad input).
    names: the classes of a conditional generator (empty or None: unconditional, which takes no class);
    a row without a class gets every class."""
    missing = {"count", "seed"} - set(df.columns)
    if missing:
        raise GanforgeError(f"request needs columns count and seed (missing: {', '.join(sorted(missing))})")
    rows = []
    for i, r in enumerate(df.to_dict("records")):
        count, seed = _whole_number(r["count"], "count", i), _whole_number(r["seed"], "seed", i)
        if count < 1 or seed < 0:
            raise GanforgeError(f"request row {i}: need count >= 1 and seed >= 0, got count={count}, "
                                f"seed={seed}")
        wanted, alias = _class_field(r.get("class")), _class_field(r.get("classes"))
        if wanted is not None and alias is not None:
            raise GanforgeError(f"request row {i}: give class or classes, not both")
        wanted = alias if wanted is None else wanted
        if wanted is None:
            classes = list(range(len(names or [])))
        else:
            from ganforge.sampling import resolve_classes

            classes = resolve_classes(wanted, list(names or []), f"request row {i}: class", by_name=False)
        rows.append((count, seed, classes))
    total = sum(count for count, _, _ in rows)
    if total > MAX_REQUEST_IMAGES:
        raise GanforgeError(f"a request may ask for at most {MAX_REQUEST_IMAGES} images in all rows "
                            f"together, got {total}: split it into several requests")
    return rows


def log_generator_model(run: Run, generator_path: str | Path, dataset: str) -> int:
    """Log models/generator.pt as an MLflow pyfunc model of `run` and register it as a new version.

    The registered model is `ganforge-<dataset>`; the version is tagged with the run id, dataset and the
    generator file's meta, and is returned (an int). Load it with
    mlflow.pyfunc.load_model("models:/ganforge-<dataset>/<version>") or, once evaluate has promoted it,
    "models:/ganforge-<dataset>@champion".
    """
    import numpy as np
    import torch
    from mlflow.models import Model, ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec
    from mlflow.types.schema import AnyType, Array

    import ganforge
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
    # no per-file download bars in stage logs; the cloudpickle warning is about python_model.pkl, which
    # holds only a reference to GeneratorModel (the code itself ships as code_paths)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
    # the logged model belongs to the run's experiment (mlflow otherwise picks the global/default one)
    experiment = run.client.get_run(run.run_id).info.experiment_id
    with warnings.catch_warnings(), fluent_store(run.client.tracking_uri, experiment):
        warnings.simplefilter("ignore")  # "no input example": the signature above is the contract
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
    description = (f"ganforge generator trained on {dataset}. predict rows of count (int >= 1) and seed "
                   f"(int >= 0); image i of a row comes from seed + i; at most {MAX_REQUEST_IMAGES} images "
                   "per request; returns " + ("float32 points [N, 1, 1, 2] (2-D coordinates)."
                                              if points else "uint8 [N, H, W, C]."))
    if G.num_classes:
        description += (f" Class-conditional ({G.num_classes} classes: "
                        f"{', '.join(meta.get('classes', []))}): a row may add class, an index or a list of "
                        "them (image i of the row is of class[i mod len]).")
    run.client.update_model_version(name, str(version), description=description)
    tags = {"run_id": run.run_id, "dataset": dataset, **{f"meta.{k}": v for k, v in meta.items()}}
    for k, v in tags.items():
        run.client.set_model_version_tag(name, str(version), k, str(v))
    run.set_tags({"registry.model": name, "registry.version": version})
    return version
