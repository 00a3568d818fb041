"""The download stage's work: dataset name + params -> data/<dataset>/{train,test}.npz and info.json.

info.json (see prepared.py for the split format):
  name, kind, classes, shape [C, H, W], counts {split: N}, class_counts {split: [per class]},
  sha256 {split: sha256 of the split's images bytes then labels bytes (int64 little-endian)},
  source (the mirror(s) or folder that served), files {file: {sha256, source}} (downloaded datasets),
  skipped / skipped_files (folder datasets: undecodable images), refused / refused_files (folder datasets:
  images refused on purpose: too many pixels, links out of the folder or to a file already read, pixel
  values outside 0..65535 or, for float images, outside [0, 1]).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from ganforge.config import Download
from ganforge.data import cifar, folder, stacked, toy
from ganforge.data.fetch import CachedFile, console, fetch_dataset
from ganforge.data.idx import read_idx_pair
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


def _folder_splits(cfg: Download, seed: int) -> tuple[dict[str, Split], dict]:
    src = cfg.folder
    if src.path is None:
        raise ConfigError("download.folder.path must name a directory of images when base.dataset is folder")
    with Progress(TextColumn("reading images"), BarColumn(), MofNCompleteColumn(), console=console,
                  transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("", total=None)
        imgs = folder.read_folder(src.path, src.resolution, src.channels,
                                  progress=lambda done, total: bar.update(task, completed=done, total=total))
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


def download_dataset(name: str, cfg: Download, out: str | Path, seed: int = 0) -> dict:
    """Fetch (or read) dataset `name`, write the prepared splits to `out` atomically, return info.json.

    An unknown name is a ConfigError (exit 2); nothing is written unless everything succeeded.
    """
    spec = get_dataset(name)
    if spec.kind == "folder":
        splits, info = _folder_splits(cfg, seed)
    elif spec.kind == "toy2d":
        splits, info = toy.toy_splits(name, seed)
    elif spec.kind == "stacked":
        splits, info = _stacked_splits(cfg, seed)
    else:
        files = fetch_dataset(name, spec, cfg)
        splits = _idx_splits(files) if spec.kind == "idx" else _cifar_splits(files, len(spec.classes))
        # in the registry's mirror order, so a rerun that refetched one file writes the same info.json
        used = {f.source for f in files.values()}
        sources = [m for m in spec.mirrors if m in used] + sorted(used - set(spec.mirrors))
        info = {"classes": list(spec.classes), "source": ", ".join(sources),
                "files": {f: {"sha256": c.sha256, "source": c.source} for f, c in sorted(files.items())}}
    return write_prepared(out, splits, {**info, "name": name, "kind": spec.kind})
