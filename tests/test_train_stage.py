"""The train stage through its real CLI on a real MNIST subset, against a real MLflow store.

One uninterrupted reference run (module fixture) is inspected for its outputs and tracking, and is the
yardstick for the killed-and-resumed run. Settings: 16-channel DCGAN, batch 32, 80 steps (2.56 kimg).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from mlflow import MlflowClient
from PIL import Image

from conftest import ONE_THREAD, ROOT, copy_params, dvc, make_project, run_stage, set_params
from ganforge.data.prepared import content_hash, load_info
from ganforge.io import load_torch
from ganforge.nets import load_generator

STEPS = 80
TINY = {"train.device": "cpu", "train.batch_size": 32, "train.kimg": STEPS * 32 / 1000, "train.z_dim": 32,
        "train.g_channels": 16, "train.d_channels": 16, "train.log_every": 10, "train.image_every": 40,
        "train.ckpt_every": 10}
LOSS_COLUMNS = ("step", "kimg", "loss_d", "loss_g", "d_real", "d_fake")


def workdir(path: Path, overrides: dict | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    copy_params(path / "params.yaml")
    set_params(path / "params.yaml", {**TINY, **(overrides or {})})
    return path


def train_cli(cwd: Path, data: Path, env: dict) -> subprocess.CompletedProcess:
    return run_stage("train", "--params", "params.yaml", "--data", str(data), cwd=cwd, env=env)


def run_of(cwd: Path, env: dict):
    run_id = json.loads((cwd / "results/train/run.json").read_text())["run_id"]
    return MlflowClient(env["MLFLOW_TRACKING_URI"]).get_run(run_id)


def losses(cwd: Path) -> list[list[str]]:
    rows = [line.split("\t") for line in (cwd / "results/train/losses.tsv").read_text().splitlines()]
    keep = [rows[0].index(c) for c in LOSS_COLUMNS]  # img_per_s is a measurement, not a result
    return [[row[i] for i in keep] for row in rows]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_mnist_dir, store) -> Path:
    """An uninterrupted run in a git checkout (so the run is tagged with its commit)."""
    cwd = make_project(tmp_path_factory.mktemp("reference"), TINY)
    proc = train_cli(cwd, tiny_mnist_dir, store)
    assert proc.returncode == 0, proc.stderr
    return cwd


@pytest.mark.slow
def test_outputs_and_mlflow_run(reference, tiny_mnist_dir, store):
    G, meta = load_generator(reference / "models/generator.pt")
    assert meta["weights"] == "G_ema" and meta["step"] == STEPS and G.config()["z_dim"] == 32
    assert G(torch.randn(4, 32)).shape == (4, 1, 28, 28)
    rows = losses(reference)
    assert rows[0] == list(LOSS_COLUMNS) and [int(r[0]) for r in rows[1:]] == list(range(10, STEPS + 1, 10))
    assert Image.open(reference / "results/train/samples.png").size == (8 * 30 + 2, 8 * 30 + 2)  # 8x8 grid

    run = run_of(reference, store)
    client = MlflowClient(store["MLFLOW_TRACKING_URI"])
    assert run.info.status == "FINISHED"
    assert run.data.params["train.g.lr"] == "0.0002" and run.data.params["train.ema.decay"] == "0.999"
    assert run.data.params["base.dataset"] == "mnist"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=reference, capture_output=True, text=True).stdout
    assert run.data.tags["git_commit"] == head.strip() and run.data.tags["git_dirty"] == "false"
    assert run.data.tags["dataset_hash"] == content_hash(load_info(tiny_mnist_dir))
    assert len(run.data.tags["params_hash"]) == 16
    loss_d = client.get_metric_history(run.info.run_id, "loss_d")
    assert sorted(m.step for m in loss_d) == list(range(10, STEPS + 1, 10))
    assert max(m.value for m in client.get_metric_history(run.info.run_id, "kimg")) == STEPS * 32 / 1000
    images = [f.path for f in client.list_artifacts(run.info.run_id, "images")]
    steps = {int(p.split("+step+")[1].split("+")[0]) for p in images if "samples_fixed_z+step+" in p}
    assert steps == {40, 80}
    # the latent walks of the generator file's G: 4 walks of 10 steps, a strip and a GIF, in the run too
    assert Image.open(reference / "results/train/interpolation.png").size == (10 * 30 + 2, 4 * 30 + 2)
    assert Image.open(reference / "results/train/interpolation.gif").n_frames == 18
    logged = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"interpolation.png", "interpolation.gif"} <= logged
    # where a GAN user looks: the training view of the experiment, a readable run name, the dataset column
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert run.info.run_name == f"mnist-dcgan-ns-{STEPS * 32 / 1000:g}kimg"
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.name == "mnist"
    assert dataset_input.dataset.digest == content_hash(load_info(tiny_mnist_dir))
    assert {t.key: t.value for t in dataset_input.tags}["mlflow.data.context"] == "train"
    assert json.loads(dataset_input.dataset.profile)["train_images"] == 2048


def start(cwd: Path, data: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "stages/train.py"), "--data", str(data)], cwd=cwd,
                            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_for_line(proc: subprocess.Popen, prefix: str) -> None:
    """Read the stage's stdout until a line starts with `prefix` (it prints one line per report)."""
    for line in proc.stdout:
        if line.startswith(prefix):
            return
    raise AssertionError(f"the stage ended before printing {prefix!r}: {proc.wait()} {proc.stderr.read()}")


