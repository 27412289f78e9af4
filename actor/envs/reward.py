"""TMRL's reward from a recorded trajectory (`REWARD_CONFIG`), vectorised, minus its double-pay bug.

The trajectory is an (N, 3) array of positions every 0.1 m along one recorded lap. Each step the
car's position is matched to the trajectory exactly as TMRL's scan does (forward from the current
index, stopping CHECK_FORWARD points after the last point that was at least as near; ties move on),
but on whole windows of points at once. The reward is the number of points gained / 100 (+1 per
10 m). When the match does not move forward, it is searched backwards (CHECK_BACKWARD) and, after
MIN_STEPS steps, more than FAILURE_COUNTDOWN such steps in a row end the episode. A best match
further than MAX_STRAY counts as no move.

TMRL's bug, fixed: after reversing, TMRL pays again for the stretch driven back over. Here only
points beyond the furthest point ever reached in the episode pay.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from tmrlx.common import paths

RESAMPLE_STEP = 0.1  # m


class MissingRewardError(RuntimeError):
    """No reward trajectory where one is needed; the message says how to record one."""


def load_trajectory(path: Path | str) -> np.ndarray:
    """An (N, 3) float32 trajectory from a `.npy` file, with a clear error when it is missing or malformed."""
    path = Path(path)
    if not path.exists():
        raise MissingRewardError(
            f"no reward trajectory at {path}. Record one: start the game on your map, then run "
            "`tmrlx record-reward` and drive one lap from the start line to the finish line "
            "(with a simulator interface, a scripted driver drives it for you).")
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise MissingRewardError(f"{path} is not a reward trajectory (.npy array): {e}") from None
    if data.ndim != 2 or data.shape[1] != 3 or len(data) < 2:
        raise MissingRewardError(f"{path} holds an array of shape {data.shape}: expected (N >= 2, 3) positions")
    return data.astype(np.float32)


def default_reward_path() -> Path:
    return paths.reward_dir() / "reward.npy"


def resample(positions: np.ndarray, step: float = RESAMPLE_STEP) -> np.ndarray:
    """Points every `step` metres along a recorded polyline (duplicates dropped), as TMRL stores them."""
    pts = np.asarray(positions, np.float64)
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    keep = np.concatenate([[True], seg > 1e-9])
    pts, seg = pts[keep], seg[seg > 1e-9]
    if len(pts) < 2:
        raise ValueError("the recorded positions never move: nothing to resample")
    s = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.arange(0.0, s[-1] + 1e-9, step)
    return np.stack([np.interp(t, s, pts[:, k]) for k in range(3)], 1).astype(np.float32)


def _scan(dist: np.ndarray, patience: int) -> tuple[int, bool]:
    """TMRL's early-stopping scan over `dist` (in scan order): index of the best match, and whether the
    scan stopped inside the window (False: it needs more points, if there are any)."""
    if patience <= 0:
        return 0, True
    running = np.minimum.accumulate(dist)
    better = np.flatnonzero(dist <= np.concatenate([[np.inf], running[:-1]]))
    gaps = np.flatnonzero(np.diff(better) >= patience)
    if len(gaps):
        return int(better[gaps[0]]), True
    last = int(better[-1])
    return last, last + patience <= len(dist)


class RewardFunction:
    def __init__(self, trajectory: np.ndarray, reward_config: Mapping):
        self.data = np.asarray(trajectory, np.float32)
        self.forward = int(reward_config["CHECK_FORWARD"])
        self.backward = int(reward_config["CHECK_BACKWARD"])
        self.max_failures = int(reward_config["FAILURE_COUNTDOWN"])
        self.min_steps = int(reward_config["MIN_STEPS"])
        self.max_stray = float(reward_config["MAX_STRAY"])
        self.reset()

    def reset(self) -> None:
        self.cur_idx = 0
        self.furthest = 0
        self.step_counter = 0
        self.failure_counter = 0

    @property
    def progress(self) -> float:
        """Fraction of the trajectory covered so far in this episode (0..1)."""
        return self.furthest / max(len(self.data) - 1, 1)

    def _dist(self, pos: np.ndarray, lo: int, hi: int) -> np.ndarray:
        d = self.data[lo:hi] - pos
        return np.sqrt(np.einsum("ij,ij->i", d, d))

    def _match_forward(self, pos: np.ndarray) -> tuple[int, float]:
        n, window = len(self.data), 2 * self.forward + 64
        while True:
            hi = min(self.cur_idx + window, n)
            dist = self._dist(pos, self.cur_idx, hi)
            k, done = _scan(dist, self.forward)
            if done or hi == n:
                return self.cur_idx + k, float(dist[k])
            window *= 2

    def _match_backward(self, pos: np.ndarray) -> int:
        floor = 1 if self.cur_idx > 0 else 0  # TMRL's rewind stops before evaluating index 0
        window = 2 * self.backward + 64
        while True:
            lo = max(self.cur_idx + 1 - window, floor)
            dist = self._dist(pos, lo, self.cur_idx + 1)[::-1]
            k, done = _scan(dist, self.backward)
            if done or lo == floor:
                return self.cur_idx - k
            window *= 2

    def compute_reward(self, pos: np.ndarray) -> tuple[float, bool]:
        """(reward, terminated) for the car at `pos` (x, y, z); advances the episode's state."""
        pos = np.asarray(pos, np.float32)
        self.step_counter += 1
        terminated = False
        best, dist = self._match_forward(pos)
        if dist > self.max_stray:
            best = self.cur_idx
        if best == self.cur_idx:
            best = self._match_backward(pos)
            if self.step_counter > self.min_steps:
                self.failure_counter += 1
                terminated = self.failure_counter > self.max_failures
        else:
            self.failure_counter = 0
        reward = max(best - self.furthest, 0) / 100.0
        self.furthest = max(self.furthest, best)
        self.cur_idx = best
        return reward, terminated
