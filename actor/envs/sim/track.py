"""Simulator tracks: a centreline of straight and arc segments, a road of constant width between walls.

A track ships as a small JSON file under `actor/envs/tracks/` (`{"width", "wall", "segments": [["straight", m],
["arc", radius, degrees (+ left, - right)]]}`) with its recorded trajectory next to it (`<name>.npy`). The
track is rasterised once into a top-down map (road, walls, finish line) that the renderer samples and the
physics queries for wall clearance.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

TRACKS_DIR = Path(__file__).resolve().parents[1] / "tracks"
STEP = 0.1  # m between centreline points
RES = 0.25  # m per map pixel
BEFORE_START = 8.0  # m of road behind the start line (closed by a wall)
AFTER_FINISH = 30.0  # m of run-off road after the finish line
MARGIN = 25.0  # m of grass around the walls

OUTSIDE, ROAD, WALL, FINISH = 0, 1, 2, 3


def track_names() -> list[str]:
    return sorted(p.stem for p in TRACKS_DIR.glob("*.json"))


def trajectory_path(name: str) -> Path:
    """The shipped recorded trajectory of a track (what `record-reward` writes for it)."""
    return TRACKS_DIR / f"{name}.npy"


def centreline(segments: list, start: tuple[float, float] = (0.0, 0.0), heading: float = math.pi / 2):
    """Points every STEP m along the segments, and the heading (rad) at each point."""
    pieces, heads = [], []
    x, y, h = start[0], start[1], heading
    for seg in segments:
        kind = seg[0]
        if kind == "straight":
            s = np.arange(0.0, float(seg[1]), STEP)
            pieces.append(np.stack([x + s * math.cos(h), y + s * math.sin(h)], 1))
            heads.append(np.full(len(s), h))
            x, y = x + seg[1] * math.cos(h), y + seg[1] * math.sin(h)
        elif kind == "arc":
            radius, angle = float(seg[1]), math.radians(float(seg[2]))
            side = 1.0 if angle > 0 else -1.0
            cx, cy = x - side * radius * math.sin(h), y + side * radius * math.cos(h)
            a = np.arange(0.0, abs(angle) * radius, STEP) / radius * side
            hs = h + a
            pieces.append(np.stack([cx + side * radius * np.sin(hs), cy - side * radius * np.cos(hs)], 1))
            heads.append(hs)
            h = h + angle
            x, y = cx + side * radius * math.sin(h), cy - side * radius * math.cos(h)
        else:
            raise ValueError(f"unknown track segment {seg!r}: expected ['straight', m] or ['arc', radius, degrees]")
    pieces.append(np.array([[x, y]]))
    heads.append(np.array([h]))
    return np.concatenate(pieces), np.concatenate(heads)


@dataclass(frozen=True)
class Track:
    """Geometry plus the rasterised map; `centre[0]` is the start line, `centre[-1]` the finish line."""

    name: str
    width: float
    centre: np.ndarray  # (N, 2) float64, every STEP m
    heading: np.ndarray  # (N,) rad
    origin: np.ndarray  # world (x, y) of map pixel (0, 0)
    kind: np.ndarray  # (H, W) uint8: OUTSIDE, ROAD, WALL, FINISH
    clearance: np.ndarray  # (H, W) float32: metres to the nearest wall
    normal: np.ndarray  # (H, W, 2) float32: unit vector pointing away from the nearest wall
    centre_x: np.ndarray  # contiguous copies of centre[:, 0] and centre[:, 1] for fast projection
    centre_y: np.ndarray

    @property
    def length(self) -> float:
        return (len(self.centre) - 1) * STEP

    def to_pixel(self, x: float, y: float) -> tuple[int, int]:
        """Map (row, col) of a world point, clipped to the map."""
        col = int((x - self.origin[0]) / RES)
        row = int((y - self.origin[1]) / RES)
        h, w = self.kind.shape
        return min(max(row, 0), h - 1), min(max(col, 0), w - 1)

    def project(self, x: float, y: float, hint: int, back: int = 200, ahead: int = 400) -> int:
        """Index of the centreline point nearest to (x, y), searched around `hint` (vectorised)."""
        lo, hi = max(hint - back, 0), min(hint + ahead, len(self.centre))
        dx, dy = self.centre_x[lo:hi] - x, self.centre_y[lo:hi] - y
        return lo + int(np.argmin(dx * dx + dy * dy))


def build(spec: dict) -> Track:
    """Rasterise a track description (see the module docstring)."""
    width, wall = float(spec["width"]), float(spec.get("wall", 1.0))
    centre, heading = centreline(spec["segments"])
    h0, h1 = heading[0], heading[-1]
    back = centre[0] - BEFORE_START * np.array([math.cos(h0), math.sin(h0)])
    run_off = centre[-1] + AFTER_FINISH * np.array([math.cos(h1), math.sin(h1)])
    path = np.concatenate([[back], centre, [run_off]])
    pad = width / 2 + wall + MARGIN
    origin = path.min(0) - pad
    size = np.ceil((path.max(0) + pad - origin) / RES).astype(int)
    px = np.round((path - origin) / RES * 16).astype(np.int32).reshape(-1, 1, 2)  # 4 fractional bits

    def band(thickness_m: float) -> np.ndarray:
        m = np.zeros((size[1], size[0]), np.uint8)
        cv2.polylines(m, [px], False, 1, thickness=max(int(round(thickness_m / RES)), 1), lineType=cv2.LINE_8, shift=4)
        return m

    road = band(width)
    kind = np.where(band(width + 2 * wall) > 0, WALL, OUTSIDE).astype(np.uint8)
    kind[road > 0] = ROAD
    normal_h = np.array([-math.sin(h1), math.cos(h1)])
    ends = [(centre[-1] + s * normal_h * width / 2 - origin) / RES for s in (-1, 1)]
    finish = np.zeros_like(road)
    cv2.line(finish, tuple(int(round(v)) for v in ends[0]), tuple(int(round(v)) for v in ends[1]), 1, thickness=3)
    kind[(finish > 0) & (road > 0)] = FINISH
    clearance = cv2.distanceTransform(road, cv2.DIST_L2, 5).astype(np.float32) * RES
    gy, gx = np.gradient(cv2.GaussianBlur(clearance, (5, 5), 0))
    norm = np.maximum(np.hypot(gx, gy), 1e-6)
    normal = np.stack([gx / norm, gy / norm], -1).astype(np.float32)
    return Track(str(spec.get("name", "custom")), width, centre, heading, origin, kind, clearance, normal,
                 np.ascontiguousarray(centre[:, 0]), np.ascontiguousarray(centre[:, 1]))


_CACHE: dict[str, Track] = {}


def load_track(name: str) -> Track:
    """A shipped track by name (`easy`, `medium`, `hard`) or a path to a track JSON file; cached."""
    if name not in _CACHE:
        path = Path(name) if name.endswith(".json") else TRACKS_DIR / f"{name}.json"
        if not path.exists():
            raise ValueError(f"unknown simulator track {name!r}: expected one of {', '.join(track_names())} "
                             "or the path of a track .json file")
        spec = json.loads(path.read_text())
        spec.setdefault("name", path.stem)
        _CACHE[name] = build(spec)
    return _CACHE[name]
