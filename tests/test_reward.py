"""The reward on hand-made trajectories: progress, failure countdown, stray, end of track, no double pay,
and the same matching as TMRL's loop (transcribed below as the reference)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tmrlx.actor.envs.reward import MissingRewardError, RewardFunction, load_trajectory, resample

CFG = {"CHECK_FORWARD": 500, "CHECK_BACKWARD": 10, "FAILURE_COUNTDOWN": 10, "MIN_STEPS": 70, "MAX_STRAY": 100.0}
LINE = np.stack([np.arange(0, 100.05, 0.1), np.zeros(1001), np.zeros(1001)], 1).astype(np.float32)  # 100 m along x


def at(x: float, z: float = 0.0) -> np.ndarray:
    return np.array([x, 0.0, z], np.float32)


def test_progress_pays_one_per_ten_metres():
    rf = RewardFunction(LINE, CFG)
    assert rf.compute_reward(at(10.0)) == (pytest.approx(1.0), False)
    assert rf.compute_reward(at(25.0)) == (pytest.approx(1.5), False)
    assert rf.progress == pytest.approx(0.25)


def test_failure_countdown_after_min_steps():
    rf = RewardFunction(LINE, {**CFG, "MIN_STEPS": 5, "FAILURE_COUNTDOWN": 3})
    ends = [rf.compute_reward(at(0.0))[1] for _ in range(8)]
    assert ends == [False] * 8  # steps 1..5 never count, 6..8 count failures 1..3
    assert rf.compute_reward(at(0.0)) == (0.0, True)  # the 4th failure in a row ends the episode
    rf.reset()
    for _ in range(8):
        rf.compute_reward(at(0.0))
    rf.compute_reward(at(1.0))  # progress resets the countdown
    assert not any(rf.compute_reward(at(1.0))[1] for _ in range(3))


def test_stray_counts_as_no_move():
    rf = RewardFunction(LINE, {**CFG, "MAX_STRAY": 5.0})
    assert rf.compute_reward(at(20.0, z=6.0)) == (0.0, False)
    assert rf.cur_idx == 0
    assert rf.compute_reward(at(20.0, z=4.0))[0] == pytest.approx(2.0)


def test_reversing_never_pays_the_same_stretch_twice():
    rf = RewardFunction(LINE, CFG)
    total = sum(rf.compute_reward(at(x))[0] for x in np.arange(1.0, 31.0, 1.0))  # forward to 30 m
    for x in np.arange(29.5, 9.5, -0.5):  # back to 10 m, half a metre (5 points) per step
        total += rf.compute_reward(at(x))[0]
    assert rf.cur_idx < 150  # the match did follow the car back
    for x in np.arange(11.0, 41.0, 1.0):  # and forward again to 40 m
        total += rf.compute_reward(at(x))[0]
    assert total == pytest.approx(4.0)  # 40 m paid once (TMRL would pay 6.0)


def test_end_of_track_and_constant_penalty_in_the_interface():
    from tmrlx.actor.envs.backends import Backends
    from tmrlx.actor.envs.clock import VirtualClock
    from tmrlx.actor.envs.interface import TrackInterface
    from tmrlx.common.config import load_config

    class Fixed:
        def __init__(self):
            self.record = np.zeros(11, np.float32)

        def retrieve(self, timeout=10.0):
            return self.record.copy()

        def grab(self):
            return np.full((128, 256, 4), 120, np.uint8)

        def apply(self, *a):
            pass

        def respawn(self):
            pass

        def close_popup(self):
            pass

    cfg = load_config(overrides={"ENV": {"RTGYM_INTERFACE": "SIMLIDAR", "REWARD_CONFIG": {"CONSTANT_PENALTY": -0.1}}})
    fake = Fixed()
    iface = TrackInterface(cfg, Backends(fake, fake, fake, VirtualClock()), RewardFunction(LINE, cfg.ENV.REWARD_CONFIG))
    iface.reset()
    fake.record[2] = 50.0
    _, r, term, info = iface.get_obs_rew_terminated_info()
    assert (r, term, info["finished"]) == (pytest.approx(4.9), False, False)
    fake.record[[2, 8]] = (100.0, 1.0)
    _, r, term, info = iface.get_obs_rew_terminated_info()
    assert (r, term, info) == (pytest.approx(5.0 + 100.0 - 0.1), True, {"progress": 1.0, "finished": True})


class TmrlReference:
    """TMRL 0.6's RewardFunction.compute_reward loop (index matching only), for comparison."""

    def __init__(self, data, cfg):
        self.data, self.cfg, self.cur, self.steps, self.fails = data, cfg, 0, 0, 0

    def step(self, pos):
        c, terminated = self.cfg, False
        self.steps += 1
        min_dist, index, temp, best = np.inf, self.cur, c["CHECK_FORWARD"], 0
        while True:
            dist = np.linalg.norm(pos - self.data[index])
            if dist <= min_dist:
                min_dist, best, temp = dist, index, c["CHECK_FORWARD"]
            index, temp = index + 1, temp - 1
            if index >= len(self.data) or temp <= 0:
                if min_dist > c["MAX_STRAY"]:
                    best = self.cur
                break
        if best == self.cur:
            min_dist, index = np.inf, self.cur
            while True:
                dist = np.linalg.norm(pos - self.data[index])
                if dist <= min_dist:
                    min_dist, best, temp = dist, index, c["CHECK_BACKWARD"]
                index, temp = index - 1, temp - 1
                if index <= 0 or temp <= 0:
                    break
            if self.steps > c["MIN_STEPS"]:
                self.fails += 1
                terminated = self.fails > c["FAILURE_COUNTDOWN"]
        else:
            self.fails = 0
        self.cur = best
        return terminated


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_matching_equals_tmrls_loop(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    data = np.cumsum(rng.normal(0, 0.1, (n, 3)), 0).astype(np.float32)
    cfg = {"CHECK_FORWARD": int(rng.integers(1, 50)), "CHECK_BACKWARD": int(rng.integers(0, 15)),
           "FAILURE_COUNTDOWN": 3, "MIN_STEPS": 5, "MAX_STRAY": float(rng.uniform(0.05, 3.0))}
    ref, rf = TmrlReference(data.astype(np.float64), cfg), RewardFunction(data, cfg)
    for _ in range(40):
        pos = data[rng.integers(0, n)] + rng.normal(0, 0.3, 3).astype(np.float32)
        term = ref.step(pos.astype(np.float64))
        assert rf.compute_reward(pos)[1] == term
        assert rf.cur_idx == ref.cur


def test_resample_every_tenth_of_a_metre():
    pts = np.array([[0, 0, 0], [0, 0, 0], [3, 0, 0], [3, 0, 4]], np.float32)  # 3 m then 4 m, one duplicate
    out = resample(pts)
    assert len(out) == 71
    np.testing.assert_allclose(np.linalg.norm(np.diff(out, axis=0), axis=1)[:29], 0.1, atol=1e-5)
    np.testing.assert_allclose(out[-1], [3, 0, 4], atol=1e-5)


def test_missing_or_bad_reward_file_says_how_to_record(tmp_path):
    with pytest.raises(MissingRewardError, match="tmrlx record-reward"):
        load_trajectory(tmp_path / "reward.npy")
    np.save(tmp_path / "bad.npy", np.zeros((4, 2)))
    with pytest.raises(MissingRewardError, match=r"shape \(4, 2\)"):
        load_trajectory(tmp_path / "bad.npy")
