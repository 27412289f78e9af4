"""Simulator physics, determinism, the scripted driver, and the real-time clock."""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import pytest
from tmrlx.actor.envs import make_env
from tmrlx.actor.envs.clock import VirtualClock
from tmrlx.actor.envs.sim.driver import scripted_action
from tmrlx.actor.envs.sim.track import BEFORE_START, load_track, track_names
from tmrlx.actor.envs.sim.world import SimWorld
from tmrlx.common.config import load_config


def world(track: str = "easy") -> tuple[SimWorld, VirtualClock]:
    clock = VirtualClock()
    return SimWorld(load_track(track), clock), clock


def drive(w: SimWorld, clock: VirtualClock, controls, seconds: float) -> None:
    w.control(*controls)
    clock.sleep(seconds)


def test_throttle_moves_the_car_forward_and_brake_stops_it():
    w, clock = world()
    start = w.state()
    drive(w, clock, (1.0, 0.0, 0.0), 3.0)
    car = w.state()
    heading = np.array([math.cos(start.heading), math.sin(start.heading)])
    moved = np.array([car.x - start.x, car.y - start.y])
    sideways = heading[0] * moved[1] - heading[1] * moved[0]
    assert moved @ heading > 20.0 and abs(moved @ heading) > 10 * abs(sideways)
    assert car.forward_speed > 12.0
    speeds = []
    for _ in range(15):
        drive(w, clock, (0.0, 1.0, 0.0), 0.1)
        speeds.append(w.state().forward_speed)
    assert min(abs(v) for v in speeds) < 0.5  # stopped within 1.5 s of braking
    drive(w, clock, (0.0, 1.0, 0.0), 3.0)
    assert w.state().forward_speed < -2.0  # braking at a stop reverses


def test_a_wall_stops_the_car():
    w, clock = world()
    w.car.heading -= math.pi / 2  # facing the right-hand wall, 11 m away
    drive(w, clock, (1.0, 0.0, 0.0), 6.0)
    car = w.state()
    assert w.wall_hits > 0 and abs(car.forward_speed) < 0.5
    row, col = w.track.to_pixel(car.x, car.y)
    assert w.track.clearance[row, col] > 0.5  # still on the road, not through the wall
    start = w.track.centre[0]
    assert 8.0 < np.hypot(car.x - start[0], car.y - start[1]) < w.track.width / 2
    # head-on into the wall behind the start line: reverse until it stops the car
    w2, c2 = world()
    drive(w2, c2, (0.0, 1.0, 0.0), 8.0)
    back = w2.state()
    assert abs(back.forward_speed) < 0.5 and w2.wall_hits > 0
    start = w2.track.centre[0]
    # the road behind the start line ends in a rounded wall 8 m + half the width back
    assert np.hypot(back.x - start[0], back.y - start[1]) < BEFORE_START + w2.track.width / 2


@pytest.mark.parametrize("angle", [20.0, 45.0, 70.0])
def test_a_car_pushed_into_a_wall_at_an_angle_turns_along_it_and_drives_on(angle):
    """A glancing or steep hit costs speed, not the run: gas held, the car scrapes along the wall and speeds up
    again (it used to lose 15 % of its speed per 10 ms tick of contact and stop for good)."""
    w, clock = world()
    i = 100  # on the first straight, 10 m from the start line, 7 m left of the centreline (3 m from the wall)
    along = float(w.track.heading[i])
    w.car.x, w.car.y = w.track.centre[i] + 7.0 * np.array([-math.sin(along), math.cos(along)])
    w.car.heading = along + math.radians(angle)  # towards the left wall
    w.car.vx, w.car.vy = 10.0 * math.cos(w.car.heading), 10.0 * math.sin(w.car.heading)
    drive(w, clock, (1.0, 0.0, 0.0), 1.0)
    hit, at = w.state(), w.index
    assert w.wall_hits > 0
    drive(w, clock, (1.0, 0.0, 0.0), 1.5)
    car = w.state()
    assert car.y < w.track.centre[500][1]  # still on the 50 m straight
    assert abs((car.heading - along + math.pi) % (2 * math.pi) - math.pi) < 0.05  # along the wall
    assert car.forward_speed > 6.0 and car.forward_speed > hit.forward_speed  # driving on, faster
    assert w.index > at + 60  # and forward along the track


def test_a_car_that_does_not_steer_scrapes_round_the_outside_of_a_bend():
    """Into the outside wall of the easy track's first bend at full gas: the wall bends into the car's path at every
    tick; the car keeps a radius off it and scrapes round, slower than on the road (it used to stop dead there)."""
    w, clock = world()
    for _ in range(20):
        drive(w, clock, (1.0, 0.0, 0.0), 1.0)
        if w.progress() > 0.45:  # round the 90-degree bend (it spans 0.16-0.44 of the lap)
            break
    car = w.state()
    assert w.wall_hits > 0 and w.progress() > 0.45
    assert 5.0 < car.forward_speed < 20.0  # still driving, slowed by the scrape (full gas on the road: ~24 m/s)