@pytest.mark.slow
def test_sigterm_checkpoints_the_step_reached_then_kill_9_then_resume_is_exact(reference, tmp_path,
                                                                               tiny_mnist_dir, store):
    # checkpoints only at the end: any checkpoint before it is the one the signal wrote
    cwd = workdir(tmp_path / "interrupted", {"train.ckpt_every": 1000})
    ckpt = cwd / "checkpoints/train.pt"
    proc = start(cwd, tiny_mnist_dir, store)
    wait_for_line(proc, "step 10 ")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    stopped_at = load_torch(ckpt)["step"]
    assert 10 <= stopped_at < STEPS
    assert f"stopped by SIGTERM at step {stopped_at}: checkpoint checkpoints/train.pt saved" in err
    assert "dvc repro" in err and "Traceback" not in err
    run = run_of(cwd, store)
    assert run.info.status == "KILLED" and run.data.tags["ganforge.stopped_by"] == "SIGTERM"
    assert run.data.tags["ganforge.stopped_at_step"] == str(stopped_at)
    run_id = run.info.run_id

    # the resumed process dies by kill -9 after its next report: no chance to close its run
    proc = start(cwd, tiny_mnist_dir, store)
    wait_for_line(proc, f"step {(stopped_at // 10 + 1) * 10} ")
    assert run_of(cwd, store).info.status == "RUNNING"  # the same run, reopened
    proc.kill()
    proc.communicate()
    assert run_of(cwd, store).info.status == "RUNNING"  # ... and orphaned

    proc = train_cli(cwd, tiny_mnist_dir, store)
    assert proc.returncode == 0, proc.stderr
    assert f"marked MLflow run {run_id} KILLED: its process" in proc.stdout
    assert f"resuming from checkpoint checkpoints/train.pt at step {stopped_at}" in proc.stdout
    run = run_of(cwd, store)
    assert run.info.run_id == run_id and run.info.status == "FINISHED"  # one MLflow run, continued twice
    assert run.data.tags["ganforge.orphaned"] == "true"
    # every report exactly once, although the killed process had logged some past the checkpoint
    client = MlflowClient(store["MLFLOW_TRACKING_URI"])
    for key in ("loss_d", "kimg"):
        steps = sorted(m.step for m in client.get_metric_history(run_id, key))
        assert steps == list(range(10, STEPS + 1, 10)), key

    final, expected = load_torch(cwd / "models/generator.pt"), load_torch(reference / "models/generator.pt")
    assert all(torch.equal(final["state_dict"][k], v) for k, v in expected["state_dict"].items())
    final, expected = load_torch(ckpt), load_torch(reference / "checkpoints/train.pt")
    for net in ("G", "D"):
        assert all(torch.equal(final["nets"][net][k], v) for k, v in expected["nets"][net].items())
    assert all(torch.equal(final["ema"][k], v) for k, v in expected["ema"].items())
    assert losses(cwd) == losses(reference)


