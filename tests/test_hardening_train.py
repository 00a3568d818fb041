"""Hardening of training (issue 34): no code runs from the rendezvous, no flipped bit or cut-short write is
resumed, an edit of the code does not discard an interrupted run, and params mean what dvc wrote."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from conftest import ROOT, copy_params, dvc, make_project, set_params
from ganforge.config import load_params
from ganforge.errors import ConfigError, GanforgeError
from ganforge.train.checkpoint import load_checkpoint, remove_stale_temp_files, save_checkpoint
from ganforge.train.distributed import World, resolve_nproc


class Payload:
    """Unpickling this runs code: it writes a marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path(self.marker).touch, ())


def _rank(rank: int, init: str, marker: str, out: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    world = World(rank=rank, size=2)
    try:
        plain = world.from_main({"step": 7, "w": torch.arange(5.0)} if rank == 0 else None)
        assert plain["step"] == 7 and torch.equal(plain["w"], torch.arange(5.0))
        assert world.from_main(None) is None
        try:
            world.from_main({"evil": Payload(marker)} if rank == 0 else None)
            verdict = "accepted"
        except Exception as e:  # the receiving rank refuses what is not tensors, numbers, strings, containers
            verdict = f"refused: {type(e).__name__}"
        if rank == 1:  # only the receiver's verdict: rank 0 sends without error, and both writing raced
            Path(out).write_text(verdict)
    finally:
        torch.distributed.destroy_process_group()


def test_rank_0_hands_over_the_checkpoint_without_a_pickle(tmp_path):
    marker, out = tmp_path / "ran-code", tmp_path / "rank1.txt"
    mp.spawn(_rank, args=(f"file://{tmp_path / 'store'}", str(marker), str(out)), nprocs=2, join=True)
    assert out.read_text().startswith("refused") and not marker.exists()


def test_a_flipped_bit_is_refused_not_resumed(tmp_path):
    path = tmp_path / "train.pt"
    weights = torch.linspace(-1, 1, 4096)
    save_checkpoint(path, {"step": 5, "config": {"a": 1}, "G": weights})
    assert load_checkpoint(path, {"a": 1}, say=lambda s: None)["step"] == 5
    blob = bytearray(path.read_bytes())
    at = blob.find(weights.numpy().tobytes()[:64]) + 1000  # inside the stored (uncompressed) tensor
    blob[at] ^= 0x10
    path.write_bytes(bytes(blob))
    assert torch.load(path, weights_only=True)["step"] == 5  # torch itself loads the damaged file
    with pytest.raises(GanforgeError, match="train.pt is corrupt: its content does not match the sha256"):
        load_checkpoint(path, {"a": 1}, say=lambda s: None)


def test_a_code_only_change_keeps_the_interrupted_run(tmp_path):
    path, said = tmp_path / "train.pt", []
    save_checkpoint(path, {"step": 40, "config": {"lr": 1, "code": "abc"}})
    assert load_checkpoint(path, {"lr": 1, "code": "def"}, say=said.append) is None
    kept = tmp_path / "train.step40.codeabc.pt"
    assert kept.exists() and not path.exists() and f"kept it as {kept}" in said[-1]
    assert load_checkpoint(kept, {"lr": 1, "code": "abc"}, say=said.append)["step"] == 40  # resumable
    save_checkpoint(path, {"step": 40, "config": {"lr": 1, "code": "abc"}})  # a params change: no copy
    assert load_checkpoint(path, {"lr": 2, "code": "abc"}, say=said.append) is None and path.exists()


def test_a_write_cut_short_is_removed_and_never_cached(tmp_path):
    project = make_project(tmp_path / "p")
    ckpts = project / "checkpoints"
    ckpts.mkdir()
    stale = ckpts / ".train.pt.x1y2.tmp"
    stale.write_bytes(b"half a checkpoint")
    proc = dvc("check-ignore", "checkpoints/.train.pt.x1y2.tmp", cwd=project)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # .dvcignore: DVC neither caches nor pushes it
    assert remove_stale_temp_files(ckpts / "train.pt") == [stale] and not stale.exists()


def test_params_are_read_as_yaml_1_2_as_dvc_writes_them(tmp_path):
    params = copy_params(tmp_path / "params.yaml")
    text = re.sub(r"(?m)^  fast: \S+", "  fast: off", params.read_text())
    params.write_text(text.replace("  lr: 0.0002", "  lr: 2e-4", 1))
    p = load_params(params, "train")
    assert p.train.fast == "off" and p.train.g.lr == 2e-4  # YAML 1.1: False (refused) and the string "2e-4"


@pytest.mark.parametrize("key,value,message", [
    ("train.kimg", ".inf", "train.kimg: Input should be a finite number"),
    ("train.kimg", "1e309", "train.kimg: Input should be a finite number"),
    ("train.g.lr", ".nan", "train.g.lr: Input should be a finite number"),
    ("train.z_dim", "10000000", "train.z_dim: Input should be less than or equal to 65536"),
    ("base.seed", "99999999999999999999", "base.seed: Input should be less than 2147483648"),
])
def test_infinities_and_absurd_sizes_are_refused_naming_the_key(tmp_path, key, value, message):
    params = copy_params(tmp_path / "params.yaml")
    section, *rest = key.split(".")
    lines, path = params.read_text().splitlines(), [section, *rest]
    depth, out = 0, []
    for line in lines:  # set the key's value as written text (a YAML 1.2 scalar), not through a dumper
        name = line.strip().split(":")[0]
        if depth < len(path) and line.startswith("  " * depth + path[depth] + ":"):
            depth += 1
            if depth == len(path):
                line = f"{'  ' * (depth - 1)}{name}: {value}"
        out.append(line)
    params.write_text("\n".join(out) + "\n")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_params(params)


def test_more_cpu_processes_than_cores_are_refused():
    cpus = os.cpu_count() or 1
    assert resolve_nproc(cpus, torch.device("cpu")) == cpus
    with pytest.raises(ConfigError, match=rf"train.nproc is {cpus + 1} but this machine has {cpus} CPU"):
        resolve_nproc(cpus + 1, torch.device("cpu"))


def test_the_train_stage_removes_a_write_cut_short(tmp_path, tiny_mnist_dir, store):
    """Through the CLI: the stale temp file is gone before training starts (a two-step run)."""
    cwd = tmp_path
    set_params(copy_params(cwd / "params.yaml"), {"train.kimg": 0.256, "train.g_channels": 8,
                                                  "train.d_channels": 8, "train.device": "cpu"})
    (cwd / "checkpoints").mkdir()
    (cwd / "checkpoints" / ".train.pt.k9.tmp").write_bytes(b"x")
    env = {**os.environ, **store, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "stages/train.py"), "--data", str(tiny_mnist_dir)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert "removed checkpoints/.train.pt.k9.tmp" in proc.stdout, proc.stdout + proc.stderr
    assert not (cwd / "checkpoints" / ".train.pt.k9.tmp").exists()
