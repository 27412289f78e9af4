"""TrackMania 2020's real backends: mss screenshots, the plugin's TCP stream, vgamepad or keyboard.

`mss`, `vgamepad` and `keyboard` (the `tm` extra: `pip install 'tmrlx[tm]'`) are imported only
here and only when a TM20* interface is built; whatever is missing (packages, a display, the
virtual gamepad driver, the reward trajectory) is reported in one message.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import numpy as np
from tmrlx.actor.envs.backends import Backends
from tmrlx.actor.envs.backends.gamedata import GameDataClient
from tmrlx.actor.envs.clock import Clock
from tmrlx.actor.envs.interface import TrackInterface
from tmrlx.actor.envs.reward import MissingRewardError, RewardFunction, default_reward_path, load_trajectory
from tmrlx.common.config import Config
from tmrlx.common.errors import ConfigError
from tmrlx.common.kinds import TRACKMANIA


class MssScreen:
    """Screenshots of the game window region (top-left at window_left/top, the config's window size)."""

    def __init__(self, mss: Any, left: int, top: int, width: int, height: int):
        self.sct = mss.mss()
        self.region = {"left": left, "top": top, "width": width, "height": height}

    def grab(self) -> np.ndarray:
        return np.asarray(self.sct.grab(self.region))  # BGRA


class GamepadController:
    """TMRL's mapping: gas -> right trigger, brake -> left trigger, steer -> left stick x; respawn = B."""

    def __init__(self, vgamepad: Any):
        self.vg = vgamepad
        self.pad = vgamepad.VX360Gamepad()

    def apply(self, gas: float, brake: float, steer: float) -> None:
        self.pad.right_trigger_float(value_float=max(gas, 0.0))
        self.pad.left_trigger_float(value_float=max(brake, 0.0))
        self.pad.left_joystick_float(x_value_float=min(max(steer, -1.0), 1.0), y_value_float=0.0)
        self.pad.update()

    def respawn(self) -> None:
        button = self.vg.XUSB_BUTTON.XUSB_GAMEPAD_B
        self.pad.press_button(button=button)
        self.pad.update()
        self.pad.release_button(button=button)
        self.pad.update()


class KeyboardController:
    """TMRL's binary keys: gas > 0 up, brake > 0 down, steer > 0.5 right, < -0.5 left; respawn Delete/BackSpace."""

    def __init__(self, keyboard: Any):
        self.kb = keyboard

    def apply(self, gas: float, brake: float, steer: float) -> None:
        for key, down in (("up", gas > 0), ("down", brake > 0), ("right", steer > 0.5), ("left", steer < -0.5)):
            (self.kb.press if down else self.kb.release)(key)

    def respawn(self) -> None:
        self.kb.press_and_release("delete" if sys.platform == "win32" else "backspace")


def _import(name: str, problems: list[str]) -> Any:
    try:
        return importlib.import_module(name)
    except Exception as e:  # ImportError, or a driver error raised at import (vgamepad without ViGEmBus)
        problems.append(f"python package {name!r} ({type(e).__name__}: {e}); install the tm extra: pip install 'tmrlx[tm]'")
        return None


def tm_interface(cfg: Config, clock: Clock) -> TrackInterface:
    """The TM20* interface on the real game, or one ConfigError listing everything that is missing."""
    opts = TRACKMANIA.interface_options(cfg.ENV.RTGYM_CONFIG.interface_kwargs)
    problems: list[str] = []
    if sys.platform != "win32":
        problems.append(f"TrackMania 2020 runs on Windows (this is {sys.platform}); use a SIM* interface here")
        if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
            problems.append("a display to capture (no DISPLAY is set)")
    mss = _import("mss", problems)
    pad = _import("vgamepad", problems) if cfg.VIRTUAL_GAMEPAD else _import("keyboard", problems)
    if cfg.VIRTUAL_GAMEPAD and sys.platform.startswith("linux") and not os.access("/dev/uinput", os.W_OK):
        problems.append("a writable /dev/uinput for the virtual gamepad (or set VIRTUAL_GAMEPAD to false)")
    reward_file = opts["reward_file"] or default_reward_path()
    try:
        trajectory = load_trajectory(reward_file)
    except MissingRewardError as e:
        problems.append(f"the reward trajectory: {e}")
    if problems:
        raise ConfigError(f"{cfg.ENV.RTGYM_INTERFACE} cannot start; missing:\n  - " + "\n  - ".join(problems))
    env = cfg.ENV
    controller = GamepadController(pad) if cfg.VIRTUAL_GAMEPAD else KeyboardController(pad)
    backends = Backends(MssScreen(mss, opts["window_left"], opts["window_top"], env.WINDOW_WIDTH, env.WINDOW_HEIGHT),
                        GameDataClient(opts["host"], int(opts["port"])), controller, clock)
    return TrackInterface(cfg, backends, RewardFunction(trajectory, env.REWARD_CONFIG))
