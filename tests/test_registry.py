"""Model registry: the generator as an MLflow pyfunc, versions under ganforge-<dataset>, the champion alias.

Against a real sqlite store in tmp_path, with untrained generators (the registry does not care how good
the weights are; the fid_ratio values are given).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import untrained_generator
from ganforge.errors import GanforgeError
from ganforge.nets import load_generator, save_generator
from ganforge.sampling import generate
from ganforge.tracking import promotion, serving
from ganforge.tracking.store import Run


def make_generator(path, seed: int) -> str:
    G = untrained_generator(seed)
    save_generator(path, G, meta={"dataset": "mnist", "seed": seed})
    return str(path)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A sqlite store with three registered versions of ganforge-mnist, evaluated in order with fid_ratio
    3.0 (first: promoted), 4.0 (worse: kept) and 2.5 (better: promoted)."""
    root = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    versions, decisions, runs = [], [], []
    for i, ratio in enumerate((3.0, 4.0, 2.5)):
        run = Run.start("registry-test", {"train": {"seed": i}}, root=root)
        versions.append(serving.log_generator_model(run, make_generator(root / f"g{i}.pt", i), "mnist"))
        decisions.append(promotion.promote_if_better(run, "mnist", None, ratio, root=root))
        run.finish()
        runs.append(run)
    yield {"root": root, "uri": uri, "versions": versions, "decisions": decisions, "runs": runs}
    if old is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = old


def test_worse_model_keeps_the_alias_and_better_one_takes_it(store):
    v1, v2, v3 = store["versions"]
    assert (v1, v2, v3) == (1, 2, 3)
    first, worse, better = store["decisions"]
    assert first["registry.decision"] == "promoted" and first["registry.previous_champion_version"] == "none"
    assert worse["registry.decision"] == "kept" and worse["registry.champion_version"] == v1
    assert worse["registry.previous_champion_fid_ratio"] == 3.0
    assert better["registry.decision"] == "promoted" and better["registry.previous_champion_version"] == v1
    c = store["runs"][0].client
    assert int(c.get_model_version_by_alias("ganforge-mnist", "champion").version) == v3
    # the decision is recorded in each run, and the version knows its run and its fid_ratio
    tags = c.get_run(store["runs"][1].run_id).data.tags
    assert tags["registry.decision"] == "kept" and tags["registry.version"] == "2"
    mv = c.get_model_version("ganforge-mnist", str(v2))
    assert mv.run_id == store["runs"][1].run_id and float(mv.tags["fid_ratio"]) == 4.0
    # re-evaluating the champion itself keeps it champion, even with a worse number
    again = promotion.promote_if_better(store["runs"][2], "mnist", v3, 9.0, root=store["root"])
    assert again["registry.decision"] == "promoted"
    assert promotion.champion(c, "mnist") == (v3, 9.0)
    promotion.promote_if_better(store["runs"][2], "mnist", v3, 2.5, root=store["root"])
    # a non-standard sample (only the 7s, or truncated) is not comparable: nothing in the registry moves,
    # not even for a figure that would win
    for ratio in (50.0, 0.5):
        for version in (v3, v1):
            variant = promotion.sample_variant(None if ratio > 1 else 1.5, [7] if ratio > 1 else None)
            d = promotion.promote_if_better(store["runs"][0], "mnist", version, ratio, root=store["root"],
                                            variant=variant)
            assert d["registry.decision"].startswith(f"not judged (non-standard sample: {variant}")
    assert promotion.champion(c, "mnist") == (v3, 2.5)
    assert float(c.get_model_version("ganforge-mnist", str(v1)).tags["fid_ratio"]) == 3.0
    assert promotion.sample_variant(None, None) == "" and promotion.sample_variant(0.7, ["seven"]) == (
        "truncation 0.7, classes ['seven']")
    assert promotion.sample_variant(None, None, psi=1.0) == ""
    assert promotion.sample_variant(None, [1], psi=0.5) == "psi 0.5, classes [1]"