@pytest.mark.slow
def test_two_signals_in_quick_succession_leave_a_loadable_checkpoint(tmp_path, tiny_mnist_dir, store):
    from ganforge.train.checkpoint import CHECKPOINT_FORMAT

    cwd = workdir(tmp_path / "twice", {"train.ckpt_every": 1})  # a checkpoint write is always under way
    proc = start(cwd, tiny_mnist_dir, store)
    wait_for_line(proc, "step 20 ")
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "Traceback" not in err, err
    ckpt = load_torch(cwd / "checkpoints/train.pt")
    assert ckpt["format"] == CHECKPOINT_FORMAT and ckpt["step"] >= 20
    assert not list((cwd / "checkpoints").glob(".*.tmp"))  # the interrupted write left nothing behind
    assert run_of(cwd, store).info.status == "KILLED"


@pytest.mark.slow
def test_ctrl_c_is_handled_like_sigterm(tmp_path, tiny_mnist_dir, store):
    cwd = workdir(tmp_path / "ctrl-c", {"train.ckpt_every": 1000})
    proc = start(cwd, tiny_mnist_dir, store)
    wait_for_line(proc, "step 10 ")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "stopped by SIGINT at step" in err
    assert 10 <= load_torch(cwd / "checkpoints/train.pt")["step"] < STEPS
    assert run_of(cwd, store).data.tags["ganforge.stopped_by"] == "SIGINT"


@pytest.mark.slow
def test_a_longer_kimg_continues_the_weights_in_a_new_mlflow_run(reference, tmp_path, tiny_mnist_dir, store):
    cwd = tmp_path / "longer"
    shutil.copytree(reference, cwd)
    set_params(cwd / "params.yaml", {"train.kimg": (STEPS + 20) * 32 / 1000})
    old_run = run_of(cwd, store)
    proc = train_cli(cwd, tiny_mnist_dir, store)
    assert proc.returncode == 0, proc.stderr
    assert f"resuming from checkpoint checkpoints/train.pt at step {STEPS}" in proc.stdout
    run = run_of(cwd, store)  # MLflow params cannot change, so the longer run is a run of its own
    assert run.info.run_id != old_run.info.run_id and run.data.tags["continues_run"] == old_run.info.run_id
    assert run.data.params["train.kimg"] == str((STEPS + 20) * 32 / 1000)
    assert losses(cwd)[1:-2] == losses(reference)[1:] and int(losses(cwd)[-1][0]) == STEPS + 20


@pytest.mark.slow
def test_resume_never_trains_from_step_0_over_a_finished_checkpoint(reference, tmp_path, tiny_mnist_dir,
                                                                    store):
    # CI's scheduled retrain: DVC keeps (and a remote restores) the persisted, finished checkpoint
    cwd = tmp_path / "scratch"
    shutil.copytree(reference, cwd)
    set_params(cwd / "params.yaml", {"train.resume": "never"})
    proc = train_cli(cwd, tiny_mnist_dir, store)
    assert proc.returncode == 0, proc.stderr
    assert "train.resume is never: training from step 0" in proc.stdout and "resuming" not in proc.stdout
    assert [int(r[0]) for r in losses(cwd)[1:]] == list(range(10, STEPS + 1, 10))  # every step, again
    run = run_of(cwd, store)
    assert run.info.run_id != run_of(reference, store).info.run_id and "continues_run" not in run.data.tags
    # from scratch with the same seed: the reference's weights, bit for bit
    final, expected = load_torch(cwd / "models/generator.pt"), load_torch(reference / "models/generator.pt")
    assert all(torch.equal(final["state_dict"][k], v) for k, v in expected["state_dict"].items())


