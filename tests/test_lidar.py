"""Lidar from pixels: synthetic frames with borders at known places give known distances."""

from __future__ import annotations

import numpy as np
import pytest
from tmrlx.actor.envs.lidar import ANGLES, MIN_RADIUS, Lidar

H, W = 128, 256


def grey_frame(channels: int = 4) -> np.ndarray:
    return np.full((H, W, channels), 120, np.uint8)


@pytest.mark.parametrize("channels", [3, 4])
def test_vertical_borders_give_their_distance(channels):
    lidar = Lidar(H, W)
    row, col = lidar.origin
    frame = grey_frame(channels)
    frame[:, col + 50] = (10, 10, 10, 255)[:channels]  # a black border 50 px right of the origin
    frame[:, col - 70] = (0, 0, 0, 255)[:channels]  # and 70 px left
    d = lidar(frame)
    assert d.shape == (19,) and d.dtype == np.float32
    assert d[0] == 50 - MIN_RADIUS  # 90 degrees: straight right
    assert d[-1] == 70 - MIN_RADIUS  # 270 degrees: straight left
    diag = ANGLES.index(140)  # up-right, 50 degrees off the horizontal: meets the column at 50 / sin(140) px
    assert abs(d[diag] - (50 / np.sin(np.radians(140)) - MIN_RADIUS)) <= 1.5


def test_no_border_reads_the_whole_beam_and_grey_or_sky_is_not_a_border():
    lidar = Lidar(H, W)
    frame = grey_frame()
    frame[:40] = (235, 200, 150, 255)  # sky
    frame[60:, :5] = (54, 200, 54, 255)  # only two channels dark: not black
    d = lidar(frame)
    np.testing.assert_array_equal(d, lidar.lengths - 1)
    up = ANGLES.index(180)
    assert d[up] == lidar.origin[0] - MIN_RADIUS - 1  # walks up to row 1


def test_horizontal_border_ahead():
    lidar = Lidar(H, W)
    frame = grey_frame()
    frame[lidar.origin[0] - 60] = 0
    assert lidar(frame)[ANGLES.index(180)] == 60 - MIN_RADIUS


def test_wrong_frame_size_is_refused():
    with pytest.raises(ValueError, match="set up for"):
        Lidar(H, W)(np.zeros((64, 64, 4), np.uint8))
