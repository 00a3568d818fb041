"""A directory of the user's own images (faces, scans, ...): flat, or one sub-folder per class.

Every image is centre-cropped to a square and resized to `resolution`, in grayscale (1 channel) or RGB (3).
Only PNG, JPEG, BMP, WebP and TIFF are read, as Pillow detects them from the content (not the name): Pillow
knows forty formats, and some reach far (EPS and PS run Ghostscript). Files with one of those formats'
extensions that do not decode as one of them are skipped and counted; other files are ignored.

Pixels deeper than 8 bits are scaled to 8 bits, never clipped (see to_8bit): 16-bit grayscale (Pillow's
I;16 modes) as round(x / 257), so 0..65535 becomes 0..255; 32-bit integer grayscale (mode I) the same way
when its values lie in 0..65535, the 16-bit range it holds in practice; float grayscale (mode F) as
round(x * 255) when its values lie in [0, 1]. 16-bit colour PNGs Pillow already reduces to 8 bits itself.

Refused, counted and listed (info.json `refused`, `refused_files`):
- images over MAX_PIXELS, before they are decoded: a few KB of PNG can claim gigapixels;
- integer images with values outside 0..65535 and float images with values outside [0, 1] (or NaN): there is
  no agreed white point to scale them by, and clipping would silently flatten them;
- symlinks that lead out of the folder, and second names (symlinks, hard links) of a file already read,
  which could put one image in both train and test. Symlinked sub-folders are not entered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ganforge.errors import ConfigError, GanforgeError

FORMATS = ("PNG", "JPEG", "BMP", "WEBP", "TIFF")  # Pillow's names; the only plugins Image.open may try
MAX_PIXELS = 8192 * 8192  # 67 MP: above any photo a GAN folder needs, below Pillow's own bomb warning


@dataclass
class FolderImages:
    images: np.ndarray                 # uint8 [N, C, R, R]
    labels: np.ndarray                 # int64 [N]
    classes: list[str]
    skipped: list[str] = field(default_factory=list)  # "relative/path: why" of undecodable files
    refused: list[str] = field(default_factory=list)  # "relative/path: why" of files refused on purpose


class _Refused(Exception):
    pass


def _image_suffixes() -> set[str]:
    Image.init()  # registers every plugin, so PIL knows all the extensions
    return {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in FORMATS}


def _files_by_class(root: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """Class sub-folders (sorted) if there are any, else the flat folder as one class named after it."""
    suffixes = _image_suffixes()
    subdirs = sorted(p for p in root.iterdir()
                     if p.is_dir() and not p.is_symlink() and not p.name.startswith("."))
    groups = [(d.name, d) for d in subdirs] if subdirs else [(root.resolve().name or "images", root)]
    files = []
    for label, (_, d) in enumerate(groups):
        # rglob does not descend into symlinked directories; symlinked files are checked in read_folder
        files += [(p, label) for p in sorted(d.rglob("*"))
                  if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith(".")]
    return [name for name, _ in groups], files


def to_8bit(im: Image.Image) -> Image.Image:
    """An 8-bit grayscale ('L') copy of an image deeper than 8 bits (modes I;16*, I, F), else `im` itself.

    Pillow's own convert() clips such images to 0..255 (a 16-bit photo comes out nearly white, a [0, 1] float
    one black), so they are scaled here on a fixed scale, the same for every image of the folder: scaling each
    by its own maximum would brighten dark images and make the dataset's brightness meaningless."""
    if im.mode.startswith("I;16") or im.mode == "I":
        a = np.asarray(im)
        if im.mode == "I":
            # 32-bit integers: Pillow gives this mode to 16-bit data too (some TIFF and PNG variants, older
            # Pillows); wider values have no agreed white point, so they are refused, not guessed at
            lo, hi = int(a.min()), int(a.max())
            if lo < 0 or hi > 65535:
                raise _Refused(f"32-bit integer pixel values from {lo} to {hi}, outside 0..65535 (the range "
                               "read, as 16-bit); save the image with 8 or 16 bits per channel")
        scaled = (a.astype(np.uint32) + 128) // 257  # round(x / 257): 0 -> 0, 65535 -> 255
        return Image.fromarray(scaled.astype(np.uint8))  # 2-D uint8: mode L
    if im.mode == "F":
        a = np.asarray(im, dtype=np.float32)
        if not np.isfinite(a).all():
            raise _Refused("float pixel values that are NaN or infinite, outside [0, 1] (the only float "
                           "range read)")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0 or hi > 1:
            raise _Refused(f"float pixel values from {lo:g} to {hi:g}, outside [0, 1] (the only float range "
                           "read); scale the image to [0, 1] or save it with 8 or 16 bits per channel")
        return Image.fromarray(np.rint(a * 255).astype(np.uint8))
    return im


