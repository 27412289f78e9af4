"""Headless driver's view: the top-down track map seen through a chase camera, one cv2 call per frame.

The ground plane maps to the screen by a homography, so a frame is `cv2.warpPerspective` of the map
(nearest pixel) plus the sky above the horizon: grey road, black borders, green grass, white finish
line, blue sky, as BGRA like mss/win32 screenshots. Sizes follow the config's window.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from tmrlx.actor.envs.sim.car import CarState
from tmrlx.actor.envs.sim.track import FINISH, OUTSIDE, RES, ROAD, WALL, Track

PALETTE = np.zeros((4, 4), np.uint8)
PALETTE[OUTSIDE] = (70, 140, 80, 255)
PALETTE[ROAD] = (120, 120, 120, 255)
PALETTE[WALL] = (15, 15, 15, 255)
PALETTE[FINISH] = (235, 235, 235, 255)
SKY = (235, 200, 150, 255)
CAM_HEIGHT = 3.0  # m
CAM_BACK = 4.0  # m behind the car
HFOV = math.radians(100.0)
HORIZON = 0.36  # fraction of the height


class Renderer:
    def __init__(self, track: Track, width: int, height: int):
        self.track = track
        self.size = (width, height)
        self.map = PALETTE[track.kind]  # (H, W, 4) BGRA
        self.focal = (width / 2) / math.tan(HFOV / 2)
        self.cu = (width - 1) / 2
        self.horizon = int(round(HORIZON * height))
        self.frame = np.empty((height, width, 4), np.uint8)
        self.frame[: self.horizon + 1] = SKY  # the warp below only ever writes the ground rows
        self.ground = self.frame[self.horizon + 1:]
        self.shift = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, self.horizon + 1.0], [0.0, 0.0, 1.0]])  # ground row -> screen row
        self.border = tuple(int(v) for v in PALETTE[OUTSIDE])

    def homography(self, car: CarState) -> np.ndarray:
        """Screen pixel (u, v, 1) -> map pixel (col, row, 1), homogeneous."""
        fx, fy = math.cos(car.heading), math.sin(car.heading)
        rx, ry = fy, -fx  # the car's right
        cx = car.x - CAM_BACK * fx - self.track.origin[0]
        cy = car.y - CAM_BACK * fy - self.track.origin[1]
        h, f, cu, vh = CAM_HEIGHT, self.focal, self.cu, self.horizon
        return np.array([
            [h * rx / RES, cx / RES, (f * h * fx - h * rx * cu - cx * vh) / RES],
            [h * ry / RES, cy / RES, (f * h * fy - h * ry * cu - cy * vh) / RES],
            [0.0, 1.0, -vh],
        ])

    def render(self, car: CarState) -> np.ndarray:
        """The BGRA frame (a view into a reused buffer: copy it to keep it)."""
        cv2.warpPerspective(self.map, self.homography(car) @ self.shift, (self.size[0], len(self.ground)), dst=self.ground,
                            flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=self.border)
        return self.frame

