"""Several training processes: the train stage with train.nproc 2 on the CPU (gloo), through the real
torchrun command the stage execs, against the same run in one process.

The data and z of every step are the same whatever the number of processes (every rank draws the global
batch from the shared streams and keeps its half), so the two runs differ only where the maths does:
G's BatchNorm normalises over each rank's 16 images instead of all 32 (per-rank BatchNorm, see
ganforge.train.distributed.World.wrap), and the gradients are averaged in another order. Their loss
histories therefore agree closely but not to the bit; LOSS_RTOL states how closely.
Settings: 16-channel DCGAN, batch 32 (16 per rank), 40 steps, lazy R1 every 2 steps (DDP through a double
backward, and both kinds of step), G_ema on.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from test_train_stage import start, train_cli, wait_for_line
from test_train_stage import workdir as stage_workdir

from conftest import set_params
from ganforge.errors import ConfigError
from ganforge.io import load_torch
from ganforge.train.distributed import resolve_nproc, torchrun_command

STEPS = 40
TINY = {"train.device": "cpu", "train.nproc": 1, "train.batch_size": 32, "train.kimg": STEPS * 32 / 1000,
        "train.z_dim": 32, "train.g_channels": 16, "train.d_channels": 16, "train.reg.kind": "r1",
        "train.reg.weight": 1.0, "train.reg.every": 2, "train.log_every": 10, "train.image_every": 40,
        "train.ckpt_every": 10}
# Relative difference of each reported mean (10 steps) between 2 processes and 1 (see the module docstring).
# Measured on this code: at most 1.2e-4 for the losses and D's outputs, 8.8e-4 for the small R1 penalty
# (2.3e-3), while over the run the means move by more than 20 x LOSS_RTOL.
LOSS_RTOL = 5e-3


def workdir(path: Path, overrides: dict | None = None) -> Path:
    return stage_workdir(path, {**TINY, **(overrides or {})})


def history(cwd: Path) -> list[dict]:
    lines = (cwd / "results/train/losses.tsv").read_text().splitlines()
    keys = lines[0].split("\t")
    return [dict(zip(keys, map(float, line.split("\t")), strict=True)) for line in lines[1:]]


def run_json(cwd: Path) -> dict:
    return json.loads((cwd / "results/train/run.json").read_text())


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, tiny_mnist_dir, store) -> Path:
    cwd = workdir(tmp_path_factory.mktemp("one"))
    proc = train_cli(cwd, tiny_mnist_dir, store)
    assert proc.returncode == 0, proc.stderr
    assert "train.nproc" not in proc.stdout and "device cpu, 1 process(es)" in proc.stdout  # as before
    return cwd


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory, tiny_mnist_dir, store) -> tuple[Path, subprocess.CompletedProcess]:
    cwd = workdir(tmp_path_factory.mktemp("two"), {"train.nproc": 2})
    proc = train_cli(cwd, tiny_mnist_dir, store)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return cwd, proc


@pytest.mark.slow
def test_two_processes_write_one_run_one_checkpoint_and_match_one_process(two_processes, one_process, store):
    cwd, proc = two_processes
    # the stage replaced itself by the real torchrun, on its own command line
    assert "--standalone --nproc-per-node=2 " in proc.stdout and "/torchrun " in proc.stdout
    assert proc.stdout.count("device cpu, 2 process(es)") == 1  # rank 0 alone speaks
    assert "Traceback" not in proc.stderr

    client = MlflowClient(store["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              f"tags.`ganforge.workspace` = '{cwd.resolve()}'")  # the runs made here
    assert [r.info.run_id for r in runs] == [run_json(cwd)["run_id"]]  # one run, not one per process
    assert runs[0].data.tags["world_size"] == "2"
    assert runs[0].info.status == "FINISHED" and runs[0].data.params["train.nproc"] == "2"
    loss_d = client.get_metric_history(runs[0].info.run_id, "loss_d")
    assert sorted(m.step for m in loss_d) == list(range(10, STEPS + 1, 10))  # each report once

    assert sorted(p.name for p in (cwd / "checkpoints").iterdir()) == ["train.pt"]  # one checkpoint
    ckpt = load_torch(cwd / "checkpoints/train.pt")
    assert ckpt["step"] == STEPS and ckpt["world_size"] == 2
    assert (cwd / "models/generator.pt").exists() and (cwd / "results/train/samples.png").exists()

    two, one = history(cwd), history(one_process)
    assert [r["step"] for r in two] == [r["step"] for r in one] == list(range(10, STEPS + 1, 10))
    assert [r["kimg"] for r in two] == [r["kimg"] for r in one]  # img/s and kimg count both ranks
    stats = ("loss_d", "loss_g", "d_real", "d_fake", "r1_penalty", "r1_grad_norm")
    assert set(two[0]) == {"step", "kimg", "img_per_s", *stats}
    for key in stats:
        pairs = [(a[key], b[key]) for a, b in zip(two, one, strict=True)]
        assert all(math.isclose(a, b, rel_tol=LOSS_RTOL) for a, b in pairs), (key, pairs)
        assert not math.isclose(one[0][key], one[-1][key], rel_tol=20 * LOSS_RTOL)  # the means do move
    assert all(r["img_per_s"] > 0 for r in two)


@pytest.mark.slow
def test_a_two_process_checkpoint_resumes_in_one_process(two_processes, tmp_path, tiny_mnist_dir, store):
    src, _ = two_processes
    cwd = tmp_path / "resumed"
    shutil.copytree(src, cwd)
    set_params(cwd / "params.yaml", {"train.nproc": 1, "train.kimg": (STEPS + 20) * 32 / 1000})
    saved = load_torch(cwd / "checkpoints/train.pt")
    proc = train_cli(cwd, tiny_mnist_dir, store)
    assert proc.returncode == 0, proc.stderr
    assert f"resuming from checkpoint checkpoints/train.pt at step {STEPS}" in proc.stdout
    assert "device cpu, 1 process(es)" in proc.stdout
    rows = history(cwd)
    assert rows[:STEPS // 10] == history(src) and [r["step"] for r in rows[STEPS // 10:]] == [50, 60]
    ckpt = load_torch(cwd / "checkpoints/train.pt")
    assert ckpt["step"] == STEPS + 20 and ckpt["world_size"] == 1
    # the data and z streams continued from where the two processes left them (shared by every rank)
    assert not torch.equal(ckpt["rng"]["generators"]["data"], saved["rng"]["generators"]["data"])
    assert run_json(cwd)["run_id"] != run_json(src)["run_id"]  # train.nproc is a param: a new MLflow run


@pytest.mark.slow
def test_a_one_process_checkpoint_resumes_in_two_processes(one_process, tmp_path, tiny_mnist_dir, store):
    cwd = tmp_path / "resumed"
    shutil.copytree(one_process, cwd)
    set_params(cwd / "params.yaml", {"train.nproc": 2, "train.kimg": (STEPS + 20) * 32 / 1000})
    proc = train_cli(cwd, tiny_mnist_dir, store)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count(f"resuming from checkpoint checkpoints/train.pt at step {STEPS}") == 1
    rows = history(cwd)
    assert rows[:STEPS // 10] == history(one_process) and [r["step"] for r in rows[STEPS // 10:]] == [50, 60]
    ckpt = load_torch(cwd / "checkpoints/train.pt")
    assert ckpt["step"] == STEPS + 20 and ckpt["world_size"] == 2


@pytest.mark.slow
def test_a_two_process_checkpoint_continues_in_two_processes_bit_for_bit(two_processes, tmp_path,
                                                                         tiny_mnist_dir, store):
    src, _ = two_processes
    longer = {"train.nproc": 2, "train.kimg": (STEPS + 20) * 32 / 1000}
    resumed = tmp_path / "resumed"
    shutil.copytree(src, resumed)
    set_params(resumed / "params.yaml", longer)
    straight = workdir(tmp_path / "straight", longer)
    procs = [train_cli(cwd, tiny_mnist_dir, store) for cwd in (resumed, straight)]
    assert all(p.returncode == 0 for p in procs), [p.stdout + p.stderr for p in procs]
    assert f"resuming from checkpoint checkpoints/train.pt at step {STEPS}" in procs[0].stdout
    final, expected = (load_torch(cwd / "checkpoints/train.pt") for cwd in (resumed, straight))

    def adam(ckpt, net):  # Adam's step, exp_avg, exp_avg_sq of every weight
        state = ckpt["optimizers"][net]["state"]
        return {f"{i}.{k}": v for i, s in state.items() for k, v in s.items()}

    assert final["nets"].keys() == expected["nets"].keys() == final["optimizers"].keys() == {"G", "D"}
    pairs = {"ema": (final["ema"], expected["ema"])}
    for net in ("G", "D"):
        pairs[net] = (final["nets"][net], expected["nets"][net])
        pairs[f"optimizers.{net}"] = (adam(final, net), adam(expected, net))
    for what, (a, b) in pairs.items():
        assert a and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), what

    def results(cwd):  # img/s is a measurement, not a result
        return [{k: v for k, v in row.items() if k != "img_per_s"} for row in history(cwd)]

    assert results(resumed) == results(straight)


@pytest.mark.slow
def test_sigterm_to_torchrun_stops_both_processes_at_one_report_with_a_checkpoint(tmp_path, tiny_mnist_dir,
                                                                                   store):
    # what a scheduler does to the stage's process, which is torchrun once it has exec'd
    cwd = workdir(tmp_path, {"train.nproc": 2, "train.ckpt_every": 1000})  # checkpoints: the signal's only
    proc = start(cwd, tiny_mnist_dir, store)
    wait_for_line(proc, "step 10 ")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0  # torchrun's own exit code: 1 after a death signal
    step = load_torch(cwd / "checkpoints/train.pt")["step"]
    assert step % 10 == 0 and 10 < step < STEPS  # at a report, where the ranks agree to stop
    assert f"stopped by SIGTERM at step {step}: checkpoint checkpoints/train.pt saved" in err
    run = MlflowClient(store["MLFLOW_TRACKING_URI"]).get_run(run_json(cwd)["run_id"])
    assert run.info.status == "KILLED" and run.data.tags["ganforge.stopped_at_step"] == str(step)

    proc = train_cli(cwd, tiny_mnist_dir, store)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"resuming from checkpoint checkpoints/train.pt at step {step}" in proc.stdout
    assert [r["step"] for r in history(cwd)] == list(range(10, STEPS + 1, 10))


@pytest.mark.slow
def test_two_processes_with_augmentation_and_the_gradient_penalty(tmp_path, tiny_mnist_dir, store):
    # the per-rank random streams (DiffAugment, GP's interpolation), GP's double backward through DDP, and
    # label matching's second D forward (the class logits) through the DDP wrapper in the same D step
    cwd = workdir(tmp_path, {"train.nproc": 2, "train.kimg": 10 * 32 / 1000, "train.reg.kind": "gp",
                             "train.reg.every": 1, "train.augment": "translation+cutout",
                             "train.conditional": True, "train.label_matching": 1.0})
    proc = train_cli(cwd, tiny_mnist_dir, store)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (row,) = history(cwd)
    assert row["step"] == 10 and all(math.isfinite(v) for v in row.values()) and row["gp_penalty"] > 0
    assert 0 < row["class_ce_real"] < 5 and 0 < row["class_ce_fake"] < 5


def test_label_matching_without_conditional_exits_2_before_torchrun(tmp_path, tiny_mnist_dir, store):
    cwd = workdir(tmp_path, {"train.nproc": 2, "train.conditional": False, "train.label_matching": 1.0})
    proc = train_cli(cwd, tiny_mnist_dir, store)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "train.label_matching" in proc.stderr and "train.conditional: true" in proc.stderr
    assert "torchrun" not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr


def test_a_batch_that_does_not_divide_exits_2_before_torchrun(tmp_path, tiny_mnist_dir, store):
    cwd = workdir(tmp_path, {"train.nproc": 2, "train.batch_size": 33})
    proc = train_cli(cwd, tiny_mnist_dir, store)
    assert proc.returncode == 2, proc.stderr
    assert "error: train.batch_size 33 does not divide among 2 processes" in proc.stderr
    assert "Traceback" not in proc.stderr and "torchrun" not in proc.stdout  # refused before launching
    assert not (cwd / "results").exists() and not (cwd / "checkpoints").exists()


def test_nproc_auto_and_more_processes_than_gpus():
    cuda, cpu, mps = torch.device("cuda"), torch.device("cpu"), torch.device("mps")
    assert resolve_nproc("auto", cuda, visible_gpus=4) == 4 and resolve_nproc(2, cuda, visible_gpus=4) == 2
    assert resolve_nproc("auto", cpu) == 1 and resolve_nproc(2, cpu) == 2 and resolve_nproc("auto", mps) == 1
    with pytest.raises(ConfigError, match=r"train.nproc is 3 but only 2 GPU\(s\) are visible"):
        resolve_nproc(3, cuda, visible_gpus=2)
    with pytest.raises(ConfigError, match="MPS cannot train in several processes"):
        resolve_nproc(2, mps)


def test_torchrun_command_is_standalone_unless_torchruns_rendezvous_is_set(monkeypatch):
    for name in ("PET_NNODES", "PET_RDZV_ENDPOINT", "PET_RDZV_BACKEND", "PET_RDZV_ID", "PET_MASTER_ADDR"):
        monkeypatch.delenv(name, raising=False)
    cmd = torchrun_command(4, ["stages/train.py", "--data", "d"])
    assert cmd[0] == str(Path(sys.executable).parent / "torchrun")  # the real one, of this environment
    assert cmd[-5:] == ["--standalone", "--nproc-per-node=4", "stages/train.py", "--data", "d"]
    monkeypatch.setenv("PET_NNODES", "2")  # several nodes: torchrun's own rendezvous settings decide
    monkeypatch.setenv("PET_RDZV_ENDPOINT", "node0:29400")
    assert "--standalone" not in torchrun_command(4, ["stages/train.py"])
