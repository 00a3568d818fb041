"""The download stage's work: dataset name + params -> data/<dataset>/{train,test}.npz and info.json.

info.json (see prepared.py for the split format):
  name, kind, classes, shape [C, H, W], counts {split: N}, class_counts {split: [per class]},
  sha256 {split: sha256 of the split's images bytes then labels bytes (int64 little-endian)},
  source (the mirror(s) or folder that served), files {file: {sha256, source}} (downloaded datasets),
  skipped / skipped_files (folder datasets: undecodable images), refused / refused_files (folder datasets:
  images refused on purpose: too many pixels, links out of the folder or to a file already read, pixel
  values outside 0..65535 or, for float images, outside [0, 1]),
  tiles (histology: tiles cut, dropped as background, per split, and regions per split),
  emoji (emoji, emoji-faces: images, whole emoji per split, what was left out),
  split (optdigits, animal-mnist: how the test split was drawn).
The photos data set is written in a form of its own (photos.py: one array per photo, the sizes differ), and
so are the translation sets (translation.py: two domains).
"""

from __future__ import annotations

import contextlib
from pathlib import Path, PurePosixPath

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from ganforge.config import Download
from ganforge.data import animal, cifar, emoji, folder, optdigits, photos, stacked, tiles, toy
from ganforge.data.fetch import CachedFile, console, fetch_dataset
from ganforge.data.idx import read_idx_pair
from ganforge.data.mirrors import is_member_set
from ganforge.data.prepared import Split, write_prepared
from ganforge.data.registry import CIFAR10_TEST, CIFAR10_TRAIN, DatasetSpec, get_dataset, registry
from ganforge.data.translation import LICENCES, NO_LICENCE, Domain, write_translation
from ganforge.errors import ConfigError, GanforgeError
from ganforge.judges import domain_judges

Named = tuple[np.ndarray, np.ndarray, np.ndarray]  # images uint8 [N, C, H, W], labels int64 [N], names [N]


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


def _row_names(prefix: str, n: int) -> np.ndarray:
    return np.asarray([f"{prefix}-{i:05d}" for i in range(n)], dtype=str)


def _named_splits(name: str, cfg: Download, seed: int
                  ) -> tuple[dict[str, Named], str, dict[str, CachedFile]]:
    """{split: (images, labels, names)} of a labelled entry (idx, optdigits, animal-mnist), every image
    named by its row in its source file; how the split was drawn; the files read."""
    spec = get_dataset(name)
    files = fetch_dataset(name, spec, cfg)
    if spec.kind == "idx":
        splits = {s: (x, y, _row_names(part, len(x)))
                  for (s, (x, y)), part in zip(_idx_splits(files).items(), ("train", "t10k"), strict=True)}
        how = "the source's own train and t10k files"
    elif spec.kind in ("optdigits", "animal-mnist"):
        data = [(f, files[f].path.read_bytes()) for f in spec.files]  # the registry's order: images first
        if spec.kind == "optdigits":
            x, y = optdigits.read_digits(data[0][1], data[0][0])
        else:
            (images, x_bytes), (labels, y_bytes) = data
            x, y = animal.read_animals(x_bytes, y_bytes, images, labels)
        if len(spec.classes) <= int(y.max()):
            raise GanforgeError(f"{name}: label {int(y.max())}, but {len(spec.classes)} classes registered")
        copies = folder.merge_copies(np.arange(len(x)), x)
        train, test = folder.class_split(y, cfg.test_fraction, seed, copies)
        names = _row_names("row", len(x))
        splits = {s: (x[i], y[i], names[i]) for s, i in (("train", train), ("test", test))}
        how = (f"download.test_fraction {cfg.test_fraction} of every class, seeded by base.seed {seed}, "
               f"identical images on one side ({len(x) - len(np.unique(copies))} copies; folder.class_split)")
    else:
        raise AssertionError(f"{name}: {spec.kind} is not in LABELLED_KINDS")  # _domain_entries checked
    return splits, how, files


# the kinds of entry a translation domain can be drawn from: both domains of one family
EMOJI_KINDS, LABELLED_KINDS = ("emoji", "emoji-faces"), ("idx", "optdigits", "animal-mnist")


def _domain_entries(name: str, spec: DatasetSpec) -> list[DatasetSpec]:
    """The entries of a translation set's domains; a ConfigError (exit 2) before anything is fetched unless
    both are of one family (EMOJI_KINDS, LABELLED_KINDS) and fit it."""
    known = registry()
    for d in spec.domains:
        if d.entry not in known or known[d.entry].kind not in (*EMOJI_KINDS, *LABELLED_KINDS):
            raise ConfigError(f"registry entry {name}: domain {d.name}'s entry {d.entry!r} is not a "
                              f"registered data set of kind {', '.join((*EMOJI_KINDS, *LABELLED_KINDS))}")
        if unknown := [c for c in d.classes if c not in known[d.entry].classes]:
            raise ConfigError(f"registry entry {name}: domain {d.name} asks for class {unknown[0]!r}, not "
                              f"one of {d.entry}'s ({', '.join(known[d.entry].classes)})")
    sources = [known[d.entry] for d in spec.domains]
    kinds = {s.kind for s in sources}
    if not (kinds <= set(EMOJI_KINDS) or kinds <= set(LABELLED_KINDS)):
        raise ConfigError(f"registry entry {name}: its domains are {' and '.join(sorted(kinds))} entries; "
                          f"both must be emoji ({', '.join(EMOJI_KINDS)}) or labelled "
                          f"({', '.join(LABELLED_KINDS)})")
    if kinds <= set(EMOJI_KINDS) and (
            not any("emoji.json" in s.files for s in sources) or any(d.classes for d in spec.domains)
            or any(sum(map(is_member_set, s.files)) != 1 for s in sources)):
        raise ConfigError(f"registry entry {name}: emoji domains need emoji.json in one of their entries, "
                          "one image member set in each, and no classes")
    if kinds <= set(LABELLED_KINDS) and len({s.classes for s in sources}) != 1:
        raise ConfigError(f"registry entry {name}: its domains' entries have different classes; their labels "
                          "must index one class list")
    return sources


