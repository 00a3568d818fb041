"""Review issue 34, findings 4 and 8: tar headers and the decompressed tar stream are bounded before tarfile
buffers them (data/mirrors.py), and 16-bit / 32-bit / float images are scaled to 8 bits, not clipped
(data/folder.py). Every archive and image is built for real in tmp_path."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from dl_helpers import LoopbackServer, Route, cifar_batches, sha256, write_registry
from PIL import Image

from conftest import copy_params, run_stage, set_params
from ganforge.data.fetch import max_bytes
from ganforge.data.folder import load_image, read_folder
from ganforge.data.mirrors import MirrorError, read_tar_members

BLOCK = tarfile.BLOCKSIZE
HUGE = 32 << 20  # a 32 MiB header of one repeated byte: about 32 KB once gzipped


def _pad(n: int) -> bytes:
    return b"\0" * (-n % BLOCK)


def _header(name: str, type_: bytes, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.type, info.size = type_, size
    return info.tobuf(format=tarfile.USTAR_FORMAT if type_ in (b"0", b"x", b"g") else tarfile.GNU_FORMAT)


def _write_huge_header_tar(path: Path, kind: bytes, member: bytes) -> None:
    """A .tar.gz whose first header is an extension header (`kind`: pax x / g, GNU long name L) of HUGE
    bytes of b"a", then one regular member 'd/payload.bin'. Streamed: the test never holds HUGE in memory."""
    with gzip.open(path, "wb", compresslevel=9) as out:
        if kind == b"L":
            size, head, tail = HUGE + 1, b"", b"\0"
        else:
            body = len(" comment=\n") + HUGE
            length = body + len(str(body + len(str(body))))  # the record's length counts its own digits
            head, tail = f"{length} comment=".encode(), b"\n"
            size = length
        out.write(_header("././@LongLink" if kind == b"L" else "././@PaxHeader", kind, size))
        out.write(head)
        chunk = b"a" * (1 << 20)
        for _ in range(HUGE // len(chunk)):
            out.write(chunk)
        out.write(tail + _pad(size))
        out.write(_header("d/payload.bin", b"0", len(member)) + member + _pad(len(member)))
        out.write(b"\0" * (2 * BLOCK))


def _want(p):
    return p.name if p.name in ("payload.bin", "data_batch_1") else None


def _peak_while(fn):
    """(exception raised by fn or None, peak bytes Python allocated while fn ran)."""
    tracemalloc.start()
    try:
        try:
            fn()
            raised = None
        except Exception as e:  # noqa: BLE001 -- the test inspects it
            raised = e
        return raised, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# ------------------------------------------------------------------------------------ finding 4: tar headers
@pytest.mark.parametrize("kind", [b"x", b"g", b"L"], ids=["pax", "pax-global", "gnu-longname"])
def test_huge_tar_header_is_refused_before_it_is_buffered(tmp_path, kind):
    archive = tmp_path / "payload.tar.gz"
    _write_huge_header_tar(archive, kind, b"real data")
    assert archive.stat().st_size < 200_000  # tens of KB on the wire ...
    # ... and limits generous enough (as CIFAR's 6 x 35 MB) that only the header bound can catch it
    limits = {"payload.bin": 200 << 20}
    raised, peak = _peak_while(lambda: list(read_tar_members(archive, _want, limits)))
    assert isinstance(raised, MirrorError), raised
    msg = str(raised)
    assert msg.startswith("payload.tar.gz: refused: ") and "\n" not in msg, msg
    assert f"tar {'headers' if kind == b'g' else 'extension headers'} over 65,536 bytes" in msg, msg
    assert peak < HUGE // 16, f"peak {peak:,} bytes while refusing a {HUGE:,}-byte header"


def test_long_chain_of_extension_headers_is_refused_cleanly(tmp_path):
    # 3000 GNU long-name headers in a row before one member: each a few bytes, 1.5 MB of stream in all;
    # tarfile recurses once per header (RecursionError, a traceback) unless the chain is bounded
    buf = io.BytesIO()
    for _ in range(3000):
        buf.write(_header("././@LongLink", b"L", 4) + b"abc\0" + _pad(4))
    buf.write(_header("d/payload.bin", b"0", 3) + b"xyz" + _pad(3) + b"\0" * (2 * BLOCK))
    archive = tmp_path / "chain.tar.gz"
    archive.write_bytes(gzip.compress(buf.getvalue()))
    with pytest.raises(MirrorError, match=r"^chain.tar.gz: refused: more than 16 tar extension headers"):
        list(read_tar_members(archive, _want, {"payload.bin": 200 << 20}))


def test_stream_past_the_limits_is_refused_even_when_no_member_says_so(tmp_path):
    # a GNU sparse member, the last, declares a real size of 100 bytes but stores 16 MiB of zeros: the member
    # check (offset + declared size) passes, and tarfile decompresses all 16 MiB (or terabytes) to skip it
    stored = 16 << 20
    head = bytearray(_header("d/notes.bin", b"S", stored))
    head[483:495] = tarfile.itn(100, 12, tarfile.GNU_FORMAT)  # origsize
    head[148:156] = b"        "
    head[148:156] = b"%06o\0 " % tarfile.calc_chksums(bytes(head))[0]
    archive = tmp_path / "sparse.tar.gz"
    with gzip.open(archive, "wb") as out:
        out.write(bytes(head))
        for _ in range(stored >> 20):
            out.write(b"\0" * (1 << 20))
        out.write(b"\0" * (2 * BLOCK))
    limits = {"payload.bin": 1 << 20}
    with pytest.raises(MirrorError, match=r"^sparse.tar.gz: refused: expands to more than 1,048,576 bytes"):
        list(read_tar_members(archive, _want, limits))


@pytest.mark.parametrize("compress", ["gz", "bz2", "xz", ""])
def test_ordinary_archives_still_read(tmp_path, compress):
    # the archive is opened by content, as tarfile's r:* did; a long name takes a pax/GNU header legitimately
    long_name = "d/" + "x" * 150 + "/data_batch_1"
    data = {long_name: b"A" * 5000, "d/payload.bin": b"B" * 512, "d/readme.html": b"<html>"}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, body in data.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    raw = {"gz": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress, "": bytes}[compress](buf.getvalue())
    archive = tmp_path / "ok.tar"
    archive.write_bytes(raw)
    limits = {"data_batch_1": max_bytes(5000), "payload.bin": max_bytes(512)}
    got = dict(read_tar_members(archive, _want, limits))
    assert got == {"data_batch_1": b"A" * 5000, "payload.bin": b"B" * 512}


def test_truncated_archive_is_a_clean_mirror_error(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("d/payload.bin")
        info.size = 100_000
        tar.addfile(info, io.BytesIO(np.random.default_rng(0).bytes(100_000)))
    archive = tmp_path / "cut.tar.gz"
    archive.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(MirrorError, match=r"^cut.tar.gz is not a readable tar archive"):
        list(read_tar_members(archive, _want, {"payload.bin": 200_000}))


def test_download_stage_reports_the_huge_header_in_one_line_and_leaves_nothing(tmp_path):
    _, files = cifar_batches(n=2)
    archive = tmp_path / "served.tar.gz"
    _write_huge_header_tar(archive, b"x", files["data_batch_1"])
    server = LoopbackServer()
    try:
        server.routes["/c.tar.gz"] = Route(archive.read_bytes())
        registry = {"cifar10": {"files": {n: sha256(b) for n, b in files.items()},
                                "sizes": {n: 31_036_000 for n in files},  # CIFAR's: 200 MB of limits
                                "mirrors": [f"{server.url}/c.tar.gz"]}}
        params = tmp_path / "params.yaml"
        copy_params(params)
        set_params(params, {"base.dataset": "cifar10", "download.timeout_seconds": 2, "download.retries": 1})
        env = {"GANFORGE_CACHE": str(tmp_path / "cache"),
               **write_registry(tmp_path / "registry.yaml", registry)}
        out = tmp_path / "out"
        proc = run_stage("download", "--params", str(params), "--out", str(out), cwd=tmp_path, env=env)
    finally:
        server.close()
    assert proc.returncode == 1, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if f"{server.url}/c.tar.gz: " in ln]
    assert len(lines) >= 1 and "c.tar.gz: refused: tar extension headers over" in lines[-1], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()
    left = [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and p.name != ".lock"]
    assert left == [], left


# ---------------------------------------------------------------------------- finding 8: deep pixel formats
GRADIENT16 = np.tile(np.arange(0, 65536, 257, dtype=np.uint16), (256, 1))  # 0, 257, ..., 65535: 256 columns
EXPECTED8 = np.tile(np.arange(256, dtype=np.uint8), (256, 1))


def _load(path: Path) -> np.ndarray:
    return load_image(path, 256, 1)[0]  # resolution = size: fit() keeps the pixels as they are


def test_16bit_png_gradient_becomes_the_8bit_gradient(tmp_path):
    path = tmp_path / "g16.png"
    Image.fromarray(GRADIENT16).save(path)
    assert Image.open(path).mode == "I;16"
    assert np.array_equal(_load(path), EXPECTED8)


def test_16bit_big_endian_and_32bit_integer_tiffs_scale_alike(tmp_path):
    Image.frombytes("I;16B", (256, 256), GRADIENT16.astype(">u2").tobytes()).save(tmp_path / "be.tif")
    assert Image.open(tmp_path / "be.tif").mode == "I;16B"
    Image.fromarray(GRADIENT16.astype(np.int32)).save(tmp_path / "i32.tif")
    assert Image.open(tmp_path / "i32.tif").mode == "I"
    for name in ("be.tif", "i32.tif"):
        assert np.array_equal(_load(tmp_path / name), EXPECTED8), name
    # RGB output of a 16-bit gray image: the same gray in each channel
    rgb = load_image(tmp_path / "be.tif", 256, 3)
    assert rgb.shape == (3, 256, 256) and all(np.array_equal(c, EXPECTED8) for c in rgb)


def test_rounding_of_16bit_values(tmp_path):
    values = np.array([0, 128, 129, 385, 386, 65535 - 129, 65535 - 128, 65535], dtype=np.uint16)
    Image.fromarray(np.tile(values, (8, 1))).save(tmp_path / "r.png")
    got = load_image(tmp_path / "r.png", 8, 1)[0]  # 8x8 in, 8x8 out: no resampling
    assert got[0].tolist() == [0, 0, 1, 1, 2, 254, 255, 255] == np.round(values / 257).tolist()


def test_float_tiff_in_unit_range_becomes_the_8bit_gradient(tmp_path):
    path = tmp_path / "f.tif"
    Image.fromarray((EXPECTED8 / 255).astype(np.float32)).save(path)
    assert Image.open(path).mode == "F"
    assert np.array_equal(_load(path), EXPECTED8)


def test_float_tiff_outside_unit_range_is_refused_naming_the_file(tmp_path):
    src = tmp_path / "imgs"
    src.mkdir()
    Image.fromarray((EXPECTED8 / 255).astype(np.float32)).save(src / "good.tif")
    hdr = (EXPECTED8 / 255).astype(np.float32)
    hdr[0, 0] = 300.0
    Image.fromarray(hdr).save(src / "hdr.tif")
    Image.fromarray(np.full((8, 8), np.nan, np.float32)).save(src / "nan.tif")
    imgs = read_folder(src, 16, 1)
    assert len(imgs.images) == 1
    refused = dict(r.split(": ", 1) for r in imgs.refused)
    assert set(refused) == {"hdr.tif", "nan.tif"}, imgs.refused
    assert "300" in refused["hdr.tif"] and "[0, 1]" in refused["hdr.tif"], refused
    assert "[0, 1]" in refused["nan.tif"], refused


def test_32bit_integer_image_beyond_16_bits_is_refused(tmp_path):
    src = tmp_path / "imgs"
    src.mkdir()
    Image.fromarray(GRADIENT16).save(src / "good.png")
    Image.fromarray(np.full((8, 8), 70_000, np.int32)).save(src / "wide.tif")
    imgs = read_folder(src, 16, 1)
    assert len(imgs.images) == 1 and len(imgs.refused) == 1
    assert imgs.refused[0].startswith("wide.tif: ") and "65535" in imgs.refused[0], imgs.refused
