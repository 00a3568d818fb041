"""Helpers for the download tests: a loopback HTTP server with misbehaviours on demand (and a PEP 503 index
on it), and small datasets generated in the real on-disk formats (IDX, CIFAR python batches, wheels,
multi-page slide TIFFs, PNGs)."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import socket
import struct
import tarfile
import threading
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

IDX_NAMES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


# ---------------------------------------------------------------------------------------------- server
@dataclass
class Route:
    body: bytes
    ranges: bool = True          # honour "Range: bytes=N-" with 206
    truncate: int = 0            # this many responses stop after half the body (Content-Length promises all)
    delay: float = 0.0           # seconds to wait before answering (a stalled server)
    content_length: bool = True  # False: no Content-Length, the body ends when the connection closes
    content_type: str | None = None  # a Content-Type header (pip reads only text/html index pages)
    sent: int = 0                # body bytes written so far, over all requests


@dataclass
class LoopbackServer:
    """http://127.0.0.1:<free port>/...: serves `routes`, 404 for anything else, records each request."""

    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)

    def __post_init__(self):
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                route = server.routes.get(self.path)
                if route is None:
                    self.send_error(404, "Not Found")
                    return
                if route.delay and server._stop.wait(route.delay):
                    return
                body, status, start = route.body, 200, 0
                if rng and route.ranges and rng.startswith("bytes=") and rng.endswith("-"):
                    start, status = int(rng[6:-1]), 206
                self.send_response(status)
                if route.content_length:
                    self.send_header("Content-Length", str(len(body) - start))
                if route.content_type:
                    self.send_header("Content-Type", route.content_type)
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.end_headers()
                end = len(body)
                if route.truncate:
                    route.truncate -= 1
                    end = start + (len(body) - start) // 2  # HTTP/1.0: the connection closes short
                route.sent += end - start  # counted first: the client may finish before this thread
                self.wfile.write(body[start:end])

            def log_message(self, *args):  # keep test output clean
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def close(self):
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()


def closed_port() -> int:
    """A loopback port with nothing listening (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------- data
def idx_bytes(a: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array: magic (0, 0, 0x08, ndim), big-endian sizes, values."""
    header = bytes([0, 0, 8, a.ndim]) + np.asarray(a.shape, dtype=">u4").tobytes()
    return header + a.astype(np.uint8).tobytes()


def tiny_idx_dataset(n_train=24, n_test=12, seed=0):
    """{split: (images [N,28,28], labels [N])} and {file name: decoded IDX bytes}."""
    rng = np.random.default_rng(seed)
    splits = {s: (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8))
              for s, n in (("train", n_train), ("test", n_test))}
    files = {}
    for s, (x, y) in splits.items():
        files[IDX_NAMES[s][0]], files[IDX_NAMES[s][1]] = idx_bytes(x), idx_bytes(y)
    return splits, files


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def cifar_batches(n=6, seed=0) -> tuple[dict[str, tuple[np.ndarray, list[int]]], dict[str, bytes]]:
    """Six batch files in the CIFAR-10 python format (pickle protocol 2 of a dict with bytes keys)."""
    rng = np.random.default_rng(seed)
    arrays, files = {}, {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        arrays[name] = (data, labels)
        files[name] = pickle.dumps({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                                    b"filenames": [f"{name}_{i}.png".encode() for i in range(n)]}, protocol=2)
    return arrays, files


def tar_gz(members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buf.getvalue()


def write_registry(path: Path, entries: dict) -> dict:
    """A GANFORGE_REGISTRY file; returns the env vars that select it."""
    path.write_text(yaml.safe_dump(entries))
    return {"GANFORGE_REGISTRY": str(path)}


# ------------------------------------------------------------------------------------------ package formats
def wheel_bytes(name: str, version: str, files: dict[str, bytes]) -> bytes:
    """A minimal pure-Python wheel (a zip): `files` by their paths inside, plus the dist-info pip reads."""
    dist = f"{name.replace('-', '_')}-{version}.dist-info"
    meta = {f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
            f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: ganforge-tests\nRoot-Is-Purelib: true\n"
                             b"Tag: py3-none-any\n"}
    record = "".join(f"{p},,\n" for p in [*files, *meta]) + f"{dist}/RECORD,,\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for path, data in {**files, **meta, f"{dist}/RECORD": record.encode()}.items():
            z.writestr(zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def serve_simple_index(server: LoopbackServer, name: str, version: str, wheel: bytes) -> dict:
    """Serve `wheel` from a PEP 503 simple index on `server`; returns the env that points pip at it alone
    (no configuration files, find-links or cache of this machine)."""
    filename = f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    digest = hashlib.sha256(wheel).hexdigest()
    server.routes[f"/simple/{name}/"] = Route(
        f'<html><body><a href="/files/{filename}#sha256={digest}">{filename}</a></body></html>'.encode(),
        content_type="text/html")
    server.routes[f"/files/{filename}"] = Route(wheel)
    return {"PIP_INDEX_URL": f"{server.url}/simple/", "PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": "",
            "PIP_NO_CACHE_DIR": "1", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


def member_set_sha256(members: dict[str, bytes]) -> str:
    """The registry hash of a member set, computed here independently of ganforge.data.mirrors: sha256 over
    the members sorted by name, each as name length (u32 BE), name, data length (u64 BE), data."""
    h = hashlib.sha256()
    for name in sorted(members):
        raw = name.encode()
        h.update(struct.pack(">I", len(raw)) + raw + struct.pack(">Q", len(members[name])) + members[name])
    return "sha256:" + h.hexdigest()


def member_set_size(members: dict[str, bytes]) -> int:
    return sum(4 + len(n.encode()) + 8 + len(d) for n, d in members.items())


def slide_tiff(level0: np.ndarray) -> bytes:
    """A multi-page TIFF like an Aperio slide's: a quarter-size level, level 0 (uint8 [H, W, 3]) and a small
    'label' photo, LZW-compressed (lossless, so pixel values survive exactly). Level 0 is not the first
    page, so a reader has to pick it as the largest."""
    im = Image.fromarray(level0)
    quarter = im.resize((max(1, im.width // 4), max(1, im.height // 4)))
    buf = io.BytesIO()
    quarter.save(buf, format="TIFF", compression="tiff_lzw", save_all=True,
                 append_images=[im, Image.new("RGB", (20, 12), "blue")])
    return buf.getvalue()


def png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()
