"""TMRL's 19-beam lidar computed from a screenshot, vectorised.

Origin pixel (row 44*h//49, col w//2); beams at 90, 100, ..., 270 degrees (90 = right, 180 = up,
270 = left), walked one pixel at a time from radius 20 px to the image border. A beam's value is
the index (along the beam, so pixel distance - 20) of its first pixel whose B, G and R are all below
55, the black track border. A beam that meets no border reads its last index (TMRL's `np.argmax`
returns 0 there, i.e. "wall right here", which punishes open road; tmrlx says "far").
"""

from __future__ import annotations

import math

import numpy as np

BLACK = 55
MIN_RADIUS = 20
ANGLES = tuple(range(90, 280, 10))


class Lidar:
    """Ray pixels are precomputed once per frame size; a call is one gather and one argmax."""

    def __init__(self, height: int, width: int):
        self.shape = (height, width)
        self.origin = (44 * height // 49, width // 2)
        beams = [self._beam(a) for a in ANGLES]
        self.lengths = np.array([len(r) for r, _ in beams])
        if self.lengths.min() < 1:
            raise ValueError(f"a {width}x{height} frame is too small for the lidar (beams start {MIN_RADIUS} px out)")
        n = int(self.lengths.max())
        self.rows = np.zeros((len(ANGLES), n), np.intp)
        self.cols = np.zeros((len(ANGLES), n), np.intp)
        self.valid = np.zeros((len(ANGLES), n), bool)
        for i, (r, c) in enumerate(beams):
            self.rows[i, : len(r)], self.cols[i, : len(c)], self.valid[i, : len(r)] = r, c, True
        self.flat = self.rows * width + self.cols

    def _beam(self, angle: int) -> tuple[list[int], list[int]]:
        """TMRL's walk: stop when the row reaches 0 or the column reaches either side."""
        r0, c0 = self.origin
        dr, dc = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        rows: list[int] = []
        cols: list[int] = []
        dist = MIN_RADIUS
        while True:
            r, c = int(r0 + dist * dr), int(c0 + dist * dc)
            if r <= 0 or c <= 0 or c >= self.shape[1] - 1:
                return rows, cols
            rows.append(r)
            cols.append(c)
            dist += 1

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """Beam lengths (float32, 19) of a BGR or BGRA frame of the size given at construction."""
        if frame.shape[:2] != self.shape:
            raise ValueError(f"frame of shape {frame.shape[:2]}, the lidar was set up for {self.shape}")
        if frame.ndim == 3 and frame.shape[2] == 4 and frame.flags.c_contiguous:  # BGRA: one 32-bit gather
            v = frame.view(np.uint32).reshape(-1).take(self.flat)
            black: np.ndarray = ((v & 0xFF) < BLACK) & (((v >> 8) & 0xFF) < BLACK) & (((v >> 16) & 0xFF) < BLACK)
        else:
            black = np.asarray((frame[self.rows, self.cols, :3] < BLACK).all(-1))
        black = black & self.valid
        first = black.argmax(1)
        return np.where(black.any(1), first, self.lengths - 1).astype(np.float32)

    def endpoints(self, distances: np.ndarray) -> list[tuple[int, int]]:
        """(col, row) where each beam stops, for drawing."""
        idx = np.clip(distances.astype(int), 0, self.lengths - 1)
        k = np.arange(len(ANGLES))
        return list(zip(self.cols[k, idx].tolist(), self.rows[k, idx].tolist()))
