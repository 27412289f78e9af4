"""make_env for every interface: spaces equal the spec (and TMRL's), rtgym semantics, GYM and custom
interfaces, clear failures for TrackMania on this machine, record-reward on the simulator."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from gymnasium import spaces
from tmrlx.actor.envs import make_env
from tmrlx.actor.envs.record import run as record_reward
from tmrlx.actor.envs.sim.track import trajectory_path
from tmrlx.common.config import load_config
from tmrlx.common.errors import ConfigError
from tmrlx.common.kinds import spec_from_config

LAYOUTS = [("SIMLIDAR", {}), ("SIMLIDARPROGRESS", {}), ("SIMFULL", {}), ("SIMFULL", {"IMG_GRAYSCALE": False}),
           ("SIMLIDAR", {"IMG_HIST_LEN": 1}), ("SIMFULL", {"IMG_HIST_LEN": 2, "IMG_WIDTH": 32, "IMG_HEIGHT": 48})]


def config(name: str, env: dict | None = None, rt: dict | None = None, **kwargs):
    return load_config(overrides={"ENV": {"RTGYM_INTERFACE": name, **(env or {}),
                                          "RTGYM_CONFIG": {**(rt or {}), "interface_kwargs": kwargs}}})


@pytest.mark.parametrize(("name", "env"), LAYOUTS)
def test_observations_follow_the_spec(name, env):
    cfg = config(name, env)
    spec = spec_from_config(cfg)
    e = make_env(cfg)
    obs, info = e.reset()
    assert e.observation_space.contains(obs)
    assert len(obs) == len(spec.components) + spec.act_buf_len
    for comp, part, space in zip(spec.components, obs, e.observation_space.spaces):
        assert part.shape == comp.obs_shape == space.shape and part.dtype == np.dtype(comp.dtype) == space.dtype
    assert e.action_space == spaces.Box(-1.0, 1.0, (3,), np.float32)
    obs, r, term, trunc, info = e.step(np.array([1.0, 0.0, 0.0], np.float32))
    assert e.observation_space.contains(obs) and set(info) == {"progress", "finished"}


def test_tmrl_lidar_and_full_sizes():
    lidar = spec_from_config(config("TM20LIDAR"))
    assert sum(int(np.prod(c.obs_shape)) for c in lidar.components) + lidar.act_buf_len * lidar.act_dim == 83
    full = make_env(config("SIMFULL")).observation_space
    assert [s.shape for s in full.spaces] == [(1,), (1,), (1,), (4, 64, 64), (3,), (3,)]


def test_action_applies_during_the_next_step_and_episodes_truncate():
    e = make_env(config("SIMLIDAR", rt={"ep_max_length": 30}))
    obs, _ = e.reset()
    speeds = []
    for k in range(30):
        obs, _, term, trunc, _ = e.step(np.array([1.0, 0.0, 0.0], np.float32))
        speeds.append(float(obs[0][0]))
        np.testing.assert_array_equal(obs[-1], [1.0, 0.0, 0.0])  # the action just sent is in the buffer
        assert trunc == (k == 29) and not term
    assert speeds[0] == 0.0 and speeds[1] > 0.0  # the first step's observation predates the first gas
    with pytest.raises(RuntimeError, match="Call reset"):
        e.step(np.zeros(3, np.float32))


def test_gym_env_lockstep_rescales_actions():
    cfg = config("GYM:Pendulum-v1", rt={"ep_max_length": 300})
    spec = spec_from_config(cfg)
    e = make_env(cfg)
    obs, _ = e.reset(seed=0)
    assert [o.shape for o in obs] == [c.obs_shape for c in spec.components] + [(1,)] * spec.act_buf_len
    inner = e.interface.env.unwrapped
    assert inner.last_u == 0.0  # reset applied the default action
    e.step(np.array([1.0], np.float32))
    assert inner.last_u == pytest.approx(2.0)  # [-1, 1] -> Pendulum's [-2, 2]
    state_after_plus = np.array([np.cos(inner.state[0]), np.sin(inner.state[0]), inner.state[1]], np.float32)
    obs, *_ = e.step(np.array([-0.5], np.float32))
    assert inner.last_u == pytest.approx(-1.0)
    np.testing.assert_allclose(obs[0], state_after_plus, rtol=1e-6)  # what +1 did, seen one step later
    for _ in range(250):  # beyond Pendulum's own 200-step limit: rtgym's ep_max_length governs
        *_, term, trunc, _ = e.step(np.zeros(1, np.float32))
        assert not term and not trunc


def test_custom_interface_class():
    cfg = load_config(overrides={"ENV": {"RTGYM_INTERFACE": "tests.test_env:CountingInterface",
                                         "RTGYM_CONFIG": {"interface_kwargs": {"start": 5},
                                                          "time_step_duration": 0.01, "start_obs_capture": 0.005}}})
    assert spec_from_config(cfg).components[0].shape == (1,)
    e = make_env(cfg)
    obs, _ = e.reset()
    assert obs[0][0] == 5.0
    obs, r, *_ = e.step(np.zeros(3, np.float32))
    assert obs[0][0] == 6.0 and r == 1.0


class CountingInterface:
    """A minimal user interface, as in TMRL's tutorials."""

    def __init__(self, start: int = 0):
        self.n = start

    def get_observation_space(self):
        return spaces.Tuple((spaces.Box(0.0, np.inf, (1,), np.float32),))

    def get_action_space(self):
        return spaces.Box(-1.0, 1.0, (3,), np.float32)

    def get_default_action(self):
        return np.zeros(3, np.float32)

    def send_control(self, control):
        pass

    def reset(self, seed=None, options=None):
        return [np.array([self.n], np.float32)], {}

    def get_obs_rew_terminated_info(self):
        self.n += 1
        return [np.array([self.n], np.float32)], 1.0, False, {}

    def wait(self):
        pass


