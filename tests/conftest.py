"""Shared test fixtures: run the real stage CLIs, make throw-away DVC projects, real prepared MNIST."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ("dvc.yaml", "pipelines", "params.yaml", "recipes", "stages", "src", ".dvc/config",
                 ".dvc/.gitignore", ".dvcignore", ".gitignore")


def run_stage(stage: str, *args: str, cwd: Path | str = ROOT, env: dict | None = None,
              timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `python stages/<stage>.py ARGS` as a user (or dvc) would; returns the finished process."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / "stages" / f"{stage}.py"), *args], cwd=cwd,
                          env=full_env, capture_output=True, text=True, timeout=timeout)


# The tests' starting point is params.yaml with the train keys of the seed recipe, which the tests were
# written against. The default recipe (issue 12's choice for the first `make run`) is class-conditional,
# hinge + spectral norm, 32 channels, batch 32, lr 5e-4, with an in-training evaluation; most tests train the
# seed's unconditional non-saturating GAN on tiny data without the evaluator's files, check its stats
# (d_real/d_fake) and calibrate tolerances on its dynamics. The tests of the other features
# (test_conditional, test_synthesize, the eval and loss tests of test_train_stage) switch them on.
TEST_BASELINE = {"train.conditional": False, "train.eval.every_kimg": 0, "train.eval.n": 5000,
                 "train.loss": "ns", "train.spectral_norm.d": False, "train.g_channels": 64,
                 "train.d_channels": 64, "train.batch_size": 128, "train.g.lr": 0.0002, "train.d.lr": 0.0002,
                 "train.kimg": 200}
# the prior stages (invert, inpaint, edit) of a test project's `dvc repro`: seconds, not minutes
TINY_PRIOR = {"invert.n": 12, "invert.batch_size": 12, "invert.project.steps": 5, "invert.project.bank": 500,
              "invert.edit.fit_n": 100}


def apply_overrides(params: dict, overrides: dict) -> dict:
    """Apply {'train.kimg': 0.5, ...} to a params mapping in place; returns it."""
    from ganforge.config import set_dotted

    return set_dotted(params, overrides)


def set_params(path: Path, overrides: dict) -> None:
    """Apply {'train.kimg': 0.5, ...} to a params.yaml in place."""
    params = apply_overrides(yaml.safe_load(path.read_text()), overrides)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def copy_params(dest: Path) -> Path:
    """This repo's params.yaml at `dest`, from the tests' baseline (TEST_BASELINE)."""
    shutil.copy(ROOT / "params.yaml", dest)
    set_params(dest, TEST_BASELINE)
    return dest


def make_project(dest: Path, overrides: dict | None = None) -> Path:
    """A fresh git + DVC project with this repo's pipeline, for `dvc repro` / `dvc exp run` tests."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info",
                                                                            "dvc.lock"))
        else:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    set_params(dest / "params.yaml", {**TEST_BASELINE, **TINY_PRIOR, **(overrides or {})})
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run(["git", "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=dest, check=True)
    return dest


def dvc(*args: str, cwd: Path, env: dict | None = None, timeout: float = 900,
        merged: bool = False) -> subprocess.CompletedProcess:
    """The real dvc CLI of this environment, with the venv's python first on PATH (as `make run` does).

    merged: stderr goes into stdout, in the order things were written (stages inherit dvc's streams)."""
    bindir = str(Path(sys.executable).parent)
    full_env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", ""), **(env or {})}
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT} if merged else {"capture_output": True}
    return subprocess.run([str(Path(bindir) / "dvc"), *args], cwd=cwd, env=full_env, text=True,
                          timeout=timeout, **streams)


@pytest.fixture
def server():
    """A loopback HTTP server (dl_helpers.LoopbackServer) for the download tests, closed afterwards."""
    from dl_helpers import LoopbackServer

    s = LoopbackServer()
    yield s
    s.close()


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """In-process torch on one thread. These nets are tiny: two threads sharing two cores with the stage
    subprocesses and servers the tests start mostly spin-wait. (Stage subprocesses keep torch's default.)"""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def untrained_generator(seed: int = 0, arch: str = "dcgan", spectral_norm: bool = False, z_dim: int = 16,
                        g_channels: int = 8, num_classes: int = 0):
    """An untrained 28 px, 1-channel G from the architecture registry, in eval mode, with non-trivial
    BatchNorm running statistics (as training leaves them): the one way tests build a generator.
    num_classes > 0: class-conditional, with each class's BatchNorm gain and bias made distinct (as training
    leaves them: an untrained conditional G starts by ignoring the class)."""
    import torch

    from ganforge.nets import build_networks

    torch.manual_seed(seed)
    G, _ = build_networks(arch, z_dim=z_dim, channels=1, resolution=28, g_channels=g_channels, d_channels=8,
                          g_spectral_norm=spectral_norm, d_spectral_norm=False, num_classes=num_classes)
    with torch.no_grad():
        if num_classes:
            from ganforge.nets.conditional import ConditionalBatchNorm2d

            for m in G.modules():
                if isinstance(m, ConditionalBatchNorm2d):
                    m.gain.add_(0.5 * torch.randn_like(m.gain))
                    m.bias.add_(0.5 * torch.randn_like(m.bias))
            G.train()(torch.randn(64, z_dim), torch.arange(64) % num_classes)
        else:
            G.train()(torch.randn(64, z_dim))
    return G.eval()


# A tiny but real run: the seed recipe (ns loss, no regulariser or augmentation, Adam 2e-4 (0.5, 0.999) for
# both, no packing or minibatch stddev) at 8/8 channels, z of 16, batch 32, 10 steps, on the CPU. Dotted
# params keys laid over params.yaml: tests vary them with the same names a user writes.
TINY = {"base.seed": 0, "train.device": "cpu", "train.fast": "auto", "train.arch": "dcgan",
        "train.spectral_norm.g": False, "train.spectral_norm.d": False, "train.loss": "ns",
        "train.reg.kind": "none", "train.reg.weight": 1.0, "train.reg.every": 1, "train.augment": "",
        "train.z_dim": 16, "train.g_channels": 8, "train.d_channels": 8, "train.batch_size": 32,
        "train.g.lr": 2e-4, "train.d.lr": 2e-4, "train.d_steps": 1, "train.lr_decay": "none",
        "train.kimg": 0.32, "train.ema.enabled": True, "train.ema.decay": 0.999, "train.eval.every_kimg": 0,
        "train.conditional": False, "train.fake_labels": "uniform", "train.label_matching": 0.0,
        "train.log_every": 5, "train.image_every": 10, "train.ckpt_every": 5, "train.pack": 1,
        "train.mbstd_group": 0}


def tiny_params(overrides: dict | None = None, root: Path = ROOT):
    """Validated params (base and train sections): params.yaml, TINY, then `overrides` ({'train.kimg': 1})."""
    from ganforge.config import parse_params

    raw = apply_overrides(yaml.safe_load((root / "params.yaml").read_text()), {**TINY, **(overrides or {})})
    return parse_params(raw, root / "params.yaml", sections=("base", "train"))


def tiny_fit(x_train, y_train=None, num_classes: int = 0, overrides: dict | None = None, *,
             data_hash: str = "tiny", world=None, **engine):
    """Build the z -> image task from tiny_params(overrides) and train it with the engine, as the train stage
    does (without MLflow); `engine` overrides the engine's arguments (checkpoint_path, resume, evaluate,
    eval_every, stop, ...). Returns the engine's TrainResult."""
    import torch

    from ganforge.train import build, train

    p = tiny_params(overrides)
    built = build(p, x_train, y_train, num_classes, data_hash=data_hash, device=torch.device(p.train.device),
                  world=world)
    return train(built.task, **{**built.engine, "progress": False, **engine})


# Stage subprocesses on one torch thread: the test nets are tiny, and two threads fighting other processes
# for two cores mostly spin-wait.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict:
    """The environment of a stage subprocess that logs into a fresh sqlite MLflow store, one per test module
    (creating a store costs seconds)."""
    db = tmp_path_factory.mktemp("store") / "mlflow.db"
    return {"MLFLOW_TRACKING_URI": f"sqlite:///{db}", **ONE_THREAD}


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory) -> Path:
    """Real MNIST, prepared by the real download stage (served from the user cache after the first run)."""
    out = tmp_path_factory.mktemp("data") / "mnist"
    proc = run_stage("download", "--params", str(ROOT / "params.yaml"), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="session")
def tiny_mnist_dir(mnist_dir, tmp_path_factory) -> Path:
    """A small real-MNIST subset in the prepared format (2048 train, 512 test) for fast stage tests."""
    import json

    from ganforge.data.prepared import load_info, load_split
    from ganforge.io import atomic_save_npz

    out = tmp_path_factory.mktemp("data") / "mnist"
    out.mkdir()
    info = load_info(mnist_dir)
    for split, n in (("train", 2048), ("test", 512)):
        images, labels = load_split(mnist_dir, split)
        atomic_save_npz(out / f"{split}.npz", images=images[:n], labels=labels[:n])
        info.setdefault("counts", {})[split] = n
    info["subset_of"] = str(mnist_dir)
    (out / "info.json").write_text(json.dumps(info, indent=2))
    return out
