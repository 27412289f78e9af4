"""The simulated game: one car on one track, advanced lazily to the clock's time.

Every query first brings the physics up to `clock.now()` in fixed PHYSICS_DT ticks, so the same code
runs in real time (wall clock: a late policy costs, as in the game) and in lockstep (virtual clock:
each `sleep` advances exactly that much simulated time; deterministic). A lock makes it safe to read
from the TCP server's thread while rtgym's thread drives it.
"""

from __future__ import annotations

import math
import threading

import numpy as np
from tmrlx.actor.envs.clock import Clock
from tmrlx.actor.envs.sim.car import PHYSICS_DT, TOP_SPEED, CarState, gear_and_rpm, tick
from tmrlx.actor.envs.sim.track import STEP, Track

MAX_POINTS_PER_TICK = int(TOP_SPEED * 1.3 * PHYSICS_DT / STEP) + 1  # centreline points a tick can cover
MAX_CATCH_UP = 1000  # ticks (10 s): a longer gap (a paused process) is skipped rather than replayed
# A pedal input (a key: 0 or 1; a trigger: its travel, 0..1) presses the pedal past this point. TrackMania has no
# analog acceleration or braking; TM2 / TMUF ghosts store the analog pedals on a -65536..65536 axis (released =
# -65536) that the game treats as off up to ~0x4E00 (ManiaPlanetSharp issue 15), i.e. ~65 % of a trigger's travel.
PEDAL_ON = 0.65


class SimWorld:
    def __init__(self, track: Track, clock: Clock):
        self.track = track
        self.clock = clock
        self.lock = threading.RLock()
        self.controls = (0.0, 0.0, 0.0)  # gas, brake, steer
        self._ticks: int | None = None
        self.respawn()

    def respawn(self) -> None:
        """Back to the start line at rest, inputs released (the game's respawn)."""
        with self.lock:
            self._sync()
            x, y = self.track.centre[0]
            self.car = CarState(float(x), float(y), float(self.track.heading[0]))
            self.controls = (0.0, 0.0, 0.0)
            self.index = 0  # nearest centreline point
            self.distance = 0.0  # odometer (m)
            self.finished = False
            self.wall_hits = 0

    def control(self, gas: float, brake: float, steer: float) -> None:
        """The inputs as the game reads them: pedals in [0, 1] (pressed past PEDAL_ON), steering in [-1, 1]."""
        with self.lock:
            self._sync()
            self.controls = (float(gas), float(brake), float(steer))

    def _sync(self) -> None:
        target = int(self.clock.now() / PHYSICS_DT + 1e-6)
        if self._ticks is None or target - self._ticks > MAX_CATCH_UP:  # first use, or a long pause: skip it
            self._ticks = target
        gas, brake, steer = self.controls
        gas_on, brake_on = gas > PEDAL_ON, brake > PEDAL_ON
        ticks = target - self._ticks
        while self._ticks < target:
            self._ticks += 1
            if self.finished:
                continue  # the game freezes the car behind the finish line until respawn
            x0, y0 = self.car.x, self.car.y
            self.wall_hits += tick(self.car, gas_on, brake_on, steer, self.track)
            self.distance += math.hypot(self.car.x - x0, self.car.y - y0)
        if ticks > 0 and not self.finished:
            self.index = self.track.project(self.car.x, self.car.y, self.index, back=50,
                                            ahead=MAX_POINTS_PER_TICK * ticks + 50)
            self.finished = self.index >= len(self.track.centre) - 1

    def state(self) -> CarState:
        with self.lock:
            self._sync()
            return CarState(self.car.x, self.car.y, self.car.heading, self.car.vx, self.car.vy)

    def progress(self) -> float:
        with self.lock:
            self._sync()
            return self.index * STEP / self.track.length

    def record(self) -> np.ndarray:
        """The 11 floats TMRL's OpenPlanet plugin sends: speed (km/h), distance, pos x/y/z (y up),
        input steer, input gas, is braking, finished, gear, rpm."""
        with self.lock:
            self._sync()
            car, (gas, brake, steer) = self.car, self.controls
            speed = abs(car.forward_speed)
            gear, rpm = gear_and_rpm(speed)
            return np.array([speed * 3.6, self.distance, car.x, 0.0, car.y, steer, gas, float(brake > PEDAL_ON),
                             float(self.finished), gear, rpm], np.float32)
