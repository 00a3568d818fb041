"""Small I/O helpers every stage shares: atomic writes, safe torch loading, project paths.

Atomic = write next to the target, fsync, then os.replace: a crash leaves either the old file or the
new one, never half of one.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ganforge.errors import GanforgeError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_save_npz(path: str | Path, **arrays: np.ndarray) -> Path:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # uncompressed: MNIST-sized data loads in milliseconds and hashes stably
    return atomic_write_bytes(path, buf.getvalue())


def atomic_torch_save(path: str | Path, obj) -> Path:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


@contextlib.contextmanager
def atomic_dir(final: str | Path):
    """Yield a fresh temporary directory beside `final`; on success it replaces `final` whole.

    On any error the temporary directory is removed and `final` is untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700; the output directory gets the usual permissions
    try:
        yield tmp
        if final.exists():
            old = final.with_name(f".{final.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_net(path: str | Path, net, fmt: str, meta: dict | None = None) -> Path:
    """A network file that rebuilds itself: format tag, the constructor config (net.config()), CPU weights
    and JSON-able meta, as plain dicts/tensors so it loads with weights_only=True (load_net)."""
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    return atomic_torch_save(path, {"format": fmt, "config": net.config(), "state_dict": state,
                                    "meta": dict(meta or {})})


def load_net(path: str | Path, fmt: str, cls, device="cpu", what: str = "network", hint: str = ""):
    """(cls(**config) with the file's weights, in eval mode on `device`, the file's meta).

    A file of another format is refused naming `what` it should have been, plus `hint` (what to run)."""
    blob = load_torch(path)
    if not isinstance(blob, dict) or blob.get("format") != fmt:
        raise GanforgeError(f"{path} is not a ganforge {what} file (expected format {fmt}){hint}")
    net = cls(**blob["config"])
    net.load_state_dict(blob["state_dict"])
    return net.to(device).eval(), dict(blob.get("meta", {}))


def read_json(path: str | Path, hint: str):
    """A JSON file another stage wrote; missing or malformed is a GanforgeError that says what to run."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise GanforgeError(f"{path} not found: {hint}") from None
    except ValueError as e:
        raise GanforgeError(f"{path} is not valid JSON: {e}") from None


def load_torch(path: str | Path, map_location="cpu"):
    """torch.load with weights_only=True: tensors, numbers, strings, lists and dicts only.

    A file that needs arbitrary unpickling (code execution) is refused with a clear error.
    """
    import torch

    path = Path(path)
    if not path.exists():
        raise GanforgeError(f"file not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GanforgeError(
            f"refusing to load {path}: it needs arbitrary unpickling, which could run code "
            f"(weights_only=True rejected it: {first})"
        ) from None
    except (RuntimeError, EOFError, OSError) as e:
        raise GanforgeError(f"cannot read {path} (corrupt or not a torch file): {e}") from None


def resolve_device(name: str):
    """`auto` = cuda, else mps, else cpu. Asking for an absent accelerator is a ConfigError (exit 2)."""
    import torch

    from ganforge.errors import ConfigError

    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    elif name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but no CUDA GPU is visible (use device: auto or cpu)")
    elif name == "mps" and not has_mps:
        raise ConfigError("device 'mps' was asked for but MPS is not available (use device: auto or cpu)")
    return torch.device(name)


def project_root(start: str | Path | None = None) -> Path:
    """The DVC project root that owns the shared stores (mlflow.db, mlartifacts/).

    `dvc exp run --temp/--queue` executes in a copy under <root>/.dvc/tmp/exps/<tmpdir>/; runs from
    there must land in the workspace's store, so such a path maps back to <root>.
    """
    p = Path(start or os.getcwd()).resolve()
    parts = p.parts
    for i in range(len(parts) - 3):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    for cand in (p, *p.parents):
        if (cand / "dvc.yaml").exists() or (cand / ".dvc").is_dir():
            return cand
    return p