def load_image(path: Path, resolution: int, channels: int) -> np.ndarray:
    """uint8 [C, R, R]: EXIF-rotated, centre-cropped to square, resized with a Lanczos filter.

    Raises UnidentifiedImageError for anything but FORMATS, _Refused over MAX_PIXELS (before decoding) and
    for pixel values to_8bit cannot scale."""
    with Image.open(path, formats=FORMATS) as im:
        if im.width * im.height > MAX_PIXELS:
            raise _Refused(f"{im.width}x{im.height} pixels, over the limit of {MAX_PIXELS:,}")
        im = ImageOps.exif_transpose(im)
        im = to_8bit(im).convert("L" if channels == 1 else "RGB")
        im = ImageOps.fit(im, (resolution, resolution), method=Image.Resampling.LANCZOS, centering=(0.5, 0.5))
        a = np.asarray(im, dtype=np.uint8)
    return a[None] if channels == 1 else a.transpose(2, 0, 1)  # [H, W, C] -> [C, H, W]


def _second_name(path: Path, real_root: Path, seen: dict[tuple[int, int], str], rel: str) -> str | None:
    """Why `path` must not be read as a file of its own, or None (and then it is recorded in `seen`)."""
    real = path.resolve()
    if not real.is_relative_to(real_root):
        return f"a link to {real}, outside the folder"
    st = real.stat()
    first = seen.setdefault((st.st_dev, st.st_ino), rel)  # inode: catches hard links as well as symlinks
    return None if first == rel else f"the same file as {first}, already read"


def read_folder(root: str | Path, resolution: int, channels: int, progress=None) -> FolderImages:
    """All decodable images under `root`; `progress(done, total)` is called after each file."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"download.folder.path: {root} is not a directory")
    classes, files = _files_by_class(root)
    real_root = root.resolve()
    seen: dict[tuple[int, int], str] = {}
    images, labels, skipped, refused = [], [], [], []
    for i, (path, label) in enumerate(files):
        rel = str(path.relative_to(root))
        try:
            if why := _second_name(path, real_root, seen, rel):
                raise _Refused(why)
            images.append(load_image(path, resolution, channels))
            labels.append(label)
        except _Refused as e:
            refused.append(f"{rel}: {e}")
        except UnidentifiedImageError:
            skipped.append(f"{rel}: not a readable {', '.join(FORMATS)} image")
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            skipped.append(f"{rel}: {e}")
        if progress:
            progress(i + 1, len(files))
    if not images:
        raise GanforgeError(f"no usable images in {root} ({len(files)} image files, {len(skipped)} "
                            f"unreadable, {len(refused)} refused); put images there, flat or one sub-folder "
                            "per class")
    return FolderImages(np.stack(images), np.asarray(labels, dtype=np.int64), classes, skipped, refused)


def split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (train, test) index arrays: a seeded permutation; each side gets at least one image."""
    if n < 2:
        raise GanforgeError(f"a folder dataset needs at least 2 usable images (train and test), found {n}")
    n_test = min(max(1, round(n * test_fraction)), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def class_split(labels: np.ndarray, test_fraction: float, seed: int, groups: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (train, test) index arrays (sorted) with test_fraction of every class on the test side:
    group_split within each class (seeded from `seed`), so a group (`groups`, e.g. merge_copies': exact
    copies) is on one side; each image its own group when None. A class of one group stays train."""
    groups = np.arange(len(labels)) if groups is None else groups
    rng = np.random.default_rng(seed)
    test = [np.zeros(0, np.int64)]
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        class_seed = int(rng.integers(2**63))  # drawn for every class, so one class never shifts another's
        if len(np.unique(groups[idx])) > 1:
            test.append(idx[group_split(groups[idx], test_fraction, class_seed)[1]])
    test_idx = np.sort(np.concatenate(test))
    return np.setdiff1d(np.arange(len(labels)), test_idx), test_idx


def merge_copies(groups: np.ndarray, *images: np.ndarray) -> np.ndarray:
    """`groups` [N] with the groups of any two items whose images (each of `images`: [N, ...]) are byte for
    byte the same merged into one (the smallest id), so that a split by group never puts a copy on each
    side (Animal-MNIST holds 284 pairs of identical images; some emoji are drawn alike)."""
    parent = {g: g for g in np.unique(groups).tolist()}

    def root(g):
        while parent[g] != g:
            g = parent[g]
        return g

    for x in images:
        first: dict[bytes, int] = {}
        for g, im in zip(groups.tolist(), x, strict=True):
            a, b = root(first.setdefault(np.ascontiguousarray(im).tobytes(), g)), root(g)
            parent[max(a, b)] = min(a, b)
    return np.asarray([root(g) for g in groups.tolist()])


def group_split(groups: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (train, test) index arrays that never split a group (the skin tones of one emoji, the
    tiles of one slide region): a seeded permutation of the groups, of which the first go to test, as many
    as bring it nearest test_fraction of the items; each side gets at least one group."""
    ids, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    if len(ids) < 2:
        raise GanforgeError(f"a split by groups needs at least 2 groups (train and test), found {len(ids)}")
    order = np.random.default_rng(seed).permutation(len(ids))
    taken = np.cumsum(counts[order])
    n_test = int(np.clip(np.argmin(np.abs(taken - test_fraction * len(groups))) + 1, 1, len(ids) - 1))
    test = np.isin(inverse, order[:n_test])
    return np.flatnonzero(~test), np.flatnonzero(test)
