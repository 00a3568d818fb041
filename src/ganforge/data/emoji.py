"""Emoji images (the emoji and emoji-faces datasets), from the emoji-datasource npm packages.

The packages' emoji.json lists one entry per emoji: its `image` (a file name), `category`, `subcategory`,
`sort_order`, and for the emoji that take a skin tone, `skin_variations`: five more images of the same
emoji, one per tone. The images come as member sets (mirrors.pack_members), 64-px PNGs, nearly all RGBA
(a few LA or palette): each is converted to RGBA and laid on white, giving RGB, then resized when
download.resolution asks for another size.

emoji: every image, labelled by its entry's category; "Component" (the bare skin-tone swatches and hair
parts, not emoji of their own) is left out. emoji-faces: the entries of FACE_SUBCATEGORIES, unlabelled, in
the Google and the Twitter drawing. Both split by entry (folder.group_split): the skin tones of one emoji,
and its two drawings, are near-copies of each other and always land on the same side.

pair_splits (the emoji-google-twitter translation set): the images (Component left out) that every drawing
has under the same file name, as pairs: row i of each drawing is the same emoji, in both splits; split by
entry as above, so the skin tones of one emoji are all train or all test, and so are emoji drawn alike
(folder.merge_copies: some flags share one drawing).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ganforge.config import Download
from ganforge.data.folder import MAX_PIXELS, group_split, merge_copies
from ganforge.data.mirrors import MirrorError, unpack_members
from ganforge.data.prepared import Split
from ganforge.errors import GanforgeError

Progress = Callable[[int, int], None] | None  # (done, total), after each image

NOT_EMOJI = ("Component",)

# The faces, by emoji.json's subcategories: every face-* subcategory of Smileys & Emotion and its cat and
# monkey faces (the hearts and the "emotion" symbols, speech bubbles and the like, have none); and of People
# & Body the four whose images are a head and shoulders (people, gestures, roles, fantasy figures). Its
# whole-body figures (activity, sport, resting), families and couples, silhouettes, hands and body parts are
# left out.
FACE_SUBCATEGORIES = {
    "Smileys & Emotion": ("face-smiling", "face-affection", "face-tongue", "face-hand",
                          "face-neutral-skeptical", "face-sleepy", "face-unwell", "face-hat", "face-glasses",
                          "face-concerned", "face-negative", "face-costume", "cat-face", "monkey-face"),
    "People & Body": ("person", "person-gesture", "person-role", "person-fantasy"),
}


@dataclass(frozen=True)
class Entry:
    category: str
    subcategory: str
    images: tuple[str, ...]  # the emoji's image, then its skin-tone variants


def catalogue(path: Path) -> list[Entry]:
    """emoji.json's entries in its sort order; a file of another shape is a GanforgeError."""
    try:
        raw = json.loads(path.read_bytes())
        entries = []
        for e in sorted(raw, key=lambda e: e["sort_order"]):
            tones = e.get("skin_variations") or {}
            entries.append(Entry(str(e["category"]), str(e["subcategory"]),
                                 (str(e["image"]), *(str(tones[k]["image"]) for k in sorted(tones)))))
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise GanforgeError(f"emoji.json: not an emoji-datasource catalogue ({type(e).__name__}: {e})") \
            from None
    return entries


def categories(entries: list[Entry]) -> list[str]:
    """The categories in order of first appearance, less NOT_EMOJI."""
    return [c for c in dict.fromkeys(e.category for e in entries) if c not in NOT_EMOJI]


def _on_white(data: bytes, side: int | None) -> np.ndarray:
    """uint8 [3, S, S]: a PNG laid on white (its alpha respected), resized to `side` unless None."""
    with Image.open(io.BytesIO(data), formats=("PNG",)) as im:
        if im.width * im.height > MAX_PIXELS:
            raise ValueError(f"{im.width}x{im.height} pixels, over the limit of {MAX_PIXELS:,}")
        rgba = im.convert("RGBA")  # LA and palette images too (a palette's transparency included)
    rgb = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    if side is not None and rgb.size != (side, side):
        rgb = ImageOps.fit(rgb, (side, side), method=Image.Resampling.LANCZOS)
    return np.asarray(rgb).transpose(2, 0, 1)


def _decoded(name: str, data: bytes, side: int | None, skipped: list[str]) -> np.ndarray | None:
    """_on_white's image, or None with `name` and why appended to `skipped` when the PNG does not decode."""
    try:
        return _on_white(data, side)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        skipped.append(f"{name}: {e}")
        return None


def _images_by_name(pack: Path, file: str) -> dict[str, bytes]:
    """{image file name: PNG bytes} of a member set's pack."""
    try:
        members = unpack_members(pack.read_bytes(), file)
    except MirrorError as e:
        raise GanforgeError(str(e)) from None
    return {PurePosixPath(name).name: data for name, data in members.items()}


def _build(items: list[tuple[str, bytes, int, int]], cfg: Download, seed: int, progress,
           info: dict) -> dict[str, Split]:
    """items: (name, PNG bytes, label, group) -> the splits; info gets the undecodable images and the
    number of whole emoji on each side."""
    images, labels, groups, skipped = [], [], [], []
    side = cfg.resolution
    for i, (name, data, label, group) in enumerate(items):
        if (x := _decoded(name, data, side, skipped)) is not None:
            side = side or x.shape[1]  # native: the first image's size, every other one fitted to it
            images.append(x)
            labels.append(label)
            groups.append(group)
        if progress:
            progress(i + 1, len(items))
    info.update(skipped=len(skipped), skipped_files=skipped)
    if len(images) < 2:
        raise GanforgeError(f"only {len(images)} usable emoji images ({len(skipped)} undecodable)")
    x, y, g = np.stack(images), np.asarray(labels, np.int64), np.asarray(groups)
    train, test = group_split(g, cfg.test_fraction, seed)
    info["groups"] = {"train": len(np.unique(g[train])), "test": len(np.unique(g[test]))}  # whole emoji
    return {"train": (x[train], y[train]), "test": (x[test], y[test])}


