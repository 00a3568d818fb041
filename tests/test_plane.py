"""GAN-Lab-style pictures of 2-D runs (ganforge.plane): D's surface on a known grid, the points, the GIF."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from ganforge.plane import (
    FAKE_RGB,
    REAL_RGB,
    extent_of,
    gif_bytes,
    plane_grid,
    plane_picture,
    surface,
)


def test_a_D_that_returns_x_gives_a_left_to_right_ramp():
    s = surface(lambda xy: xy[:, 0], extent=2.0, size=4)
    assert s.shape == (4, 4)
    assert np.allclose(s, np.tile([-1.5, -0.5, 0.5, 1.5], (4, 1)))  # pixel centres, every row the same
    y = surface(lambda xy: xy[:, 1], extent=2.0, size=4)
    assert np.allclose(y[:, 0], [1.5, 0.5, -0.5, -1.5])  # row 0 is the top of the plane


def test_the_heat_map_colours_D_from_fake_to_real():
    scores = surface(lambda xy: 10 * xy[:, 0], extent=1.0, size=64)
    picture = plane_picture(None, np.empty((0, 2, 1, 1), np.float32), 1.0, 64, scores)
    assert picture.shape == (64, 64, 3) and picture.dtype == np.uint8
    row = picture[32].astype(int)
    left, middle, right = row[0], row[31:33], row[-1]
    assert right[1] > right[0] and right[1] > right[2]  # green: D says real
    assert left[2] > left[1]  # purple: D says fake
    assert middle.min() > 240  # undecided: white
    assert (picture == picture[:1]).all()  # every row the same: D depends on x only


def test_points_land_on_their_pixels():
    real = np.array([[0.99, 0.99]], np.float32).reshape(1, 2, 1, 1)  # top right
    fake = np.array([[-0.99, -0.99]], np.float32).reshape(1, 2, 1, 1)  # bottom left
    picture = plane_picture(real, fake, 1.0, 32)
    assert (picture[0, 31] == REAL_RGB).all() and (picture[31, 0] == FAKE_RGB).all()
    assert (picture[16, 16] == 255).all()  # no surface: white
    assert extent_of(real * 2) == np.float32(0.99 * 2 * 1.25)


def test_gif_has_every_frame():
    frames = [np.full((8, 8, 3), v, np.uint8) for v in (0, 128, 255)]
    gif = Image.open(io.BytesIO(gif_bytes(frames)))
    assert gif.format == "GIF" and gif.n_frames == 3
    assert plane_grid(1.0, 2).tolist() == [[-0.5, 0.5], [0.5, 0.5], [-0.5, -0.5], [0.5, -0.5]]
