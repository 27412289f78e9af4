"""Environments: `make_env(cfg)` for every `ENV.RTGYM_INTERFACE` the config accepts.

| interface | what runs | default clock |
|---|---|---|
| `TM20FULL`, `TM20LIDAR`, `TM20LIDARPROGRESS` | TrackMania 2020 (Windows, `tm` extra) | real time |
| `SIMFULL`, `SIMLIDAR`, `SIMLIDARPROGRESS` | the built-in track simulator | lockstep (`"lockstep": false` for real time) |
| `GYM:<id>` | any Gymnasium env with a Box action space | lockstep (`"lockstep": false` for real time) |
| `package.module:Class` | a user's rtgym `RealTimeGymInterface` (built with `interface_kwargs`) | real time |

Real time is rtgym's `RealTimeEnvTS`; lockstep is `LockstepEnv` (same semantics, virtual clock).
Both take their timing from `ENV.RTGYM_CONFIG` and expose `benchmarks()` when `benchmark` is true.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium
from rtgym.envs.real_time_env import RealTimeEnvTS
from tmrlx.actor.envs.clock import Clock, VirtualClock, WallClock
from tmrlx.common.config import SIM_INTERFACES, TM_INTERFACES, Config, ConfigError
from tmrlx.common.specs import load_interface_class


def rtgym_config(cfg: Config, interface: Callable[[], Any] | None = None) -> dict:
    """rtgym's config dict from `ENV.RTGYM_CONFIG` (interface kwargs are handled by make_env)."""
    rt = cfg.ENV.RTGYM_CONFIG
    return {"interface": interface, "interface_args": (), "interface_kwargs": {},
            "time_step_duration": rt.time_step_duration, "start_obs_capture": rt.start_obs_capture,
            "time_step_timeout_factor": rt.time_step_timeout_factor, "ep_max_length": rt.ep_max_length,
            "act_in_obs": True, "act_buf_len": rt.act_buf_len, "reset_act_buf": True, "benchmark": rt.benchmark,
            "benchmark_polyak": 0.1, "wait_on_done": rt.wait_on_done, "last_act_on_reset": False}


def interface_factory(cfg: Config) -> tuple[Callable[[Clock], Any], bool]:
    """(build the rtgym interface on a clock, lockstep?) for the config's RTGYM_INTERFACE."""
    name = cfg.ENV.RTGYM_INTERFACE
    kwargs = dict(cfg.ENV.RTGYM_CONFIG.interface_kwargs)
    if name in SIM_INTERFACES:
        from tmrlx.actor.envs.sim.backends import sim_interface, sim_options

        return (lambda clock: sim_interface(cfg, clock)), bool(sim_options(kwargs)["lockstep"])
    if name in TM_INTERFACES:
        from tmrlx.actor.envs.backends.tm import tm_interface

        return (lambda clock: tm_interface(cfg, clock)), False
    if name.startswith("GYM:"):
        from tmrlx.actor.envs.gym_adapter import GymInterface, gym_options

        lockstep = bool(gym_options(kwargs)["lockstep"])
        return (lambda clock: GymInterface(name[4:], cfg.ENV.RTGYM_CONFIG.ep_max_length)), lockstep
    cls = load_interface_class(name)
    return (lambda clock: cls(**kwargs)), False


def make_env(cfg: Config) -> gymnasium.Env:
    """The environment the config describes; observations follow `common.specs.spec_from_config(cfg)`."""
    from tmrlx.actor.envs.lockstep import LockstepEnv

    build, lockstep = interface_factory(cfg)
    if lockstep:
        clock = VirtualClock()
        pace = cfg.ENV.RTGYM_CONFIG.interface_kwargs.get("steps_per_s")
        if pace is not None and (isinstance(pace, bool) or not isinstance(pace, (int, float)) or pace <= 0):
            raise ConfigError(f"interface_kwargs 'steps_per_s' has value {pace!r}: expected a number > 0 or null")
        return LockstepEnv(build(clock), rtgym_config(cfg), clock, steps_per_s=pace)
    interface = build(WallClock())  # built here so that its errors reach the caller, not rtgym's thread
    return RealTimeEnvTS(rtgym_config(cfg, lambda: interface))
