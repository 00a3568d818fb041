"""The download stage's work: dataset name + params -> data/<dataset>/{train,test}.npz and info.json.

info.json (see prepared.py for the split format):
  name, kind, classes, shape [C, H, W], counts {split: N}, class_counts {split: [per class]},
  sha256 {split: sha256 of the split's images bytes then labels bytes (int64 little-endian)},
  source (the mirror(s) or folder that served), files {file: {sha256, source}} (downloaded datasets),
  skipped / skipped_files (folder datasets: undecodable images), refused / refused_files (folder datasets:
  images refused on purpose: too many pixels, links out of the folder or to a file already read, pixel
  values outside 0..65535 or, for float images, outside [0, 1]),
  tiles (histology: tiles cut, dropped as background, per split, and regions per split),
  emoji (emoji, emoji-faces: images, whole emoji per split, what was left out).
The photos data set is written in a form of its own (photos.py: one array per photo, the sizes differ).
"""

from __future__ import annotations

import contextlib
from pathlib import Path, PurePosixPath

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from ganforge.config import Download
from ganforge.data import cifar, emoji, folder, photos, stacked, tiles, toy
from ganforge.data.fetch import CachedFile, console, fetch_dataset
from ganforge.data.idx import read_idx_pair
from ganforge.data.mirrors import is_member_set
from ganforge.data.prepared import Split, write_prepared
from ganforge.data.registry import CIFAR10_TEST, CIFAR10_TRAIN, get_dataset
from ganforge.errors import ConfigError


def _idx_splits(files: dict[str, CachedFile]) -> dict[str, Split]:
    def pair(prefix: str) -> Split:
        images, labels = f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"
        return read_idx_pair(files[images].path.read_bytes(), files[labels].path.read_bytes(), images, labels)

    return {"train": pair("train"), "test": pair("t10k")}


def _cifar_splits(files: dict[str, CachedFile], n_classes: int) -> dict[str, Split]:
    def concat(names: tuple[str, ...]) -> Split:
        parts = [cifar.read_batch(files[n].path.read_bytes(), n, n_classes) for n in names]
        return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])

    return {"train": concat(CIFAR10_TRAIN), "test": concat(CIFAR10_TEST)}


@contextlib.contextmanager
def _counting(what: str):
    """A progress bar on the terminal (none in logs); yields the (done, total) callback that moves it."""
    with Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), console=console,
                  transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _folder_splits(cfg: Download, seed: int) -> tuple[dict[str, Split], dict]:
    src = cfg.folder
    if src.path is None:
        raise ConfigError("download.folder.path must name a directory of images when base.dataset is folder")
    with _counting("reading images") as progress:
        imgs = folder.read_folder(src.path, src.resolution, src.channels, progress=progress)
    for done, what, files in (("skipped", "unreadable image", imgs.skipped),
                              ("refused", "image", imgs.refused)):
        if files:
            console.print(f"warning: {done} {len(files)} {what} file(s) in {src.path} (listed in info.json), "
                          f"e.g. {files[0]}")
    train, test = folder.split(len(imgs.images), src.test_fraction, seed)
    splits = {"train": (imgs.images[train], imgs.labels[train]),
              "test": (imgs.images[test], imgs.labels[test])}
    extra = {"classes": imgs.classes, "source": str(Path(src.path).resolve()),
             "skipped": len(imgs.skipped), "skipped_files": imgs.skipped,
             "refused": len(imgs.refused), "refused_files": imgs.refused}
    return splits, extra


def _stacked_splits(cfg: Download, seed: int) -> tuple[dict[str, Split], dict]:
    """Stacked MNIST from the verified MNIST files (fetched, or from the cache, under the name mnist)."""
    files = fetch_dataset("mnist", get_dataset("mnist"), cfg)
    splits = {}
    for s, (x, y) in _idx_splits(files).items():
        images, labels, _ = stacked.stack(x, y, len(x), seed, s)
        splits[s] = (images, labels)
    sources = ", ".join(sorted({f.source for f in files.values()}))
    info = {"classes": list(stacked.CLASSES), "source": f"stacked from mnist ({sources}), base.seed {seed}",
            "files": {f: {"sha256": c.sha256, "source": c.source} for f, c in sorted(files.items())}}
    return splits, info


def _fetched_info(specs_files: list[tuple[tuple[str, ...], dict[str, CachedFile]]]) -> dict:
    """info.json's source and files of fetched datasets: [(the entry's mirrors, its files)]."""
    sources, files = [], {}
    for mirrors, fetched in specs_files:
        # in the registry's mirror order, so a rerun that refetched one file writes the same info.json
        used = {f.source for f in fetched.values()}
        sources += [m for m in mirrors if m in used] + sorted(used - set(mirrors))
        files.update({f: {"sha256": c.sha256, "source": c.source} for f, c in sorted(fetched.items())})
    return {"source": ", ".join(dict.fromkeys(sources)), "files": files}


