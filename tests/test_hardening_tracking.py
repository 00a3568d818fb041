"""Issue 34's findings on the registry and the pyfunc: a registered model's files are checked against the
sha256 recorded at registration before anything of it is unpickled (load_verified, promotion, compare),
and a request is bounded in bytes and in the length of its class lists.

Against a real sqlite store in tmp_path, with untrained generators registered through the real code path
(serving.log_generator_model); the artifact store is the local mlartifacts/ folder, tampered with on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, untrained_generator
from ganforge.errors import GanforgeError
from ganforge.nets import load_generator, save_generator
from ganforge.sampling import generate
from ganforge.tracking import promotion, serving
from ganforge.tracking.store import Run


class _Marker:
    """Unpickling this creates `path`: what a swapped python_model.pkl could do, harmlessly."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    root = tmp_path_factory.mktemp("hardening")
    (root / "dvc.yaml").write_text("stages: {}\n")  # the project root: the registry lock lives here
    uri = f"sqlite:///{root / 'mlflow.db'}"
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    reg = {"root": root, "uri": uri, "n": 0}

    def register(dataset: str, seed: int | None = None, g_channels: int = 8) -> tuple[Run, int]:
        reg["n"] += 1
        seed = reg["n"] if seed is None else seed
        path = root / f"g{reg['n']}.pt"
        save_generator(path, untrained_generator(seed, g_channels=g_channels),
                       meta={"dataset": dataset, "seed": seed})
        run = Run.start("hardening", {"train": {"seed": seed}}, root=root)
        version = serving.log_generator_model(run, path, dataset)
        run.finish()
        return run, version

    reg["register"] = register
    reg["intact_run"], reg["intact"] = register("mnist", seed=0)  # never tampered with
    yield reg
    if old is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = old


def model_dir(run: Run, dataset: str, version: int) -> Path:
    """The registered version's files in the artifact store (the local mlartifacts/)."""
    from mlflow.utils.file_utils import local_file_uri_to_path

    uri = run.client.get_model_version_download_uri(serving.registered_model_name(dataset), str(version))
    return Path(local_file_uri_to_path(uri))


def test_registration_records_the_sha256_of_every_model_file(registry):
    run, version = registry["intact_run"], registry["intact"]
    mv = run.client.get_model_version("ganforge-mnist", str(version))
    recorded = json.loads(mv.tags[serving.DIGEST_TAG])
    files = model_dir(run, "mnist", version)
    on_disk = {p.relative_to(files).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
               for p in files.rglob("*") if p.is_file()}
    assert recorded == on_disk
    assert {"MLmodel", "python_model.pkl", "artifacts/g1.pt", "code/ganforge/tracking/serving.py"} \
        <= recorded.keys()  # the generator file keeps its name (g1.pt) under artifacts/


def test_load_verified_refuses_a_swapped_pickle_before_unpickling_it(registry, tmp_path):
    run, version = registry["register"]("mnist")
    files = model_dir(run, "mnist", version)
    marker = tmp_path / "pwned"
    evil = pickle.dumps(_Marker(str(marker)))
    (files / "python_model.pkl").write_bytes(evil)
    uri = f"models:/ganforge-mnist/{version}"
    with pytest.raises(GanforgeError, match=r"python_model\.pkl: changed") as e:
        serving.load_verified(uri)
    assert f"ganforge-mnist version {version}" in str(e.value)
    assert not marker.exists()  # refused before anything was unpickled
    # an added file (code that would be imported) and a removed one are refused by name too
    (files / "code" / "ganforge" / "sitecustomize.py").write_text("import os\n")
    weights = next((files / "artifacts").glob("*.pt"))
    weights.unlink()
    with pytest.raises(GanforgeError, match=rf"artifacts/{weights.name}: missing.*code/ganforge/sitecustomize"
                       r"\.py: not in the registered model"):
        serving.load_verified(uri)
    assert not marker.exists()
    pickle.loads(evil)  # the test's pickle is the real thing: unpickling it does create the file
    assert marker.exists()


def test_load_verified_loads_and_generates_with_an_intact_model(registry):
    import mlflow

    # a plain load through models:/ first: mlflow then writes its registered_model_meta into a local
    # store's model folder, which is not a change to the model
    mlflow.pyfunc.load_model("models:/ganforge-mnist/1")
    m = serving.load_verified("models:/ganforge-mnist/1")
    images = m.predict({"count": 3, "seed": 5})
    G, _ = load_generator(registry["root"] / "g1.pt")
    assert np.array_equal(images, generate(G, 3, seed=5, batch_size=3).transpose(0, 2, 3, 1))
    # the model carries its response limit in its own config
    assert m.model_config == {"max_response_bytes": serving.MAX_RESPONSE_BYTES}
    with pytest.raises(GanforgeError, match="models:/<name>/<version> or models:/<name>@<alias>"):
        serving.load_verified("runs:/abc/generator")