@pytest.mark.slow
def test_divergence_exits_nonzero_and_fails_the_run(tmp_path, tiny_mnist_dir, store):
    cwd = workdir(tmp_path, {"train.g.lr": 3e8, "train.d.lr": 3e8, "train.ckpt_every": 1})
    proc = train_cli(cwd, tiny_mnist_dir, store)
    assert proc.returncode == 1
    assert "error: training diverged at step " in proc.stderr and "Traceback" not in proc.stderr
    assert run_of(cwd, store).info.status == "FAILED"
    assert not (cwd / "models/generator.pt").exists()


@pytest.mark.parametrize("overrides,message", [
    ({"train.device": "cuda"}, "no CUDA GPU is visible"),
    ({"train.loss": "softmax"}, "train.loss: unknown loss 'softmax' (allowed: "),
    ({"train.g.lr": None}, "train.g.lr: missing key"),
    ({"train.reg.weight": 0}, "train.reg.weight: Input should be greater than 0"),
    ({"base.dataset": "fashion-mnist"}, "base.dataset is 'fashion-mnist' but"),
])
def test_bad_device_or_params_exit_2_before_any_work(tmp_path, tiny_mnist_dir, store, overrides, message):
    if overrides.get("train.device") == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    cwd = workdir(tmp_path, {k: v for k, v in overrides.items() if v is not None})
    if None in overrides.values():  # the key is deleted from params.yaml, not set to null
        params = yaml.safe_load((cwd / "params.yaml").read_text())
        del params["train"]["g"]["lr"]
        (cwd / "params.yaml").write_text(yaml.safe_dump(params))
    proc = train_cli(cwd, tiny_mnist_dir, store)
    assert proc.returncode == 2 and message in proc.stderr
    assert not (cwd / "results").exists() and not (cwd / "checkpoints").exists()


def test_an_architecture_that_cannot_make_the_datas_images_exits_2(tmp_path, store):
    import numpy as np

    from ganforge.io import atomic_save_npz

    data = tmp_path / "data"  # 64 px images: DCGAN makes them, the SNGAN ResNet (28, 32 px) does not
    images = np.random.default_rng(0).integers(0, 256, (64, 1, 64, 64), dtype=np.uint8)
    for split in ("train", "test"):
        atomic_save_npz(data / f"{split}.npz", images=images, labels=np.zeros(64, np.int64))
    (data / "info.json").write_text(json.dumps({"name": "mnist", "shape": [1, 64, 64], "sha256": {}}))
    cwd = workdir(tmp_path / "work", {"train.arch": "resnet"})
    proc = train_cli(cwd, data, store)
    assert proc.returncode == 2, proc.stderr
    assert "train.arch: architecture 'resnet' does not support 64 px images" in proc.stderr
    assert "28, 32" in proc.stderr and not (cwd / "checkpoints").exists()


@pytest.mark.slow
def test_dvc_exp_run_temp_logs_to_the_workspace_store(tmp_path, mnist_dir):
    # the dvc-run stages use the default store, <project root>/mlflow.db: no MLFLOW_TRACKING_URI here
    env = {"MLFLOW_TRACKING_URI": "", **ONE_THREAD}
    # one evaluator epoch: the repro trains the judge on all of MNIST before train (4 epochs cost 2 minutes)
    project = make_project(tmp_path / "project", {**TINY, "train.kimg": 0.32, "train.image_every": 5,
                                                  "evaluator.epochs": 1, "evaluator.batch_size": 512})
    proc = dvc("repro", "train", cwd=project, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = dvc("exp", "run", "--temp", "-n", "temp-exp", "-S", "train.g.lr=0.0003", "train", cwd=project,
               env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("ganforge").experiment_id])
    by_exp = {r.data.tags.get("dvc_exp_name"): r for r in runs}
    assert len(runs) == 2 and set(by_exp) == {None, "temp-exp"}
    exp_run = by_exp["temp-exp"]
    assert exp_run.data.params["train.g.lr"] == "0.0003" and exp_run.info.status == "FINISHED"
    for run in runs:  # the images of both runs are in the workspace's artifact store
        assert client.list_artifacts(run.info.run_id, "images")
        assert str(project / "mlartifacts") in run.info.artifact_uri
    assert not list((project / ".dvc").rglob("mlflow.db"))