def _tile_splits(name: str, cfg: Download, seed: int) -> tuple[dict[str, Split], dict]:
    spec = get_dataset(name)
    files = fetch_dataset(name, spec, cfg)
    with _counting("cutting tiles") as progress:
        splits, info = tiles.tile_splits({f: c.path for f, c in files.items()}, cfg, seed, progress)
    return splits, {"classes": list(spec.classes), **info, **_fetched_info([(spec.mirrors, files)])}


def _emoji_splits(name: str, cfg: Download, seed: int) -> tuple[dict[str, Split], dict]:
    spec = get_dataset(name)
    files = fetch_dataset(name, spec, cfg)
    sets = [f for f in files if is_member_set(f)]
    if "emoji.json" not in files or len(sets) != 1:
        raise ConfigError(f"registry entry {name}: an emoji entry needs emoji.json and one image member set")
    with _counting("reading emoji") as progress:
        splits, info = emoji.emoji_splits(files["emoji.json"].path, files[sets[0]].path, sets[0],
                                          spec.classes, cfg, seed, progress)
    return splits, {"classes": list(spec.classes), **info, **_fetched_info([(spec.mirrors, files)])}


def _face_splits(name: str, cfg: Download, seed: int) -> tuple[dict[str, Split], dict]:
    """The face emoji of the emoji entry's drawings (fetched, or from the cache, under the name emoji) and
    of this entry's own."""
    spec, base = get_dataset(name), get_dataset("emoji")
    if "emoji.json" not in base.files:
        raise ConfigError(f"{name} is built from the emoji entry, whose files lack emoji.json")
    base_files = fetch_dataset("emoji", base, cfg)
    files = fetch_dataset(name, spec, cfg)
    # each drawing is a member set img/<style>/...: the Google one from emoji, the Twitter one from here
    packs = {PurePosixPath(f).parts[1]: (c.path, f) for f, c in {**base_files, **files}.items()
             if is_member_set(f) and len(PurePosixPath(f).parts) > 2}
    with _counting("reading emoji") as progress:
        splits, info = emoji.face_splits(base_files["emoji.json"].path, packs, cfg, seed, progress)
    fetched = _fetched_info([(base.mirrors, base_files), (spec.mirrors, files)])
    return splits, {"classes": list(spec.classes), **info, **fetched}


def _write_photos(name: str, cfg: Download, out: str | Path) -> dict:
    """The photos at their native sizes, cropped to multiples of photos.SCALE, split by PHOTOS_TEST."""
    spec = get_dataset(name)
    photos.photo_names(name, list(spec.files))  # a bad entry stops here, before anything is fetched
    files = fetch_dataset(name, spec, cfg)
    with _counting("reading photos") as progress:
        splits, info = photos.photo_splits(name, {f: c.path for f, c in files.items()}, progress)
    info = {"classes": list(spec.classes), **info, **_fetched_info([(spec.mirrors, files)]),
            "name": name, "kind": spec.kind}
    return photos.write_photos(out, splits, info)


def download_dataset(name: str, cfg: Download, out: str | Path, seed: int = 0) -> dict:
    """Fetch (or read) dataset `name`, write the prepared splits to `out` atomically, return info.json.

    An unknown name is a ConfigError (exit 2); nothing is written unless everything succeeded.
    """
    spec = get_dataset(name)
    if spec.kind == "photos":
        return _write_photos(name, cfg, out)
    if spec.kind == "folder":
        splits, info = _folder_splits(cfg, seed)
    elif spec.kind == "toy2d":
        splits, info = toy.toy_splits(name, seed)
    elif spec.kind == "stacked":
        splits, info = _stacked_splits(cfg, seed)
    elif spec.kind == "tiles":
        splits, info = _tile_splits(name, cfg, seed)
    elif spec.kind == "emoji":
        splits, info = _emoji_splits(name, cfg, seed)
    elif spec.kind == "emoji-faces":
        splits, info = _face_splits(name, cfg, seed)
    else:
        files = fetch_dataset(name, spec, cfg)
        splits = _idx_splits(files) if spec.kind == "idx" else _cifar_splits(files, len(spec.classes))
        info = {"classes": list(spec.classes), **_fetched_info([(spec.mirrors, files)])}
    return write_prepared(out, splits, {**info, "name": name, "kind": spec.kind})