def _emoji_domains(name: str, spec: DatasetSpec, cfg: Download, seed: int
                   ) -> tuple[dict[str, tuple[Domain, Domain]], dict]:
    """Both domains from emoji entries: the emoji both drawings have, paired, split by emoji."""
    fetched = {d.entry: fetch_dataset(d.entry, get_dataset(d.entry), cfg) for d in spec.domains}
    catalogue = next(f["emoji.json"].path for f in fetched.values() if "emoji.json" in f)
    sets = {d.name: next((c.path, f) for f, c in fetched[d.entry].items() if is_member_set(f))
            for d in spec.domains}
    with _counting("reading emoji") as progress:
        pairs, info = emoji.pair_splits(catalogue, sets, cfg, seed, progress)
    splits = {s: tuple(Domain(d, x, None, n) for d, (x, n) in by_domain.items())
              for s, by_domain in pairs.items()}
    how = (f"by emoji (its skin tones, and emoji drawn alike, on one side), download.test_fraction "
           f"{cfg.test_fraction}, base.seed {seed} (folder.group_split)")
    fetched_info = _fetched_info([(get_dataset(e).mirrors, f) for e, f in fetched.items()])
    return splits, {"classes": [], **info, "split": {d.name: how for d in spec.domains}, **fetched_info}


def _labelled_domains(name: str, spec: DatasetSpec, sources: list[DatasetSpec], cfg: Download, seed: int
                      ) -> tuple[dict[str, tuple[Domain, Domain]], dict]:
    """Each domain the images of its entry's classes (all, or DomainSpec.classes), in the entry's split."""
    classes = sources[0].classes  # the same for both (_domain_entries)
    read = {e: _named_splits(e, cfg, seed) for e in dict.fromkeys(d.entry for d in spec.domains)}
    splits: dict[str, list[Domain]] = {s: [] for s in ("train", "test")}
    for d in spec.domains:
        keep = [classes.index(c) for c in d.classes] or list(range(len(classes)))
        for s, (x, y, names) in read[d.entry][0].items():
            rows = np.isin(y, keep)
            if not rows.any():
                raise GanforgeError(f"{name}: domain {d.name} has no {s} images ({d.entry}, classes "
                                    f"{', '.join(classes[k] for k in keep)})")
            splits[s].append(Domain(d.name, x[rows], y[rows], names[rows]))
    info = {"classes": list(classes), "split": {d.name: read[d.entry][1] for d in spec.domains},
            **_fetched_info([(get_dataset(e).mirrors, files) for e, (_, _, files) in read.items()])}
    return {s: (a, b) for s, (a, b) in splits.items()}, info


def _write_translation(name: str, cfg: Download, out: str | Path, seed: int) -> dict:
    spec = get_dataset(name)
    sources = _domain_entries(name, spec)  # a bad entry stops here, before anything is fetched
    if sources[0].kind in EMOJI_KINDS:
        splits, info = _emoji_domains(name, spec, cfg, seed)
    else:
        splits, info = _labelled_domains(name, spec, sources, cfg, seed)
    judges = domain_judges(name)
    info = {"name": name, "kind": spec.kind, **info,
            "judges": {d: {"judge": j.name, "trained_on": f"{on} (train split)" if on else
                           f"the {d} domain's train split"} for d, (j, on) in judges.items()},
            "licences": {d.name: LICENCES.get(d.entry, NO_LICENCE) for d in spec.domains},
            "sources": {d.name: {"entry": d.entry, "classes": list(d.classes) or "all"}
                        for d in spec.domains}}
    return write_translation(out, splits, info)


def download_dataset(name: str, cfg: Download, out: str | Path, seed: int = 0) -> dict:
    """Fetch (or read) dataset `name`, write the prepared splits to `out` atomically, return info.json.

    An unknown name is a ConfigError (exit 2); nothing is written unless everything succeeded.
    """
    spec = get_dataset(name)
    if spec.kind == "photos":
        return _write_photos(name, cfg, out)
    if spec.kind == "translation":
        return _write_translation(name, cfg, out, seed)
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
    elif spec.kind in ("optdigits", "animal-mnist"):
        named, how, files = _named_splits(name, cfg, seed)
        splits = {s: (x, y) for s, (x, y, _) in named.items()}
        info = {"classes": list(spec.classes), "split": how, **_fetched_info([(spec.mirrors, files)])}
    else:
        files = fetch_dataset(name, spec, cfg)
        splits = _idx_splits(files) if spec.kind == "idx" else _cifar_splits(files, len(spec.classes))
        info = {"classes": list(spec.classes), **_fetched_info([(spec.mirrors, files)])}
    return write_prepared(out, splits, {**info, "name": name, "kind": spec.kind})