def test_pedals_are_on_or_off_as_in_trackmania():
    """No analog acceleration: a pedal input below PEDAL_ON does nothing, any input above it is the full pedal."""
    speeds = {}
    for gas in (0.0, 0.5, 0.7, 1.0):
        w, clock = world()
        drive(w, clock, (gas, 0.0, 0.0), 2.0)
        speeds[gas] = w.state().forward_speed
    assert speeds[0.0] == speeds[0.5] == 0.0
    assert speeds[0.7] == speeds[1.0] > 10.0
    w, clock = world()
    drive(w, clock, (1.0, 0.0, 0.0), 2.0)
    drive(w, clock, (0.0, 0.3, 0.0), 0.5)
    coasting = w.state().forward_speed
    drive(w, clock, (1.0, 0.0, 0.0), 0.5)
    assert w.record()[7] == 0.0  # the plugin's "is braking": off below the threshold
    w2, c2 = world()
    drive(w2, c2, (1.0, 0.0, 0.0), 2.0)
    drive(w2, c2, (0.0, 0.0, 0.0), 0.5)
    assert coasting == w2.state().forward_speed  # a light brake input is no brake


def test_the_simulator_interface_maps_actions_as_tmrls_keyboard():
    """SIM* interfaces press a pedal for any positive action (TMRL's keyboard: gas > 0 forward, brake > 0 back)."""
    cfg = load_config(overrides={"ENV": {"RTGYM_INTERFACE": "SIMLIDAR"}})
    env = make_env(cfg)
    try:
        world_ = env.interface.backends.controller.world
        env.reset()
        for _ in range(20):
            env.step(np.array([0.05, -0.5, 0.0], np.float32))
        assert world_.controls[:2] == (1.0, 0.0) and world_.state().forward_speed > 5.0
    finally:
        env.close()


def run_lockstep(seed: int) -> list:
    cfg = load_config(overrides={"ENV": {"RTGYM_INTERFACE": "SIMLIDARPROGRESS",
                                         "RTGYM_CONFIG": {"interface_kwargs": {"seed": seed}}}})
    env = make_env(cfg)
    rng = np.random.default_rng(0)
    out = [env.reset()[0]]
    for _ in range(150):
        obs, r, term, trunc, _ = env.step(rng.uniform(-1, 1, 3).astype(np.float32))
        out.append((obs, r, term))
        if term or trunc:
            out.append(env.reset()[0])
    return out


def as_bytes(run: list) -> bytes:
    parts = []
    for item in run:
        obs, *rest = item if isinstance(item[-1], (bool, np.bool_)) else (item,)
        parts += [np.asarray(o, np.float64).ravel() for o in obs] + [np.asarray(rest, np.float64)]
    return np.concatenate(parts).tobytes()


def test_lockstep_runs_are_bit_identical():
    a, b = run_lockstep(3), run_lockstep(3)
    assert as_bytes(a) == as_bytes(b)
    assert as_bytes(a) != as_bytes(run_lockstep(4))  # the seed does matter


@pytest.mark.parametrize("name", track_names())
def test_scripted_driver_finishes_every_shipped_track(name):
    w, clock = world(name)
    for _ in range(2400):  # 2 minutes of driving
        w.control(*scripted_action(w))
        clock.sleep(0.05)
        if w.finished:
            break
    assert w.finished and w.record()[8] == 1.0
    assert w.wall_hits == 0


@pytest.mark.slow
def test_real_time_smoke_has_no_late_step():
    cfg = load_config(overrides={"ENV": {"RTGYM_INTERFACE": "SIMLIDAR", "SLEEP_TIME_AT_RESET": 0.1,
                                         "RTGYM_CONFIG": {"interface_kwargs": {"lockstep": False},
                                                          "benchmark": True}}})
    env = make_env(cfg)
    env.reset()
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(100):
            obs, r, term, trunc, info = env.step(np.array([1.0, 0.0, 0.0], np.float32))
            assert not term
    elapsed = time.perf_counter() - start
    late = [str(w.message) for w in caught if "timed out" in str(w.message)]
    assert not late, f"late time steps: {late}"
    assert 4.5 < elapsed < 6.5  # 100 steps of 50 ms, paced by the wall clock
    bench = env.benchmarks()
    assert bench["time_step_duration"][0] == pytest.approx(0.05, abs=0.01)
    assert obs[0][0] > 30.0  # km/h: the car really moved in real time
    assert info["progress"] > 0.05

