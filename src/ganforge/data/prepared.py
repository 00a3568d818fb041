"""The prepared dataset format: the contract between the download stage and every later stage.

data/<dataset>/
  train.npz, test.npz   images: uint8 [N, C, H, W], labels: int64 [N]; toy 2-D data sets (data/toy.py):
                        images float32 [N, 2, 1, 1], the points' coordinates, labels = their modes
  info.json             name, classes, shape [C, H, W], counts, content hashes, source
Written by the download stage (real data) and the synthesize stage (a generator's labelled images), both
through write_prepared, and read by everything else through load_split / load_info.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ganforge.errors import ConfigError, GanforgeError
from ganforge.io import atomic_dir, atomic_save_npz, atomic_write_json, read_json

SPLITS = ("train", "test")
Split = tuple[np.ndarray, np.ndarray]  # images uint8 [N, C, H, W], labels int64 [N]


def split_sha256(images: np.ndarray, labels: np.ndarray) -> str:
    h = hashlib.sha256(np.ascontiguousarray(images).tobytes())
    h.update(labels.astype("<i8").tobytes())
    return h.hexdigest()


def write_prepared(out: str | Path, splits: dict[str, Split], info: dict) -> dict:
    """Write {split: (images, labels)} and info.json to `out` atomically (all or nothing); returns info.json.

    info: at least name and classes; shape, counts, class_counts and sha256 are added from the splits."""
    n_classes = len(info["classes"])
    info = {**info,
            "shape": list(splits["train"][0].shape[1:]),
            "counts": {s: len(y) for s, (_, y) in splits.items()},
            "class_counts": {s: np.bincount(y, minlength=n_classes).tolist() for s, (_, y) in splits.items()},
            "sha256": {s: split_sha256(x, y) for s, (x, y) in splits.items()}}
    with atomic_dir(out) as tmp:
        for s, (x, y) in splits.items():
            atomic_save_npz(tmp / f"{s}.npz", images=x, labels=y)
        atomic_write_json(tmp / "info.json", info)
    return info


def load_split(data_dir: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, C, H, W], labels int64 [N]) of one split."""
    path = Path(data_dir) / f"{split}.npz"
    if not path.exists():
        raise GanforgeError(f"prepared data not found: {path} (run the download stage: dvc repro download)")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "x_a" in z.files:
                raise ConfigError(f"{path} holds a translation data set (two domains, data/translation.py), "
                                  "not one set of images: read it with translation.load_domains")
            images, labels = z["images"], z["labels"]
    except (OSError, ValueError, KeyError) as e:
        raise GanforgeError(f"{path} is not a prepared ganforge split: {e}") from None
    if not (is_images(images) or is_points(images)) or labels.shape != (len(images),):
        raise GanforgeError(f"{path}: expected uint8 images [N,C,H,W] (or float32 points [N,2,1,1]) and "
                            f"labels [N], got {images.dtype} {images.shape} and {labels.shape}")
    return images, labels.astype(np.int64, copy=False)


def is_images(x: np.ndarray) -> bool:
    """uint8 [N, C, H, W]: images."""
    return x.dtype == np.uint8 and x.ndim == 4


def is_points(x: np.ndarray) -> bool:
    """float32 [N, 2, 1, 1]: 2-D points (the toy data sets, and what an MLP generator draws)."""
    return x.dtype == np.float32 and x.ndim == 4 and x.shape[1:] == (2, 1, 1)


def load_info(data_dir: str | Path, dataset: str | None = None) -> dict:
    """info.json of a prepared directory; with `dataset`, also check that the directory holds that dataset
    (base.dataset), so a stage never trains or judges one dataset under another's name."""
    info = read_json(Path(data_dir) / "info.json", "run the download stage (dvc repro download)")
    if dataset is not None and info.get("name") != dataset:
        raise ConfigError(f"base.dataset is {dataset!r} but {data_dir} holds {info.get('name')!r}: run the "
                          f"download stage for {dataset!r} (dvc repro download) or pass its --data directory")
    return info


def content_hash(info: dict) -> str:
    """One short id for the dataset's content (tags MLflow runs; changes iff any split changes)."""
    import hashlib

    hashes = json.dumps(info.get("sha256", {}), sort_keys=True)
    return hashlib.sha256(hashes.encode()).hexdigest()[:16]
