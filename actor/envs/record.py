"""`tmrlx record-reward`: record one lap from the game-data stream, resampled every 0.1 m.

In TrackMania, start at the start line and drive to the finish line; positions come from the
plugin's TCP stream. With a SIM* interface a scripted driver drives the lap on the chosen track
(lockstep unless `"lockstep": false`, through the real TCP server with `"gamedata": "tcp"`).
The trajectory goes to `<data folder>/reward/reward.npy` unless `--output` says otherwise.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tmrlx.actor.envs.backends import GameData
from tmrlx.actor.envs.backends.gamedata import FINISHED, NoGameData, X, Z
from tmrlx.actor.envs.clock import Clock
from tmrlx.actor.envs.kinds import ENV_KINDS, env_kind
from tmrlx.actor.envs.reward import default_reward_path, resample
from tmrlx.common.config import Config
from tmrlx.common.errors import ConfigError
from tmrlx.common.kinds import REGISTRY, SIMULATOR, TRACKMANIA

POLL = 0.01  # s between records (the plugin sends one per game frame)
MAX_LAP = 600.0  # s
log = logging.getLogger("tmrlx.actor")


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--output", type=Path, default=None, help="where to save the trajectory (.npy; default: "
                        "the data folder's reward/reward.npy)")


def record_lap(gamedata: GameData, clock: Clock, drive: Callable[[], None] | None = None,
               max_seconds: float = MAX_LAP) -> np.ndarray:
    """Positions (x, y, z) from the first record until the finish flag, calling `drive` before each poll.
    Without data it keeps waiting (the game may not be started yet), repeating the plugin advice."""
    positions = []
    start = clock.now()
    while clock.now() - start < max_seconds:
        if drive is not None:
            drive()
        clock.sleep(POLL)
        try:
            data = gamedata.retrieve(timeout=5.0)
        except NoGameData as e:
            log.warning("%s", e)
            continue
        positions.append(data[X:Z + 1].copy())
        if data[FINISHED]:
            return np.array(positions)
    raise TimeoutError(f"no finish line crossed within {max_seconds:.0f} s of recording")


def record_sim(cfg: Config) -> np.ndarray:
    """The scripted driver's lap on the configured simulator track."""
    from tmrlx.actor.envs.clock import VirtualClock, WallClock
    from tmrlx.actor.envs.sim.backends import SimController, SimGameData, TcpGameData, sim_world
    from tmrlx.actor.envs.sim.driver import scripted_action

    clock = VirtualClock() if SIMULATOR.timing(cfg.ENV.RTGYM_CONFIG.interface_kwargs).lockstep else WallClock()
    world, opts = sim_world(cfg, clock)
    gamedata = TcpGameData(world, int(opts["port"])) if opts["gamedata"] == "tcp" else SimGameData(world)
    controller = SimController(world)
    try:
        return record_lap(gamedata, clock, lambda: controller.apply(*scripted_action(world)))
    finally:
        getattr(gamedata, "close", lambda: None)()


def record_emulated(cfg: Config, opts: dict) -> np.ndarray:
    """The scripted driver's lap in the emulated game, through the real TM20 backends (window, pad or keys, plugin)."""
    from tmrlx.actor.envs.backends.tm import tm_backends
    from tmrlx.actor.envs.clock import WallClock
    from tmrlx.actor.envs.emulated import start_game
    from tmrlx.actor.envs.sim.driver import scripted_action

    game, clock = start_game(opts["track"], opts["emulate"]), WallClock()
    try:
        backends = tm_backends(cfg, game.system, clock, "127.0.0.1", game.port)
    except BaseException:
        game.close()
        raise
    try:
        backends.controller.respawn()
        return record_lap(backends.gamedata, clock, lambda: backends.controller.apply(*scripted_action(game.world)))
    finally:
        backends.close()


def record_tm(cfg: Config) -> np.ndarray:
    """A human's lap in the game, read from the plugin's stream (the scripted driver's in the emulated game)."""
    from tmrlx.actor.envs.backends.gamedata import GameDataClient
    from tmrlx.actor.envs.clock import WallClock

    opts = TRACKMANIA.interface_options(cfg.ENV.RTGYM_CONFIG.interface_kwargs)
    if opts["emulate"]:
        return record_emulated(cfg, opts)
    client = GameDataClient(opts["host"], int(opts["port"]))
    print(f"recording from the plugin on {opts['host']}:{opts['port']}: drive one lap, start line to finish line")
    try:
        return record_lap(client, WallClock())
    finally:
        client.close()


def run(cfg: Config, args: argparse.Namespace) -> int:
    record = env_kind(cfg).record
    if record is None:
        tracks = ", ".join(kind.accepts for kind in REGISTRY if ENV_KINDS[kind.name].record is not None)
        raise ConfigError(f"record-reward records a track lap: ENV.RTGYM_INTERFACE is {cfg.ENV.RTGYM_INTERFACE!r}, "
                          f"expected one of {tracks}")
    trajectory = resample(record(cfg))
    out = getattr(args, "output", None) or default_reward_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, trajectory)
    print(f"saved {len(trajectory)} points ({(len(trajectory) - 1) * 0.1:.1f} m) to {out}")
    return 0
