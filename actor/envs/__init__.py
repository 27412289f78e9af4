"""Environments: `make_env(cfg)` for every `ENV.RTGYM_INTERFACE` the config accepts.

| interface | what runs | default clock |
|---|---|---|
| `TM20FULL` (or any `TM20*`), `TM20LIDAR`, `TM20LIDARPROGRESS` | TrackMania 2020 (Windows, `tm` extra) | real time |
| `SIMFULL`, `SIMLIDAR`, `SIMLIDARPROGRESS` | the built-in track simulator | lockstep (`"lockstep": false` for real time) |
| `GYM:<id>` | any Gymnasium env with a Box action space | lockstep (`"lockstep": false` for real time) |
| `package.module:Class` | a user's rtgym `RealTimeGymInterface` (built with `interface_kwargs`) | real time |

Real time is rtgym's `RealTimeEnvTS` made hang-proof (`realtime.RealTimeEnv`); lockstep is `LockstepEnv`
(same semantics, virtual clock). What each kind
accepts and its clock are in `common.kinds`; what it builds is in `actor.envs.kinds`.
Both take their timing and rtgym's other keys (`reset_act_buf`, `last_act_on_reset`, `benchmark_polyak`,
`benchmark_type`) from `ENV.RTGYM_CONFIG` and expose `benchmarks()` when `benchmark` is true.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from tmrlx.actor.envs.clock import VirtualClock, WallClock
from tmrlx.actor.envs.kinds import env_kind
from tmrlx.actor.envs.lockstep import LockstepEnv
from tmrlx.actor.envs.realtime import RealTimeEnv
from tmrlx.common.config import Config
from tmrlx.common.kinds import kind_of


def rtgym_config(cfg: Config, interface: Callable[[], Any] | None = None) -> dict:
    """rtgym's config dict: `ENV.RTGYM_CONFIG` as it is, but the interface, which make_env builds from its kwargs."""
    return {**cfg.ENV.RTGYM_CONFIG.to_dict(), "interface": interface, "interface_args": (), "interface_kwargs": {}}


def make_env(cfg: Config, stop: threading.Event | None = None) -> LockstepEnv | RealTimeEnv:
    """The environment the config describes; observations follow `common.kinds.spec_from_config(cfg)`.
    `stop` (the actor's) ends a wait for the game inside the environment: reset then raises `realtime.Stopped`."""
    build = env_kind(cfg).interface
    timing = kind_of(cfg.ENV.RTGYM_INTERFACE).timing(cfg.ENV.RTGYM_CONFIG.interface_kwargs)
    if timing.lockstep:
        clock = VirtualClock()
        return LockstepEnv(build(cfg, clock), rtgym_config(cfg), clock, steps_per_s=timing.steps_per_s)
    interface = build(cfg, WallClock())  # built here so that its errors reach the caller, not rtgym's thread
    if stop is not None and isinstance(getattr(interface, "stop", None), threading.Event):
        interface.stop = stop
    return RealTimeEnv(rtgym_config(cfg), interface)
