"""The simulator's screen, game-data and controller backends, and the interface factory for SIM*.

`interface_kwargs` (track, seed, gamedata, ...) are the simulator kind's: see `common.kinds.track`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from tmrlx.actor.envs.backends import Backends
from tmrlx.actor.envs.backends.gamedata import GameDataClient
from tmrlx.actor.envs.clock import Clock
from tmrlx.actor.envs.interface import TrackInterface
from tmrlx.actor.envs.reward import RewardFunction, load_trajectory
from tmrlx.actor.envs.sim.render import Renderer
from tmrlx.actor.envs.sim.server import GameDataServer
from tmrlx.actor.envs.sim.track import load_track, trajectory_path
from tmrlx.actor.envs.sim.world import SimWorld
from tmrlx.common.config import Config
from tmrlx.common.errors import ConfigError
from tmrlx.common.kinds import SIMULATOR


class SimScreen:
    def __init__(self, world: SimWorld, width: int, height: int):
        self.world = world
        self.renderer = Renderer(world.track, width, height)

    def grab(self) -> np.ndarray:
        return self.renderer.render(self.world.state())


class SimGameData:
    """The in-process shortcut: the record straight from the world, no socket."""

    def __init__(self, world: SimWorld):
        self.world = world

    def retrieve(self, timeout: float = 10.0) -> np.ndarray:
        return self.world.record()


class TcpGameData:
    """The real plugin protocol: a server in front of the world, read back by the real client."""

    def __init__(self, world: SimWorld, port: int):
        self.server = GameDataServer(world, port=port).start()
        self.client = GameDataClient("127.0.0.1", self.server.port)

    def retrieve(self, timeout: float = 10.0) -> np.ndarray:
        return self.client.retrieve(timeout)

    def close(self) -> None:
        self.client.close()
        self.server.stop()


class SimController:
    """Drives the simulated car; with a seed, respawns jitter the start pose (reproducibly)."""

    def __init__(self, world: SimWorld, seed: int | None = None):
        self.world = world
        self.rng = np.random.default_rng(seed) if seed is not None else None

    def apply(self, gas: float, brake: float, steer: float) -> None:
        """An action as TMRL's keyboard maps it (gas > 0 presses the gas, brake > 0 the brake), steering analog."""
        self.world.control(float(gas > 0.0), float(brake > 0.0), steer)

    def close_popup(self) -> None:
        """The simulator has no finish pop-up (the emulated TrackMania has one)."""

    def respawn(self) -> None:
        self.world.respawn()
        if self.rng is not None:
            lateral, turn = self.rng.uniform(-1.0, 1.0), math.radians(self.rng.uniform(-3.0, 3.0))
            with self.world.lock:
                car = self.world.car
                car.x -= lateral * math.sin(car.heading)
                car.y += lateral * math.cos(car.heading)
                car.heading += turn


def sim_world(cfg: Config, clock: Clock) -> tuple[SimWorld, dict[str, Any]]:
    opts = SIMULATOR.interface_options(cfg.ENV.RTGYM_CONFIG.interface_kwargs)
    try:
        track = load_track(opts["track"])
    except ValueError as e:
        raise ConfigError(f"interface_kwargs 'track': {e}") from None
    return SimWorld(track, clock), opts


def sim_interface(cfg: Config, clock: Clock) -> TrackInterface:
    """The SIMFULL / SIMLIDAR / SIMLIDARPROGRESS interface on a fresh simulated world."""
    world, opts = sim_world(cfg, clock)
    reward_file = opts["reward_file"] or trajectory_path(world.track.name)
    reward = RewardFunction(load_trajectory(reward_file), cfg.ENV.REWARD_CONFIG)
    gamedata = TcpGameData(world, int(opts["port"])) if opts["gamedata"] == "tcp" else SimGameData(world)
    backends = Backends(SimScreen(world, cfg.ENV.WINDOW_WIDTH, cfg.ENV.WINDOW_HEIGHT), gamedata,
                        SimController(world, opts["seed"]), clock)
    return TrackInterface(cfg, backends, reward)
