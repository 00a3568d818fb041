"""Files, safely: atomic writes (files, JSON, npz, torch files, whole directories) and loading that
never executes code.

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

from ganforge.errors import ConfigError, GanforgeError


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


def read_png(path, what: str) -> np.ndarray:
    """uint8 [C, H, W] (C = 1 grey, 3 RGB; alpha dropped); an unreadable file is a ConfigError."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            img = np.asarray(im.convert("L" if im.mode in ("1", "L", "LA", "I", "I;16") else "RGB"))
    except (OSError, UnidentifiedImageError) as e:
        raise ConfigError(f"{what} {path}: not a readable image ({e})") from None
    return img[None] if img.ndim == 2 else img.transpose(2, 0, 1)
