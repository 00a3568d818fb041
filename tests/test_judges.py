"""The judge registry (ganforge.judges): every judge and dataset meets its contract, and the stages take the
data kind from the dataset's judge alone."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import yaml

from conftest import ONE_THREAD, copy_params, run_stage, set_params
from ganforge.data.registry import REGISTRY_ENV, get_dataset, registry
from ganforge.errors import ConfigError
from ganforge.judges import DATA, JUDGES, domain_judges, judge_for

IMAGES = np.zeros((4, 1, 28, 28), np.uint8)
POINTS = np.zeros((4, 2, 1, 1), np.float32)


@pytest.mark.parametrize("name", list(JUDGES))
def test_every_judge_meets_its_contract(name):
    j = JUDGES[name]
    assert j.name == name and j.data in DATA and j.what and j.model and j.reference
    if j.in_training_fid:  # FID in a CNN's features, during training and after: images, no mode counting
        assert j.data == "images" and not j.counts_modes
    if j.data == "points":  # no CNN reads points: they can only be judged by their modes
        assert j.counts_modes and not j.in_training_fid
    j.check(POINTS if j.data == "points" else IMAGES, "x")  # accepts its own data kind
    wrong = rf"x: .*the dataset's judge \({name}\) judges {re.escape(DATA[j.data])}"
    with pytest.raises(ConfigError, match=wrong):
        j.check(IMAGES if j.data == "points" else POINTS, "x")


@pytest.mark.parametrize("name", list(registry()))
def test_every_dataset_names_a_registered_judge(name):
    spec = get_dataset(name)
    assert spec.judge in JUDGES
    if spec.kind == "translation":  # two domains, each judged by the entry's judge; no data to generate
        with pytest.raises(ConfigError, match=f"base.dataset {name} is a translation data set"):
            judge_for(name)
        assert [j for j, _ in domain_judges(name).values()] == [JUDGES[spec.judge]] * 2
    else:
        assert judge_for(name) is JUDGES[spec.judge]


def test_an_unknown_judge_in_the_registry_file_is_a_config_error_listing_the_judges(tmp_path, monkeypatch):
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump({"mnist": {"judge": "inception"}}))
    monkeypatch.setenv(REGISTRY_ENV, str(path))
    with pytest.raises(ConfigError, match=rf"mnist.judge: .*unknown judge 'inception' \(allowed: "
                                          rf"{', '.join(JUDGES)}\)"):
        judge_for("mnist")
    monkeypatch.delenv(REGISTRY_ENV)
    with pytest.raises(ConfigError, match="unknown dataset 'imagenet'"):
        judge_for("imagenet")


def test_a_dataset_added_with_judge_modes_is_judged_as_points_by_every_stage(tmp_path):
    """A new name in GANFORGE_REGISTRY with judge modes gets the mode table from the evaluator stage and is
    refused by synthesize, like ring8; the same points registered with the classifier judge are refused
    before any CNN is trained. Nothing but the registry entry says what the data are."""
    from ganforge.data.prepared import write_prepared
    from ganforge.data.toy import toy_splits
    from ganforge.metrics.modes import ModeTable

    splits, info = toy_splits("ring8", seed=0)
    data = tmp_path / "data/my-ring"
    write_prepared(data, splits, {**info, "name": "my-ring", "kind": "toy2d"})
    copy_params(tmp_path / "params.yaml")
    set_params(tmp_path / "params.yaml", {"base.dataset": "my-ring", "evaluate.n": 2500,
                                          "evaluator.device": "cpu", "synthesize.device": "cpu"})

    def stage(name: str, judge: str):
        entry = tmp_path / f"registry-{judge}.yaml"
        entry.write_text(yaml.safe_dump({"my-ring": {"kind": "toy2d", "judge": judge}}))
        return run_stage(name, "--data", str(data), cwd=tmp_path,
                         env={REGISTRY_ENV: str(entry), **ONE_THREAD})

    proc = stage("evaluator", "modes")
    assert proc.returncode == 0, proc.stderr
    assert "mode table of my-ring" in proc.stdout
    table = ModeTable.load(tmp_path / "models/evaluator.pt")
    assert np.allclose(table.centres, info["centres"]) and table.std == info["std"]
    metrics = json.loads((tmp_path / "results/evaluator/metrics.json").read_text())
    assert metrics["judge"] == "modes" and metrics["floor"]["modes_covered"] == 8
    with np.load(tmp_path / "results/evaluator/reference.npz") as z:
        assert set(z.files) == {"mode_hist"}

    proc = stage("synthesize", "modes")
    assert proc.returncode == 2 and "mode-collapse benchmark (2-D points)" in proc.stderr, proc.stderr

    proc = stage("evaluator", "classifier")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "the dataset's judge (classifier) judges uint8 images" in proc.stderr, proc.stderr
