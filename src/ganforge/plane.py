"""GAN-Lab-style pictures of a 2-D run (Kahng et al. 2019, "GAN Lab"): D's decision surface as a heat map
over the plane, with the real and the generated points on top; an animated GIF of a run's pictures; and the
latent walks of a 2-D generator (where a great circle in z lands on the plane).

The surface colours sigmoid(D(x)): D's probability that a point is real for the logit losses (for a WGAN
critic or the hinge loss only the ordering means something; the picture shows that ordering all the same).
Green = "real", purple = "fake", white = undecided; real points are drawn dark green, generated ones
magenta. Row 0 of a picture is the top of the plane (y = +extent), column 0 its left (x = -extent).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import numpy as np
import torch

REAL_RGB = np.array([40, 120, 40], np.uint8)
FAKE_RGB = np.array([200, 0, 160], np.uint8)
SURFACE_REAL = np.array([150, 215, 150], np.float32)  # sigmoid(D) = 1
SURFACE_FAKE = np.array([200, 160, 235], np.float32)  # sigmoid(D) = 0
WHITE = np.array([255, 255, 255], np.float32)
PATH_RGB = np.array([150, 150, 150], np.uint8)  # a latent walk's points at every step


def extent_of(points: np.ndarray, margin: float = 1.25) -> float:
    """Half the side of a square around the origin that holds `points` [N, 2, ...] with a margin."""
    return float(np.abs(points.reshape(len(points), -1)).max() * margin) if len(points) else 1.0


def plane_grid(extent: float, size: int) -> np.ndarray:
    """The centres of a size x size picture's pixels as points [size * size, 2], row by row from the top."""
    ticks = (np.arange(size) + 0.5) / size * 2 * extent - extent  # left to right
    x, y = np.meshgrid(ticks, ticks[::-1])  # y from +extent (row 0) down
    return np.stack([x.ravel(), y.ravel()], axis=1).astype(np.float32)


@torch.no_grad()
def surface(D: Callable[[torch.Tensor], torch.Tensor], extent: float, size: int,
            device: torch.device | str = "cpu") -> np.ndarray:
    """D evaluated at every pixel centre: float32 [size, size]. D maps points [N, 2] to scores [N]."""
    xy = torch.from_numpy(plane_grid(extent, size)).to(device)
    return D(xy).float().cpu().numpy().reshape(size, size)


def _dots(picture: np.ndarray, points: np.ndarray, extent: float, rgb: np.ndarray, radius: int) -> None:
    size = picture.shape[0]
    xy = points.reshape(-1, 2)  # [N, 2]
    cols = np.floor((xy[:, 0] + extent) / (2 * extent) * size).astype(np.int64)
    rows = np.floor((extent - xy[:, 1]) / (2 * extent) * size).astype(np.int64)
    for dr in range(-radius, radius + 1):
        for dc in range(-radius, radius + 1):
            r, c = rows + dr, cols + dc
            ok = (r >= 0) & (r < size) & (c >= 0) & (c < size)
            picture[r[ok], c[ok]] = rgb


def plane_picture(real: np.ndarray | None, fake: np.ndarray, extent: float, size: int = 256,
                  scores: np.ndarray | None = None) -> np.ndarray:
    """uint8 [size, size, 3]: the surface `scores` [size, size] (D's raw outputs, from surface()) as a heat
    map, or white without it; then the real points [N, 2, ...] and the generated ones."""
    if scores is None:
        picture = np.broadcast_to(WHITE, (size, size, 3)).copy()
    else:
        p = 1 / (1 + np.exp(-np.clip(scores, -30, 30)))[..., None]  # [size, size, 1]
        # white at 0.5, the "real" colour towards 1, the "fake" colour towards 0
        towards = np.where(p >= 0.5, SURFACE_REAL, SURFACE_FAKE)
        picture = WHITE + (towards - WHITE) * (np.abs(p - 0.5) * 2)
    picture = picture.round().astype(np.uint8)
    if real is not None:
        _dots(picture, real, extent, REAL_RGB, radius=1)
    _dots(picture, fake, extent, FAKE_RGB, radius=1)
    return picture


def gif_bytes(frames: Sequence[np.ndarray], seconds_per_frame: float = 0.2) -> bytes:
    """An animated GIF (looping) of uint8 [H, W, 3] frames."""
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], loop=0,
                   duration=int(seconds_per_frame * 1000))
    return buf.getvalue()


def walk_pictures(frames: np.ndarray, real: np.ndarray, extent: float, size: int = 256
                  ) -> tuple[np.ndarray, bytes]:
    """The latent walks of a 2-D generator, sampling.interpolation's float points [steps, walks, 2, 1, 1],
    over the real points: (a picture of every walk's points, each walk's step t magenta on the grey path;
    an animated GIF whose frame t shows the points of step t on the paths, there and back). A walk that
    jumps between modes instead of gliding along the data shows where G tears z-space apart."""
    steps = frames.shape[0]
    path = frames.reshape(-1, 2)

    def picture(current: np.ndarray) -> np.ndarray:
        pic = np.broadcast_to(WHITE, (size, size, 3)).astype(np.uint8)  # astype copies: writable
        _dots(pic, real, extent, REAL_RGB, radius=0)
        _dots(pic, path, extent, PATH_RGB, radius=1)
        _dots(pic, current, extent, FAKE_RGB, radius=2)
        return pic

    there_and_back = [*range(steps), *range(steps - 2, 0, -1)]
    return picture(path), gif_bytes([picture(frames[t].reshape(-1, 2)) for t in there_and_back], 0.12)