class RecordingInterface(CountingInterface):
    """Counts, and records every control it is sent: what rtgym applied, in order."""

    def __init__(self, start: int = 0):
        super().__init__(start)
        self.sent: list[list[float]] = []

    def send_control(self, control):
        self.sent.append(np.asarray(control).tolist())


def _two_episodes(make) -> tuple[list, list]:
    """Action buffers returned over two 3-step episodes, and the controls the interface received."""
    iface = RecordingInterface()
    env = make(iface)
    bufs = []
    for episode in range(2):
        obs, _ = env.reset()
        bufs.append([a.tolist() for a in obs[1:]])
        for k in range(3):
            obs, *_ = env.step(np.full(3, episode + (k + 1) / 10, np.float32))
            bufs.append([a.tolist() for a in obs[1:]])
    env.wait()
    return bufs, iface.sent


@pytest.mark.parametrize(("reset_act_buf", "last_act_on_reset"), [(True, False), (False, False), (False, True)])
def test_lockstep_resets_the_action_buffer_like_rtgym(reset_act_buf, last_act_on_reset):
    from rtgym.envs.real_time_env import RealTimeEnvTS
    from tmrlx.actor.envs import rtgym_config
    from tmrlx.actor.envs.clock import VirtualClock
    from tmrlx.actor.envs.lockstep import LockstepEnv

    cfg = load_config(overrides={"ENV": {"RTGYM_INTERFACE": "tests.test_env:RecordingInterface", "RTGYM_CONFIG": {
        "time_step_duration": 0.01, "start_obs_capture": 0.005, "ep_max_length": 3, "act_buf_len": 2,
        "reset_act_buf": reset_act_buf, "last_act_on_reset": last_act_on_reset}}})
    clock = VirtualClock()
    lockstep = _two_episodes(lambda iface: LockstepEnv(iface, rtgym_config(cfg), clock))
    real_time = _two_episodes(lambda iface: RealTimeEnvTS(rtgym_config(cfg, lambda: iface)))
    assert lockstep == real_time
    bufs, sent = lockstep
    zero, last = [0.0] * 3, np.full(3, 0.3, np.float32).tolist()  # 0.3: the first episode's never-applied action
    kept = [np.full(3, 0.2, np.float32).tolist(), last if last_act_on_reset else zero]
    assert bufs[4] == ([zero, zero] if reset_act_buf else kept)  # the second reset's observation
    assert sent[3] == (last if last_act_on_reset else zero)  # what the second reset applied