def _missing(entries: list[Entry], names: dict[str, bytes]) -> list[str]:
    return [im for e in entries for im in e.images if im not in names]


def emoji_splits(catalogue_path: Path, pack: Path, pack_file: str, classes: tuple[str, ...], cfg: Download,
                 seed: int, progress: Progress = None) -> tuple[dict[str, Split], dict]:
    """The emoji dataset: every image of the pack labelled by its category (`classes`, the registry's)."""
    entries = catalogue(catalogue_path)
    found = categories(entries)
    if found != list(classes):
        raise GanforgeError(f"emoji.json's categories {found} are not the registry's classes {list(classes)}")
    names = _images_by_name(pack, pack_file)
    items, dropped = [], {}
    for group, e in enumerate(entries):
        if e.category not in classes:
            dropped[e.category] = dropped.get(e.category, 0) + len(e.images)
            continue
        items += [(im, names[im], classes.index(e.category), group) for im in e.images if im in names]
    listed = {im for e in entries for im in e.images}
    info = {"images": len(items), "dropped": dropped, "missing": _missing(entries, names),
            "unlisted": len(set(names) - listed)}
    return _build(items, cfg, seed, progress, info), {"emoji": info}


def face_splits(catalogue_path: Path, packs: dict[str, tuple[Path, str]], cfg: Download, seed: int,
                progress: Progress = None) -> tuple[dict[str, Split], dict]:
    """The emoji-faces dataset: the FACE_SUBCATEGORIES entries in every drawing of `packs` ({style: (pack
    path, its registry file)}), one class; an emoji's drawings and tones share its group."""
    entries = catalogue(catalogue_path)
    present = {(e.category, e.subcategory) for e in entries}
    wanted = {(c, s) for c, subs in FACE_SUBCATEGORIES.items() for s in subs}
    if absent := sorted(wanted - present):
        raise GanforgeError(f"emoji.json has no subcategory {absent[0][1]!r} in {absent[0][0]!r}: "
                            "emoji.FACE_SUBCATEGORIES needs updating for this emoji.json")
    faces = [(group, e) for group, e in enumerate(entries) if (e.category, e.subcategory) in wanted]
    items, styles, missing = [], {}, []
    for style, (pack, file) in sorted(packs.items()):
        names = _images_by_name(pack, file)
        mine = [(f"{style}/{im}", names[im], 0, group)
                for group, e in faces for im in e.images if im in names]
        styles[style] = len(mine)
        missing += [f"{style}/{im}" for im in _missing([e for _, e in faces], names)]
        items += mine
    per_sub = {f"{c}/{s}": sum(len(e.images) for _, e in faces if (e.category, e.subcategory) == (c, s))
               for c, s in sorted(wanted)}
    info = {"images": len(items), "styles": styles, "face_emoji": len(faces), "subcategories": per_sub,
            "missing": missing}
    return _build(items, cfg, seed, progress, info), {"emoji": info}


Pairs = dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]  # {split: {drawing: (images, file names)}}


def pair_splits(catalogue_path: Path, packs: dict[str, tuple[Path, str]], cfg: Download, seed: int,
                progress: Progress = None) -> tuple[Pairs, dict]:
    """{split: {drawing: (uint8 [N, 3, S, S], file names [N])}} of the drawings `packs` ({drawing: (pack
    path, its registry file)}, in order), row i of every drawing the same image file; and info.json's
    "emoji": pairs, groups per split (an emoji with its tones, merged with any drawn alike), each
    drawing's missing images, the undecodable."""
    entries = catalogue(catalogue_path)
    names = {d: _images_by_name(pack, file) for d, (pack, file) in packs.items()}
    listed = [(group, im) for group, e in enumerate(entries) if e.category not in NOT_EMOJI
              for im in e.images]
    common = [(group, im) for group, im in listed if all(im in n for n in names.values())]
    images: dict[str, list[np.ndarray]] = {d: [] for d in packs}
    kept, groups, skipped = [], [], []
    side = cfg.resolution
    for i, (group, im) in enumerate(common):
        pair = {}
        for d in packs:  # one undecodable drawing drops the pair
            if (x := _decoded(f"{d}/{im}", names[d][im], side, skipped)) is None:
                break
            side = side or x.shape[1]  # native: the first image's size, every other one fitted to it
            pair[d] = x
        else:
            for d, x in pair.items():
                images[d].append(x)
            kept.append(im)
            groups.append(group)
        if progress:
            progress(i + 1, len(common))
    if len(kept) < 2:
        raise GanforgeError(f"only {len(kept)} emoji drawn by all of {', '.join(packs)} ({len(skipped)} "
                            "undecodable)")
    x = {d: np.stack(v) for d, v in images.items()}
    g, file_names = merge_copies(np.asarray(groups), *x.values()), np.asarray(kept, dtype=str)
    train, test = group_split(g, cfg.test_fraction, seed)
    splits = {s: {d: (x[d][idx], file_names[idx]) for d in packs}
              for s, idx in (("train", train), ("test", test))}
    info = {"pairs": len(kept), "listed": len(listed),
            "groups": {"train": len(np.unique(g[train])), "test": len(np.unique(g[test]))},
            "missing": {d: [im for _, im in listed if im not in n] for d, n in names.items()},
            "unlisted": {d: len(set(n) - {im for e in entries for im in e.images}) for d, n in names.items()},
            "skipped": len(skipped), "skipped_files": skipped}
    return splits, {"emoji": info}
