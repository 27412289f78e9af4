"""A scripted driver for the simulator: pure pursuit on the centreline, braking for the bends ahead.

It records the shipped trajectories (`tmrlx record-reward` on a SIM interface) and shows in tests
that every shipped track can be finished. It reads the car's state from the world, like a human
watching the screen, and drives through the same controller the policy uses.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from tmrlx.actor.envs.kinds import Driver
from tmrlx.actor.envs.sim.car import GRIP
from tmrlx.actor.envs.sim.track import STEP
from tmrlx.actor.envs.sim.world import SimWorld

LOOKAHEAD = (6.0, 0.5)  # m: minimum, plus seconds of speed
PREVIEW = 35.0  # m of track checked for bends
CORNER_GRIP = 0.75  # fraction of the tyres' grip used in bends


def scripted_action(world: SimWorld) -> tuple[float, float, float]:
    """(gas, brake, steer) that follows the track at a safe speed."""
    track, car = world.track, world.state()
    last = len(track.centre) - 1
    speed = car.forward_speed
    i = world.index
    j = min(i + int((LOOKAHEAD[0] + LOOKAHEAD[1] * max(speed, 0.0)) / STEP), last)
    dx, dy = track.centre[j] - (car.x, car.y)
    angle = (math.atan2(dy, dx) - car.heading + math.pi) % (2 * math.pi) - math.pi
    steer = max(-1.0, min(1.0, -2.5 * angle))
    ahead = track.heading[i: min(i + int(PREVIEW / STEP), last) + 1]
    turn = np.abs(np.diff(ahead)).max() / STEP if len(ahead) > 1 else 0.0  # curvature (1/m)
    target = math.sqrt(CORNER_GRIP * GRIP / turn) if turn > 1e-6 else 1e9
    gas = 1.0 if speed < target else 0.0
    brake = 1.0 if speed > target + 2.0 else 0.0
    return gas, brake, steer


def scripted_driver(env: Any) -> Driver:
    """check-environment's `scripted` driver: reads the world behind a lockstep SIM* env."""
    world = env.interface.backends.controller.world
    return lambda obs: np.array(scripted_action(world), np.float32)
