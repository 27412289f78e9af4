"""TrackMania 2020's backends: the game window's capture, the plugin's TCP stream, the gamepad or keys.

Everything that touches the operating system goes through a `System` (`backends.system`): the real
modules on a Windows or Linux (Proton) machine, or the emulated game's (`interface_kwargs` `emulate`), so
the code below is the code that runs on the real machine. Whatever is missing (packages, display, the
gamepad driver, the window, the reward trajectory) is reported in one message with what to do.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import numpy as np
from tmrlx.actor.envs.backends import Backends
from tmrlx.actor.envs.backends.controls import GamepadController, SendInputKeyboard, XdotoolKeyboard
from tmrlx.actor.envs.backends.gamedata import GameDataClient
from tmrlx.actor.envs.backends.system import System, real_system
from tmrlx.actor.envs.backends.window import place_win32, place_xdotool
from tmrlx.actor.envs.clock import Clock
from tmrlx.actor.envs.interface import TrackInterface
from tmrlx.actor.envs.reward import MissingRewardError, RewardFunction, default_reward_path, load_trajectory
from tmrlx.common.config import Config
from tmrlx.common.errors import ConfigError
from tmrlx.common.kinds import TRACKMANIA


class MssScreen:
    """Grabs of the game's screen rectangle with one mss object per thread, made by the thread that grabs.

    mss 9 keeps its handles per thread (GDI device contexts on Windows, the X display on Linux): an object
    made on the main thread raises on rtgym's. Lazily per thread works with mss 9 and 10.
    """

    def __init__(self, mss: Any, region: dict[str, int]):
        self.mss, self.region = mss, region
        self._local = threading.local()
        self._made: list[Any] = []
        self._lock = threading.Lock()

    def grab(self) -> np.ndarray:
        sct = getattr(self._local, "sct", None)
        if sct is None:
            sct = self._local.sct = self.mss()
            with self._lock:
                self._made.append(sct)
        return np.asarray(sct.grab(self.region))  # BGRA (h, w, 4) uint8

    def close(self) -> None:
        with self._lock:
            made, self._made = self._made, []
        for sct in made:
            with contextlib.suppress(Exception):  # another thread's object may refuse to close here (mss 9)
                sct.close()


def tm_backends(cfg: Config, system: System, clock: Clock, host: str, port: int) -> Backends:
    """Place the window, open the capture, the plugin client and the controller, on `system`'s platform."""
    env = cfg.ENV
    w, h = env.WINDOW_WIDTH, env.WINDOW_HEIGHT
    if system.platform == "windows":
        placement = place_win32(system.win32gui, w, h)
    else:
        assert system.xdotool is not None
        placement = place_xdotool(system.xdotool, clock, w, h, env.LINUX_X_OFFSET, env.LINUX_Y_OFFSET)
    controller: GamepadController | SendInputKeyboard | XdotoolKeyboard
    if cfg.VIRTUAL_GAMEPAD:
        controller = GamepadController(system.vgamepad, clock, system.platform)
    elif system.platform == "windows":
        controller = SendInputKeyboard(system.user32, clock, placement.popup_point)
    else:
        assert system.xdotool is not None
        controller = XdotoolKeyboard(system.xdotool, clock, placement.popup_point)
    return Backends(MssScreen(system.mss, placement.region), GameDataClient(host, port), controller, clock, system.game)


def _emulated(opts: dict[str, Any]) -> tuple[System, str]:
    from tmrlx.actor.envs.emulated import start_game

    game = start_game(opts["track"], opts["emulate"])
    return game.system, opts["reward_file"] or str(game.trajectory)


def tm_interface(cfg: Config, clock: Clock) -> TrackInterface:
    """The TM20* interface on the game (or the emulated game), or one ConfigError listing everything that is missing."""
    opts = TRACKMANIA.interface_options(cfg.ENV.RTGYM_CONFIG.interface_kwargs)
    problems: list[str] = []
    system: System | None
    if opts["emulate"]:
        system, reward_file = _emulated(opts)
        host, port = "127.0.0.1", system.game.port
    else:
        system = real_system(cfg.VIRTUAL_GAMEPAD, problems)
        reward_file, host, port = opts["reward_file"] or str(default_reward_path()), opts["host"], int(opts["port"])
    try:
        trajectory = load_trajectory(reward_file)
    except MissingRewardError as e:
        problems.append(f"the reward trajectory: {e}")
    if problems or system is None:
        if system is not None and system.game is not None:
            system.game.close()
        raise ConfigError(f"{cfg.ENV.RTGYM_INTERFACE} (TrackMania 2020 on Windows, or under Proton on Linux: "
                          "docs/environments.md) cannot start; missing:\n  - " + "\n  - ".join(problems)
                          + "\n(to rehearse without the game: ENV.RTGYM_CONFIG.interface_kwargs {\"emulate\": true})")
    try:
        backends = tm_backends(cfg, system, clock, host, port)
    except BaseException:
        if system.game is not None:
            system.game.close()
        raise
    return TrackInterface(cfg, backends, RewardFunction(trajectory, cfg.ENV.REWARD_CONFIG))