def test_promotion_and_compare_trust_only_versions_whose_files_match(registry, tmp_path):
    register, root = registry["register"], registry["root"]
    run_a, a = register("promo")
    assert promotion.promote_if_better(run_a, "promo", a, 2.0, root=root)["registry.decision"] == "promoted"

    def compare() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(ROOT / "scripts" / "compare.py"), "--experiment",
                               "hardening", "--metric", "fid_ratio"], capture_output=True, text=True,
                              timeout=300, cwd=tmp_path, env={**os.environ, "COLUMNS": "200"})

    proc = compare()
    assert proc.returncode == 0, proc.stderr
    assert f"champion of ganforge-promo: version {a}, files verified" in proc.stdout

    # the champion's pickle is swapped: it is not trusted any more, so a worse version replaces it
    evil = pickle.dumps(_Marker(str(tmp_path / "x")))
    (model_dir(run_a, "promo", a) / "python_model.pkl").write_bytes(evil)
    proc = compare()
    assert proc.returncode == 1
    assert f"ganforge-promo version {a} does not match" in proc.stderr
    assert "python_model.pkl: changed" in proc.stderr
    run_b, b = register("promo")
    d = promotion.promote_if_better(run_b, "promo", b, 3.0, root=root)
    assert d["registry.decision"] == "promoted" and d["registry.previous_champion_version"] == a
    assert "python_model.pkl: changed" in d["registry.previous_champion_integrity"]

    # a better version whose weights were changed after registration is never promoted
    run_c, c = register("promo")
    weights = next((model_dir(run_c, "promo", c) / "artifacts").glob("*.pt"))
    weights.write_bytes(b"not the weights")
    d = promotion.promote_if_better(run_c, "promo", c, 1.0, root=root)
    assert d["registry.decision"] == "rejected"
    assert f"artifacts/{weights.name}: changed" in d["registry.integrity"]
    assert promotion.champion(run_c.client, "promo")[0] == b
    assert run_c.client.get_run(run_c.run_id).data.tags["registry.decision"] == "rejected"
    assert not (tmp_path / "x").exists()


# (7) bounded responses ---------------------------------------------------------------------------------
def test_a_request_is_bounded_in_bytes(registry):
    per_image = 28 * 28 * 1
    _, version = registry["register"]("wide", g_channels=64)  # 10,000 images take ~3 s here
    m = serving.load_verified(f"models:/ganforge-wide/{version}",
                              model_config={"max_response_bytes": 100 * per_image})
    assert m.predict({"count": 100, "seed": 0}).nbytes == 100 * per_image  # up to the limit: answered
    t0 = time.monotonic()
    with pytest.raises(ValueError, match=r"at most 78400 bytes .* got 7840000 \(10000 images of 784 bytes\)"):
        m.predict(pd.DataFrame({"count": [50, 9950], "seed": [0, 50]}))
    assert time.monotonic() - t0 < 0.5  # refused before generating
    # the default: the review's 10,000 images of a 64 px RGB model (123 MB) are refused, MNIST's are not
    with pytest.raises(ValueError, match="bytes"):
        serving.request_rows(pd.DataFrame({"count": [10_000], "seed": [0]}), bytes_per_image=64 * 64 * 3)
    assert serving.request_rows(pd.DataFrame({"count": [10_000], "seed": [0]}), bytes_per_image=per_image)


def test_class_lists_are_bounded(registry):
    names = [str(k) for k in range(10)]
    too_long = pd.DataFrame({"count": [1], "seed": [0], "classes": [[3] * (serving.MAX_CLASS_ENTRIES + 1)]})
    with pytest.raises(ValueError, match=f"at most {serving.MAX_CLASS_ENTRIES} class entries"):
        serving.request_rows(too_long, names)
    # across rows too: many rows of short lists add up
    rows = pd.DataFrame({"count": [1] * 3, "seed": [0, 1, 2],
                         "classes": [[1] * (serving.MAX_CLASS_ENTRIES // 2)] * 3})
    with pytest.raises(ValueError, match="class entries"):
        serving.request_rows(rows, names)
    # a normal conditional request still works
    assert serving.request_rows(pd.DataFrame({"count": [4], "seed": [0], "classes": [[3, 7]]}), names) == [
        (4, 0, [3, 7])]
