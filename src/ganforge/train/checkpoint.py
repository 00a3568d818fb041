"""Full, resumable training checkpoints: everything needed to continue bit-for-bit where a run stopped.

One file, checkpoints/train.pt, replaced atomically (temp file + rename), so a kill at any moment leaves
the previous checkpoint intact. It holds only tensors, numbers, strings, lists and dicts, so it loads
with torch.load(weights_only=True); a file that needs arbitrary unpickling is refused.

A run resumes only when the checkpoint's `config` (the arguments that determine the trajectory, see
run.trajectory_config) equals the new run's; otherwise training starts fresh and says why. When only the
code differs (an edit to losses/, nets/, tasks/ or train/), the old checkpoint is kept beside the new run as
train.step<N>.code<hash>.pt: a comment added to a file must not cost a day of training.

Integrity: torch does not check its zip CRCs, so a flipped bit in a weight would be resumed silently. Each
checkpoint carries the sha256 of its whole content (every tensor's bytes and every value, in key order), and
loading verifies it: a corrupt file is refused, never resumed or called "the last good checkpoint".
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ganforge.errors import GanforgeError
from ganforge.io import atomic_torch_save, load_torch

CHECKPOINT_FORMAT = "ganforge.train-checkpoint/2"
CHECKPOINT_FILE = "train.pt"


def rng_states(generators: dict[str, torch.Generator]) -> dict:
    """Every random stream a run touches: the global torch/cuda/numpy/python ones and our own generators
    (data sampler, z), each as plain tensors/lists so that weights_only loading accepts them."""
    np_state = np.random.get_state()  # ('MT19937', uint32[624], pos, has_gauss, cached_gaussian)
    py_state = random.getstate()  # (version, tuple of 625 ints, gauss_next)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
        "generators": {name: g.get_state() for name, g in generators.items()},
    }


def set_rng_states(state: dict, generators: dict[str, torch.Generator]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    for name, g in generators.items():
        g.set_state(state["generators"][name])


def content_sha256(obj) -> str:
    """sha256 of a checkpoint's content: dicts in key order, lists in order, tensors by dtype, shape and
    bytes, other values by repr (exact for floats)."""
    digest = hashlib.sha256()

    def walk(x) -> None:
        if isinstance(x, dict):
            digest.update(b"{")
            for k in sorted(x, key=str):
                digest.update(repr(k).encode() + b":")
                walk(x[k])
            digest.update(b"}")
        elif isinstance(x, list | tuple):
            digest.update(b"[")
            for item in x:
                walk(item)
            digest.update(b"]")
        elif isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous()
            digest.update(f"T{t.dtype}{list(t.shape)}".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            digest.update(repr(x).encode())

    walk(obj)
    return digest.hexdigest()


def save_checkpoint(path: str | Path, state: dict) -> Path:
    """Atomically write `state` (a dict built by the engine) with the format tag and its content hash."""
    state = {"format": CHECKPOINT_FORMAT, **state}
    return atomic_torch_save(path, {**state, "sha256": content_sha256(state)})


def remove_stale_temp_files(path: str | Path) -> list[Path]:
    """Delete the temporary files a SIGKILL in the middle of a checkpoint write left beside `path`
    (.train.pt.*.tmp: never a valid checkpoint, and DVC would cache and push them). Returns them."""
    path = Path(path)
    stale = sorted(path.parent.glob(f".{path.name}.*.tmp")) if path.parent.is_dir() else []
    for f in stale:
        f.unlink(missing_ok=True)
    return stale


def _dotted(config: dict, prefix: str = "") -> dict:
    """{"train": {"g": {"lr": 1}}} -> {"train.g.lr": 1}: what a changed-config message names."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out.update(_dotted(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def load_checkpoint(path: str | Path, config: dict, say: Callable[[str], None] = print) -> dict | None:
    """The checkpoint at `path` if it exists and was written with the same `config`, else None.

    Says what it decided: resuming (and from which step), or starting fresh (and why).
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        ckpt = load_torch(path)
    except GanforgeError as e:
        raise GanforgeError(f"{e}\n  delete {path} to start training from scratch") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise GanforgeError(f"{path} is not a ganforge training checkpoint "
                            f"(expected format {CHECKPOINT_FORMAT}); delete it to start from scratch")
    recorded = ckpt.pop("sha256", None)
    if recorded != content_sha256(ckpt):
        raise GanforgeError(f"{path} is corrupt: its content does not match the sha256 it was written with "
                            "(a flipped bit, or a file cut short); restore it (`dvc checkout checkpoints`, "
                            "`dvc pull`) or delete it to train from scratch")
    old = ckpt.get("config", {})
    if old != config:
        old, new = _dotted(old), _dotted(config)
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        diff = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed)
        say(f"checkpoint {path} (step {ckpt.get('step')}) was written with a different config "
            f"({diff}); starting fresh")
        if changed == ["code"]:  # only the code changed: keep the run, the new one will overwrite train.pt
            kept = path.with_name(f"{path.stem}.step{ckpt.get('step')}.code{old.get('code')}{path.suffix}")
            path.replace(kept)
            say(f"the code changed since that checkpoint: kept it as {kept} (put back the code it names, "
                f"then rename it to {path.name}, to continue that run; train.resume: never discards it)")
        return None
    say(f"resuming from checkpoint {path} at step {ckpt['step']}")
    return ckpt
