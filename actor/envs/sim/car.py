"""A forgiving 2D car: gas and brake pedals (on or off; brake reverses when stopped), analog steering, inertia,
drag, grip, walls.

The pedals are on or off as in TrackMania, which has no analog acceleration or braking (an analog input counts
once past a threshold: `world.PEDAL_ON`); only the steering is analog.

The heading turns like a bicycle model whose yaw rate is capped by the tyres' grip, so the car
understeers instead of spinning; grip also kills sideways velocity (e.g. after a wall). A wall
removes the velocity component that points into it and, by friction, speed along it in proportion:
hit head-on the car stops; pushed into it at an angle it turns along it and scrapes on, so a touch
costs speed, not the run. One `tick` is PHYSICS_DT seconds, like the game's 100 Hz physics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tmrlx.actor.envs.sim.track import Track

PHYSICS_DT = 0.01
ACCEL = 9.0  # m/s^2 at full gas from standstill
TOP_SPEED = 33.0  # m/s where the engine's force falls to zero
BRAKE = 14.0  # m/s^2
REVERSE_ACCEL = 4.0  # m/s^2 when braking at a stop
REVERSE_SPEED = 8.0  # m/s
DRAG = 0.0015  # 1/m: quadratic air drag
ROLLING = 0.15  # 1/s: linear rolling resistance
GRIP = 14.0  # m/s^2 of lateral acceleration the tyres can give
MAX_STEER = math.radians(32.0)
WHEELBASE = 2.6  # m
RADIUS = 1.2  # m: the car's collision radius
WALL_FRICTION = 0.4  # along-wall speed lost per m/s of speed into the wall (friction on the impact's impulse)
WALL_TURN = 3.0  # rad/s: how fast a car pushed into a wall at an angle turns along it
HEAD_ON = math.cos(math.radians(10.0))  # within 10 degrees of the wall's normal a hit is head-on
GEARS = (0.0, 10.0, 17.0, 23.0, 28.0, 1e9)  # m/s upshift thresholds


@dataclass
class CarState:
    x: float
    y: float
    heading: float
    vx: float = 0.0
    vy: float = 0.0

    @property
    def forward_speed(self) -> float:
        return self.vx * math.cos(self.heading) + self.vy * math.sin(self.heading)


def tick(car: CarState, gas: bool, brake: bool, steer: float, track: Track) -> bool:
    """Advance `car` by PHYSICS_DT with the pedals pressed or not and `steer` in [-1, 1]; returns True if it touched
    a wall."""
    dt = PHYSICS_DT
    c, s = math.cos(car.heading), math.sin(car.heading)
    v_long = car.vx * c + car.vy * s
    v_lat = -car.vx * s + car.vy * c  # left-positive
    steer = min(max(steer, -1.0), 1.0)
    a = (ACCEL * max(1.0 - v_long / TOP_SPEED, 0.0) if gas else 0.0) - DRAG * v_long * abs(v_long) - ROLLING * v_long
    if brake:
        if v_long > 0.5:
            a -= BRAKE
        elif v_long > -REVERSE_SPEED:
            a -= REVERSE_ACCEL
    v_long += a * dt
    if not gas and not brake and abs(v_long) < 0.05:
        v_long = 0.0
    yaw = v_long * math.tan(-steer * MAX_STEER) / WHEELBASE  # steer > 0 turns right (clockwise)
    cap = GRIP / max(abs(v_long), 1.0)
    car.heading += max(-cap, min(cap, yaw)) * dt
    v_lat -= math.copysign(min(abs(v_lat), GRIP * dt), v_lat)
    c, s = math.cos(car.heading), math.sin(car.heading)
    car.vx, car.vy = v_long * c - v_lat * s, v_long * s + v_lat * c
    return _move(car, track)


def _move(car: CarState, track: Track) -> bool:
    dt = PHYSICS_DT
    nx, ny = car.x + car.vx * dt, car.y + car.vy * dt
    r, col = track.to_pixel(nx, ny)
    if track.clearance[r, col] >= RADIUS:
        car.x, car.y = nx, ny
        return False
    here = track.to_pixel(car.x, car.y)
    n0, n1 = (float(v) for v in track.normal[here])
    into = car.vx * n0 + car.vy * n1
    if into < 0.0:
        tx, ty = car.vx - into * n0, car.vy - into * n1  # the velocity along the wall
        along = math.hypot(tx, ty)
        keep = max(along + WALL_FRICTION * into, 0.0) / along if along > 1e-9 else 0.0
        car.vx, car.vy = tx * keep, ty * keep
        # Pushed into the wall at an angle, the contact's torque turns the car along it; head-on it just stops.
        c, s = math.cos(car.heading), math.sin(car.heading)
        if abs(c * n0 + s * n1) < HEAD_ON:
            side = 1.0 if c * -n1 + s * n0 >= 0.0 else -1.0  # the tangent nearer the heading (nose or tail first)
            turn = (math.atan2(side * n0, -side * n1) - car.heading + math.pi) % (2 * math.pi) - math.pi
            car.heading += max(-WALL_TURN * dt, min(WALL_TURN * dt, turn))
    nx, ny = car.x + car.vx * dt, car.y + car.vy * dt
    short = RADIUS - float(track.clearance[track.to_pixel(nx, ny)])
    if short > 0.0:  # a bending wall: the contact keeps the car a radius off it, as it slides along
        nx, ny = nx + short * n0, ny + short * n1
    clear = float(track.clearance[track.to_pixel(nx, ny)])
    if clear >= RADIUS or clear > track.clearance[here]:
        car.x, car.y = nx, ny
    else:  # a corner: stopped
        car.vx = car.vy = 0.0
    return True


def gear_and_rpm(speed: float) -> tuple[float, float]:
    """A plausible gearbox read-out for the FULL observation (TrackMania reports gear 0..5, rpm up to ~11000)."""
    speed = abs(speed)
    gear = next(i for i, top in enumerate(GEARS[1:], 1) if speed < top)
    lo, hi = GEARS[gear - 1], min(GEARS[gear], TOP_SPEED)
    rpm = 1500.0 + 9000.0 * min(max((speed - lo) / max(hi - lo, 1e-6), 0.0), 1.0)
    return float(gear), rpm
