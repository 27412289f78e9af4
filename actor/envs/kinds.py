"""The registry of environment kinds, heavy half: what each kind runs on an actor machine.

Keyed by the light kind's name (`tmrlx.common.kinds`): the rtgym interface factory, the lap recorder
of `tmrlx record-reward`, and check-environment's default and scripted drivers. Backends are
imported on first use, so a GYM: actor never loads the simulator or the TrackMania packages.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
from tmrlx.actor.envs.clock import Clock
from tmrlx.common.config import Config
from tmrlx.common.kinds import kind_of
from tmrlx.common.kinds.custom import load_interface_class
from tmrlx.common.kinds.gym import gym_id

Driver = Callable[[tuple], np.ndarray]  # observation -> action in [-1, 1]


@dataclass(frozen=True)
class Lazy:
    """A `module:function` imported at its first call."""

    target: str

    def load(self) -> Callable:
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.load()(*args, **kwargs)


@dataclass(frozen=True)
class EnvKind:
    """What one kind runs: its interface on a clock, and the commands that only some kinds support."""

    interface: Callable[[Config, Clock], Any]  # the rtgym interface (make_env picks the clock)
    record: Callable[[Config], np.ndarray] | None = None  # one lap of (x, y, z) positions for record-reward
    scripted: Callable[[Any], Driver] | None = None  # the kind's own driver, reading the lockstep env it drives
    check_driver: str = "keyboard"  # check-environment's driver when --driver is not given
    lap_check: bool = False  # check-environment --driver scripted fails unless a lap is finished (a game rehearsal)


def _gym_interface(cfg: Config, clock: Clock) -> Any:
    from tmrlx.actor.envs.gym_adapter import GymInterface

    return GymInterface(gym_id(cfg.ENV.RTGYM_INTERFACE), cfg.ENV.RTGYM_CONFIG.ep_max_length)


def _custom_interface(cfg: Config, clock: Clock) -> Any:
    return load_interface_class(cfg.ENV.RTGYM_INTERFACE)(**dict(cfg.ENV.RTGYM_CONFIG.interface_kwargs))


ENV_KINDS: Mapping[str, EnvKind] = MappingProxyType({
    "trackmania": EnvKind(Lazy("tmrlx.actor.envs.backends.tm:tm_interface"), record=Lazy("tmrlx.actor.envs.record:record_tm"),
                          scripted=Lazy("tmrlx.actor.envs.emulated.driver:scripted_driver"), lap_check=True),
    "simulator": EnvKind(Lazy("tmrlx.actor.envs.sim.backends:sim_interface"), record=Lazy("tmrlx.actor.envs.record:record_sim"),
                         scripted=Lazy("tmrlx.actor.envs.sim.driver:scripted_driver"), check_driver="scripted"),
    "gym": EnvKind(_gym_interface),
    "custom": EnvKind(_custom_interface),
})


def env_kind(cfg: Config) -> EnvKind:
    """The actor's half of the config's kind."""
    return ENV_KINDS[kind_of(cfg.ENV.RTGYM_INTERFACE).name]
