"""`tmrlx record-reward`: record one lap from the game-data stream, resampled every 0.1 m.

In TrackMania, start at the start line and drive to the finish line; positions come from the
plugin's TCP stream. With a SIM* interface a scripted driver drives the lap on the chosen track
(lockstep unless `"lockstep": false`, through the real TCP server with `"gamedata": "tcp"`).
The trajectory goes to `<data folder>/reward/reward.npy` unless `--output` says otherwise.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tmrlx.actor.envs.backends import GameData
from tmrlx.actor.envs.backends.gamedata import FINISHED, X, Z
from tmrlx.actor.envs.clock import Clock
from tmrlx.actor.envs.reward import default_reward_path, resample
from tmrlx.common.config import SIM_INTERFACES, TM_INTERFACES, Config, ConfigError

POLL = 0.01  # s between records (the plugin sends one per game frame)
MAX_LAP = 600.0  # s


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--output", type=Path, default=None, help="where to save the trajectory (.npy; default: "
                        "the data folder's reward/reward.npy)")


def record_lap(gamedata: GameData, clock: Clock, drive: Callable[[], None] | None = None,
               max_seconds: float = MAX_LAP) -> np.ndarray:
    """Positions (x, y, z) from the first record until the finish flag, calling `drive` before each poll."""
    positions = []
    start = clock.now()
    while clock.now() - start < max_seconds:
        if drive is not None:
            drive()
        clock.sleep(POLL)
        data = gamedata.retrieve()
        positions.append(data[X:Z + 1].copy())
        if data[FINISHED]:
            return np.array(positions)
    raise TimeoutError(f"no finish line crossed within {max_seconds:.0f} s of recording")


def record_sim(cfg: Config) -> np.ndarray:
    """The scripted driver's lap on the configured simulator track."""
    from tmrlx.actor.envs.clock import VirtualClock, WallClock
    from tmrlx.actor.envs.sim.backends import SimController, SimGameData, TcpGameData, sim_world
    from tmrlx.actor.envs.sim.driver import scripted_action

    lockstep = bool(dict(cfg.ENV.RTGYM_CONFIG.interface_kwargs).get("lockstep", True))
    clock = VirtualClock() if lockstep else WallClock()
    world, opts = sim_world(cfg, clock)
    gamedata = TcpGameData(world, int(opts["port"])) if opts["gamedata"] == "tcp" else SimGameData(world)
    controller = SimController(world)
    try:
        return record_lap(gamedata, clock, lambda: controller.apply(*scripted_action(world)))
    finally:
        getattr(gamedata, "close", lambda: None)()


def record_tm(cfg: Config) -> np.ndarray:
    from tmrlx.actor.envs.backends.gamedata import GameDataClient
    from tmrlx.actor.envs.backends.tm import TM_KWARGS
    from tmrlx.actor.envs.clock import WallClock

    opts = {**TM_KWARGS, **dict(cfg.ENV.RTGYM_CONFIG.interface_kwargs)}
    client = GameDataClient(opts["host"], int(opts["port"]))
    print(f"recording from the plugin on {opts['host']}:{opts['port']}: drive one lap, start line to finish line")
    try:
        return record_lap(client, WallClock())
    finally:
        client.close()


def run(cfg: Config, args: argparse.Namespace) -> int:
    name = cfg.ENV.RTGYM_INTERFACE
    if name in SIM_INTERFACES:
        positions = record_sim(cfg)
    elif name in TM_INTERFACES:
        positions = record_tm(cfg)
    else:
        raise ConfigError(f"record-reward records a track lap: ENV.RTGYM_INTERFACE is {name!r}, expected one of "
                          + ", ".join(TM_INTERFACES + SIM_INTERFACES))
    trajectory = resample(positions)
    out = getattr(args, "output", None) or default_reward_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, trajectory)
    print(f"saved {len(trajectory)} points ({(len(trajectory) - 1) * 0.1:.1f} m) to {out}")
    return 0
