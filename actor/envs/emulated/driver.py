"""check-environment's `scripted` driver on an emulated TM20* interface: the simulator's scripted driver,
reading the emulated car like a human watching the screen and driving through the real controller."""

from __future__ import annotations

from typing import Any

import numpy as np
from tmrlx.actor.envs.kinds import Driver
from tmrlx.actor.envs.sim.driver import scripted_action
from tmrlx.common.errors import ConfigError


def scripted_driver(env: Any) -> Driver:
    game = getattr(getattr(env, "interface", None), "backends", None)
    game = getattr(game, "game", None)
    if game is None:
        raise ConfigError("--driver scripted on a TM20* interface needs the emulated game "
                          "(ENV.RTGYM_CONFIG.interface_kwargs {\"emulate\": true}): it reads the emulated car")
    return lambda obs: np.array(scripted_action(game.world), np.float32)
