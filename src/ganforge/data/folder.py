"""A directory of the user's own images (faces, scans, ...): flat, or one sub-folder per class.

Every image is centre-cropped to a square and resized to `resolution`, in grayscale (1 channel) or RGB (3).
Files with an image extension that cannot be decoded are skipped and counted; other files are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ganforge.errors import ConfigError, GanforgeError


@dataclass
class FolderImages:
    images: np.ndarray                 # uint8 [N, C, R, R]
    labels: np.ndarray                 # int64 [N]
    classes: list[str]
    skipped: list[str] = field(default_factory=list)  # "relative/path: why" of undecodable files


def _image_suffixes() -> set[str]:
    Image.init()  # registers every plugin, so PIL knows all the extensions it can read
    return {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


def _files_by_class(root: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """Class sub-folders (sorted) if there are any, else the flat folder as one class named after it."""
    suffixes = _image_suffixes()
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    groups = [(d.name, d) for d in subdirs] if subdirs else [(root.resolve().name or "images", root)]
    files = []
    for label, (_, d) in enumerate(groups):
        files += [(p, label) for p in sorted(d.rglob("*"))
                  if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith(".")]
    return [name for name, _ in groups], files


def load_image(path: Path, resolution: int, channels: int) -> np.ndarray:
    """uint8 [C, R, R]: EXIF-rotated, centre-cropped to square, resized with a Lanczos filter."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        im = im.convert("L" if channels == 1 else "RGB")
        im = ImageOps.fit(im, (resolution, resolution), method=Image.Resampling.LANCZOS, centering=(0.5, 0.5))
        a = np.asarray(im, dtype=np.uint8)
    return a[None] if channels == 1 else a.transpose(2, 0, 1)  # [H, W, C] -> [C, H, W]


def read_folder(root: str | Path, resolution: int, channels: int, progress=None) -> FolderImages:
    """All decodable images under `root`; `progress(done, total)` is called after each file."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"download.folder.path: {root} is not a directory")
    classes, files = _files_by_class(root)
    images, labels, skipped = [], [], []
    for i, (path, label) in enumerate(files):
        try:
            images.append(load_image(path, resolution, channels))
            labels.append(label)
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
            skipped.append(f"{path.relative_to(root)}: {e}")
        if progress:
            progress(i + 1, len(files))
    if not images:
        raise GanforgeError(f"no usable images in {root} ({len(files)} image files, {len(skipped)} "
                            "unreadable); put images there, flat or one sub-folder per class")
    return FolderImages(np.stack(images), np.asarray(labels, dtype=np.int64), classes, skipped)


def split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (train, test) index arrays: a seeded permutation; each side gets at least one image."""
    if n < 2:
        raise GanforgeError(f"a folder dataset needs at least 2 usable images (train and test), found {n}")
    n_test = min(max(1, round(n * test_fraction)), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])
