"""IDX files (MNIST, Fashion-MNIST): a 4-byte magic (0, 0, dtype code, ndim), ndim big-endian uint32 sizes,
then the values in C order."""

from __future__ import annotations

import math

import numpy as np

from ganforge.errors import GanforgeError

UBYTE = 0x08  # the only dtype code MNIST-style datasets use


def parse_idx(data: bytes, name: str = "IDX data") -> np.ndarray:
    """uint8 array of the shape the header declares; a malformed file is a GanforgeError naming it."""
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != UBYTE or not 1 <= data[3] <= 4:
        raise GanforgeError(f"{name}: not an unsigned-byte IDX file (header {data[:4].hex()})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise GanforgeError(f"{name}: truncated header ({len(data)} bytes, {ndim} sizes need {header})")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    # math.prod of Python ints is exact; np.prod wraps at 2**64, so (65536,)*4 would claim 0 values
    expected = header + math.prod(shape)
    if len(data) != expected:
        raise GanforgeError(f"{name}: header says shape {shape} ({expected} bytes), "
                            f"file has {len(data)} bytes")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def read_idx_pair(images: bytes, labels: bytes, images_name: str, labels_name: str
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 1, H, W], labels int64 [N]) from the two IDX files of one split."""
    x = parse_idx(images, images_name)  # [N, H, W]
    y = parse_idx(labels, labels_name)  # [N]
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise GanforgeError(f"{images_name} {x.shape} and {labels_name} {y.shape} are not [N,H,W] and [N]")
    return x[:, None].copy(), y.astype(np.int64)