@pytest.mark.parametrize("name", ["TM20LIDAR", "TM20FULL", "TM20LIDARPROGRESS"])
def test_trackmania_fails_clearly_here(name, tmp_path, monkeypatch):
    monkeypatch.setenv("TMRLX_DATA", str(tmp_path))
    with pytest.raises(ConfigError) as err:
        make_env(config(name))
    msg = str(err.value)
    assert "mss" in msg and "vgamepad" in msg and "tmrlx record-reward" in msg and "Windows" in msg


def test_bad_simulator_options_are_named():
    with pytest.raises(ConfigError, match="unknown simulator option.*'trak'"):
        make_env(config("SIMLIDAR", trak="easy"))
    with pytest.raises(ConfigError, match="'track'.*expected one of easy, hard, medium"):
        make_env(config("SIMLIDAR", track="nope"))


def test_missing_reward_file_is_an_error_not_a_dummy(tmp_path):
    with pytest.raises(Exception, match="tmrlx record-reward"):
        make_env(config("SIMLIDAR", reward_file=str(tmp_path / "none.npy")))


@pytest.mark.parametrize("track", ["easy", "hard"])
def test_record_reward_reproduces_the_shipped_trajectory(track, tmp_path):
    out = tmp_path / "reward.npy"
    record_reward(config("SIMLIDAR", track=track), argparse.Namespace(output=out))
    got, shipped = np.load(out), np.load(trajectory_path(track))
    n = min(len(got), len(shipped))
    assert abs(len(got) - len(shipped)) <= 10  # within 1 m of length
    assert np.linalg.norm(got[:n] - shipped[:n], axis=1).max() < 1.0


def test_simulator_lidar_sees_the_road():
    e = make_env(config("SIMLIDAR"))
    obs, _ = e.reset()
    scan, full = obs[1][-1], e.interface.lidar.lengths - 1
    assert scan[9] == full[9]  # straight ahead: road up to the horizon, then sky, no border
    assert (scan[5:8] < full[5:8] - 20).all() and (scan[11:14] < full[11:14] - 20).all()  # both borders seen
    assert np.allclose(scan, scan[::-1], atol=2)  # centred on the road: symmetric
    e.interface.backends.controller.world.car.x += 7.0  # 7 m towards the right-hand border (heading is +y)
    e.step(np.zeros(3, np.float32))  # returns what was captured before the move
    obs, *_ = e.step(np.zeros(3, np.float32))
    scan = obs[1][-1]
    assert scan[3:8].sum() < scan[11:16].sum() - 50  # the right border is now much nearer than the left


def test_lockstep_pacing_caps_wall_clock_rate_without_changing_the_simulation():
    import time

    def run(**kw):
        e = make_env(config("SIMLIDAR", rt={"ep_max_length": 1000}, **kw))
        e.reset()
        t0 = time.perf_counter()
        obs = [e.step(np.array([1.0, 0.0, 0.1], np.float32))[0] for _ in range(20)]
        return time.perf_counter() - t0, obs

    fast, obs_fast = run()
    paced, obs_paced = run(steps_per_s=100)
    assert paced >= 0.18 > fast  # 20 steps at <= 100/s take at least ~0.19 s of wall time
    for a, b in zip(obs_fast, obs_paced):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)  # same simulated time step, bit-identical
    with pytest.raises(ConfigError, match="steps_per_s"):
        make_env(config("SIMLIDAR", steps_per_s=0))
