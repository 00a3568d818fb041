"""Get every file of a dataset into the user cache, verified: cache first, then each mirror in order.

Cache layout ($GANFORGE_CACHE, default ~/.cache/ganforge):
  <dataset>/<file>          decoded content, verified against the registry's hash before it was stored (a
                            member set 'img/google/64/*.png': its pack, as img-google-64-all.png.set)
  <dataset>/<file>.source   the mirror that served it (so info.json says the same on every rerun)
  <dataset>/.lock           held while fetching, so parallel runs (dvc exp run --queue -j2) do not collide
  downloads/*.part          interrupted HTTP transfers, resumed by the next run
A cached file is re-hashed on every use (~0.1 s for MNIST); one that no longer matches is removed and
fetched again. No file is downloaded, extracted or decompressed past max_bytes(its registry size).
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import io
import zlib
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from ganforge.config import Download
from ganforge.data import mirrors
from ganforge.data.registry import DatasetSpec, cache_root
from ganforge.errors import GanforgeError
from ganforge.io import atomic_write_bytes, atomic_write_text

console = Console(stderr=True, highlight=False, soft_wrap=True)


@dataclass(frozen=True)
class CachedFile:
    path: Path     # decoded content in the cache
    sha256: str    # of the decoded content (recorded in info.json whatever the registry verifies with)
    source: str    # the mirror that served it


class HashMismatch(mirrors.MirrorError):
    pass


def _digests(data: bytes, algo: str) -> tuple[str, str]:
    """(hex digest by `algo`, sha256 hex) of data."""
    sha = hashlib.sha256(data).hexdigest()
    return (sha if algo == "sha256" else hashlib.new(algo, data).hexdigest()), sha


def max_bytes(size: int) -> int:
    """The most bytes a file of `size` decoded bytes may take, as downloaded or once decompressed: an eighth
    more plus 64 KiB, room for gzip's overhead on incompressible data and for a registry size a little off."""
    return size + size // 8 + (64 << 10)


def decode(file: str, raw: bytes, limit: int) -> bytes:
    """Gunzip when the bytes say gzip (mirrors differ in what they compress, names lie), streaming and
    stopping past `limit` bytes: a 1 KB gzip can inflate to a gigabyte, and the hash is checked only after."""
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as f:
            data = f.read(limit + 1)  # one byte more than allowed tells "too large" apart from "just fits"
    except (OSError, EOFError, zlib.error) as e:
        raise mirrors.MirrorError(f"{file}: corrupt gzip data ({e})") from None
    if len(data) > limit:
        raise mirrors.too_large(file, limit, "its decompressed size")
    return data


def cache_name(file: str) -> str:
    """A file's name in the cache: itself, or for a member set a flat name without '/' or '*'."""
    if not mirrors.is_member_set(file):
        return file
    return file.replace("/", "-").replace("*", "all") + ".set"


@contextlib.contextmanager
def _locked(directory: Path):
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _cached(path: Path, expected: str) -> CachedFile | None:
    """The cache entry if present and intact; a corrupt one is removed (and then fetched again)."""
    if not path.is_file():
        return None
    algo, _, want = expected.partition(":")
    got, sha = _digests(path.read_bytes(), algo)
    if got != want:
        console.print(f"warning: cached {path} is corrupt ({algo} expected {want}, got {got}): "
                      "removed, fetching it again")
        path.unlink()
        return None
    source = path.with_name(path.name + ".source")
    return CachedFile(path, sha, source.read_text().strip() if source.exists() else "unknown")


def _store(path: Path, file: str, raw: bytes, expected: str, source: str, limit: int) -> CachedFile:
    data = decode(file, raw, limit)
    algo, _, want = expected.partition(":")
    got, sha = _digests(data, algo)
    if got != want:
        # nothing is written, and the raw download is already gone: the bad entry never reaches the cache
        raise HashMismatch(f"{file}: {algo} mismatch, expected {want}, got {got} (download removed)")
    atomic_write_bytes(path, data)
    atomic_write_text(path.with_name(path.name + ".source"), source + "\n")
    return CachedFile(path, sha, source)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), console=console, transient=True,
                    disable=not console.is_terminal)


def fetch_dataset(name: str, spec: DatasetSpec, cfg: Download) -> dict[str, CachedFile]:
    """Every file of `spec`, verified and cached. All mirrors failing is a GanforgeError (exit 1) with one
    line per mirror saying why."""
    root = cache_root()
    directory = root / name
    with _locked(directory), _progress() as bar:
        have = {f: c for f, h in spec.files.items() if (c := _cached(directory / cache_name(f), h))}
        failures = []

        def track(label: str):
            task = bar.add_task(label, total=None)
            return lambda done, total: bar.update(task, completed=done, total=total)

        limits = {f: max_bytes(spec.sizes[f]) for f in spec.files}
        settings = mirrors.Settings(cfg.timeout_seconds, cfg.retries, cfg.backoff_seconds, root / "downloads",
                                    limits, progress=track)
        for mirror in spec.mirrors:
            missing = [f for f in spec.files if f not in have]
            if not missing:
                break
            if not mirror.startswith(("http:", "https:", "file:")):
                console.print(f"fetching {len(missing)} file(s) of {name} from {mirror}")
            try:
                # closing(): a mirror stopped half-way still cleans up (temp dirs, a bad archive)
                with contextlib.closing(mirrors.fetch(mirror, missing, settings)) as fetched:
                    for file, raw in fetched:
                        have[file] = _store(directory / cache_name(file), file, raw, spec.files[file], mirror,
                                            limits[file])
            except mirrors.MirrorError as e:
                failures.append(f"{mirror}: {e}")
                console.print(f"mirror failed: {failures[-1]}")
    missing = [f for f in spec.files if f not in have]
    if missing:
        raise GanforgeError(f"could not fetch {name} ({', '.join(missing)}): every mirror failed:\n  "
                            + "\n  ".join(failures or ["no mirrors configured"]))
    return {f: have[f] for f in spec.files}
