"""A new loss with a hyperparameter is one file plus one registry line: written into a copy of the package,
it validates its setting, trains through the real train stage, and its setting is part of what a checkpoint
must match. Nothing else (config.py, the task, the engine, params.yaml) is edited."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from mlflow import MlflowClient

from conftest import make_project, run_stage

NEW_LOSS = '''"""One-sided label smoothing (Salimans et al. 2016): D's target for reals is 1 - smoothing."""

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from ganforge.losses.base import mean_detached
from ganforge.losses.gan import NonSaturatingLoss


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    smoothing: float = Field(ge=0, lt=0.5)


class SmoothedLoss(NonSaturatingLoss):
    Settings = Settings
    D_STATS = ("d_real", "d_fake", "real_target")

    def d_loss(self, out_real, out_fake):
        target = 1.0 - self.settings.smoothing
        loss = (F.binary_cross_entropy_with_logits(out_real, out_real.new_full(out_real.shape, target))
                + F.binary_cross_entropy_with_logits(out_fake, out_fake.new_zeros(out_fake.shape)))
        return loss, {"d_real": mean_detached(out_real.sigmoid()),
                      "d_fake": mean_detached(out_fake.sigmoid()),
                      "real_target": torch.full((), target, device=out_real.device)}
'''
TINY = {"train.device": "cpu", "train.batch_size": 32, "train.kimg": 0.64, "train.z_dim": 16,
        "train.g_channels": 8, "train.d_channels": 8, "train.log_every": 5, "train.image_every": 20,
        "train.ckpt_every": 10}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the project whose package has the new loss: one file, one registry line."""
    cwd = make_project(tmp_path_factory.mktemp("new-loss"), TINY)
    losses = cwd / "src" / "ganforge" / "losses"
    (losses / "smoothed.py").write_text(NEW_LOSS)
    registry = (losses / "__init__.py").read_text()
    assert registry.count('    "ns": NonSaturatingLoss,\n') == 1
    registry = registry.replace("from ganforge.losses.rpgan import", "from ganforge.losses.smoothed import "
                                "SmoothedLoss\nfrom ganforge.losses.rpgan import")  # its import
    entry = '    "ns": NonSaturatingLoss,\n'
    (losses / "__init__.py").write_text(registry.replace(entry, entry + '    "smoothed": SmoothedLoss,\n'))
    return cwd


def train_with(project: Path, data: Path, store: dict, loss, kimg: float = 0.64):
    from conftest import set_params

    set_params(project / "params.yaml", {"train.loss": loss, "train.kimg": kimg})
    env = {**store, "PYTHONPATH": str(project / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return run_stage("train", "--params", "params.yaml", "--data", str(data), cwd=project, env=env)


def test_a_new_loss_with_a_setting_trains_through_the_cli(project, tiny_mnist_dir, store):
    proc = train_with(project, tiny_mnist_dir, store, {"kind": "smoothed", "smoothing": 0.2})
    assert proc.returncode == 0, proc.stderr
    header, *rows = (project / "results/train/losses.tsv").read_text().splitlines()
    column = header.split("\t").index("real_target")  # its own stat, reported like any other
    assert rows and all(abs(float(r.split("\t")[column]) - 0.8) < 1e-6 for r in rows)
    run_id = json.loads((project / "results/train/run.json").read_text())["run_id"]
    params = MlflowClient(store["MLFLOW_TRACKING_URI"]).get_run(run_id).data.params
    assert params["train.loss.kind"] == "smoothed" and params["train.loss.smoothing"] == "0.2"

    # its setting is part of the trajectory: another value does not continue the checkpoint
    proc = train_with(project, tiny_mnist_dir, store, {"kind": "smoothed", "smoothing": 0.3}, kimg=0.96)
    assert proc.returncode == 0, proc.stderr
    assert "was written with a different config" in proc.stdout and "smoothing" in proc.stdout


@pytest.mark.parametrize("loss,message", [
    ({"kind": "smoothed", "smoothing": 0.7}, "train.loss: smoothed's settings (smoothing): smoothing: Input "
                                             "should be less than 0.5"),
    ("smoothed", "smoothing: Field required"),
    ({"kind": "ns", "smoothing": 0.1}, "ns's settings (none): smoothing: Extra inputs are not permitted"),
])
def test_its_setting_is_validated_by_its_own_model(project, tiny_mnist_dir, store, loss, message):
    proc = train_with(project, tiny_mnist_dir, store, loss)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