def test_champion_loads_in_a_fresh_process(store, tmp_path):
    """models:/ganforge-mnist@champion, loaded by a new Python process, makes the champion's images."""
    out = tmp_path / "images.npy"
    code = textwrap.dedent(f"""
        import json, mlflow, numpy as np
        m = mlflow.pyfunc.load_model("models:/ganforge-mnist@champion")
        x = m.predict({{"count": 5, "seed": 7}})
        np.save({str(out)!r}, x)
        print(json.dumps({{"shape": list(x.shape), "dtype": str(x.dtype)}}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "MLFLOW_TRACKING_URI": store["uri"]})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"shape": [5, 28, 28, 1], "dtype": "uint8"}
    G3, _ = load_generator(store["root"] / "g2.pt")  # the third generator is the champion
    assert np.array_equal(np.load(out), generate(G3, 5, seed=7, batch_size=5).transpose(0, 2, 3, 1))


def test_pyfunc_requests(store):
    import mlflow

    m = mlflow.pyfunc.load_model("models:/ganforge-mnist/1")
    whole = m.predict(pd.DataFrame({"count": [3], "seed": [10]}))
    assert torch.is_grad_enabled()  # loading/predicting must not switch autograd off for the caller
    # one seed per image: rows (2 from seed 10) + (1 from seed 12) are the same three images
    split = m.predict(pd.DataFrame({"count": [2, 1], "seed": [10, 12]}))
    assert whole.shape == (3, 28, 28, 1) and whole.dtype == np.uint8
    assert np.array_equal(whole, split)
    assert whole.min() < whole.max()  # real images, not a constant fill
    # the sample stage's images for the same seeds, channels last
    G, _ = load_generator(store["root"] / "g0.pt")
    assert np.array_equal(whole, generate(G, 3, seed=10, batch_size=2).transpose(0, 2, 3, 1))
    with pytest.raises(GanforgeError, match="count >= 1"):
        m.predict({"count": 0, "seed": 1})


def test_pyfunc_refuses_bad_or_oversized_requests(store):
    import mlflow
    from mlflow.exceptions import MlflowException

    m = mlflow.pyfunc.load_model("models:/ganforge-mnist/1")
    # through the model, mlflow's schema (count and seed are longs) refuses NaN and fractions by column
    for bad in ({"count": [float("nan")], "seed": [0]}, {"count": [2.5], "seed": [0]}):
        with pytest.raises(MlflowException, match="column count"):
            m.predict(pd.DataFrame(bad))
    # 1,000 rows of 11 images: each row is small, the request is not
    with pytest.raises(GanforgeError, match="at most 10000 images in all rows together, got 11000"):
        m.predict(pd.DataFrame({"count": [11] * 1000, "seed": list(range(1000))}))
    # called without the schema (in-process), the model's own check names the field
    with pytest.raises(GanforgeError, match="row 0: seed must be a whole number, got nan"):
        serving.request_rows(pd.DataFrame({"count": [1], "seed": [float("nan")]}))
    with pytest.raises(GanforgeError, match="row 1: count must be a whole number, got 2.5"):
        serving.request_rows(pd.DataFrame({"count": [1, 2.5], "seed": [0, 1]}))


def test_a_nan_fid_ratio_is_never_promoted(store):
    run = Run.start("registry-test", {"train": {"seed": 98}}, root=store["root"])
    version = serving.log_generator_model(run, make_generator(store["root"] / "nan.pt", 98), "fashion-mnist")
    decision = promotion.promote_if_better(run, "fashion-mnist", None, float("nan"), root=store["root"])
    # no champion yet, and still not promoted: a NaN would win against nothing and never be beaten
    assert decision["registry.decision"] == "rejected"
    assert promotion.champion(run.client, "fashion-mnist") is None
    assert promotion.promote_if_better(run, "fashion-mnist", version, 5.0, root=store["root"])[
        "registry.decision"] == "promoted"


def test_promote_without_a_registered_model_only_records_it(store):
    run = Run.start("registry-test", {"train": {"seed": 99}}, root=store["root"])
    decision = promotion.promote_if_better(run, "mnist", None, 0.1, root=store["root"])
    assert decision["registry.decision"] == "unregistered"
    assert promotion.champion(run.client, "mnist")[0] == store["versions"][2]  # untouched


def test_one_process_writes_each_project_to_its_own_store(tmp_path, monkeypatch):
    """mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI: neither opening a store nor logging a model
    may leave it set, or the first project a process touched would capture every later project's runs."""
    from mlflow import MlflowClient

    for k in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID"):
        monkeypatch.delenv(k, raising=False)
    runs = {}
    for i, name in enumerate(("a", "b")):
        root = tmp_path / name
        root.mkdir()
        (root / "dvc.yaml").write_text("stages: {}\n")
        run = Run.start("isolation", {"train": {"seed": i}}, root=root)
        assert serving.log_generator_model(run, make_generator(root / "g.pt", i), "mnist") == 1
        run.finish()
        assert "MLFLOW_TRACKING_URI" not in os.environ and "MLFLOW_EXPERIMENT_ID" not in os.environ
        runs[name] = run.run_id
    for name, run_id in runs.items():
        c = MlflowClient(f"sqlite:///{tmp_path / name / 'mlflow.db'}")
        found = c.search_runs([c.get_experiment_by_name("isolation").experiment_id])
        assert [r.info.run_id for r in found] == [run_id]
