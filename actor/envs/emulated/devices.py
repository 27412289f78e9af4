"""The emulated game's other OS-facing objects: mss capture, vgamepad's Xbox 360 pad, the xdotool program.

- `Mss` answers `mss.mss()`: its objects grab screen rectangles (BGRA, `np.asarray`-able like mss's
  ScreenShot) and belong to the thread that made them: from another thread they raise mss 9's
  AttributeError (its handles live in a threading.local: GDI DCs `srcdc` on Windows, `display` on Linux).
- `Vgamepad` answers `import vgamepad`: `VX360Gamepad`, `XUSB_BUTTON`. State changes reach the game only
  at `update()`. Without the driver: on Windows the import raises `Exception('VIGEM_ERROR_BUS_NOT_FOUND')`
  (vgamepad connects to ViGEmBus at import); on Linux making the pad raises OSError EACCES (uinput).
- `Xdotool` runs xdotool's commands (chained, as the real program allows) against the game; no match for
  `search` exits 1 with no output; a bad window id is an X BadWindow error (exit 1).
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import IntFlag
from typing import Any

import numpy as np


class ScreenShot:
    def __init__(self, pixels: np.ndarray, left: int, top: int):
        self.pixels, self.pos = pixels, (left, top)
        self.height, self.width = pixels.shape[:2]

    @property
    def __array_interface__(self) -> dict:
        return self.pixels.__array_interface__

    @property
    def bgra(self) -> bytes:
        return self.pixels.tobytes()


class MssCapture:
    def __init__(self, game: Any):
        self.game = game
        self.thread = threading.get_ident()
        self.handle = "srcdc" if game.platform == "windows" else "display"

    def grab(self, monitor: dict[str, int] | tuple[int, int, int, int]) -> ScreenShot:
        if threading.get_ident() != self.thread:
            raise AttributeError(f"'_thread._local' object has no attribute '{self.handle}'")
        if not isinstance(monitor, dict):  # mss also takes (left, top, right, bottom)
            monitor = {"left": monitor[0], "top": monitor[1], "width": monitor[2] - monitor[0],
                       "height": monitor[3] - monitor[1]}
        return ScreenShot(self.game.grab(monitor["left"], monitor["top"], monitor["width"], monitor["height"]),
                          monitor["left"], monitor["top"])

    def close(self) -> None:
        pass

    def __enter__(self) -> MssCapture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class XUSB_BUTTON(IntFlag):  # noqa: N801 (vgamepad's name)
    XUSB_GAMEPAD_DPAD_UP = 0x0001
    XUSB_GAMEPAD_DPAD_DOWN = 0x0002
    XUSB_GAMEPAD_DPAD_LEFT = 0x0004
    XUSB_GAMEPAD_DPAD_RIGHT = 0x0008
    XUSB_GAMEPAD_START = 0x0010
    XUSB_GAMEPAD_BACK = 0x0020
    XUSB_GAMEPAD_A = 0x1000
    XUSB_GAMEPAD_B = 0x2000
    XUSB_GAMEPAD_X = 0x4000
    XUSB_GAMEPAD_Y = 0x8000


@dataclass(frozen=True)
class PadState:
    buttons: int = 0
    left_trigger: float = 0.0
    right_trigger: float = 0.0
    stick_x: float = 0.0
    stick_y: float = 0.0


class VX360Gamepad:
    def __init__(self, game: Any):
        if not game.gamepad_driver:
            raise OSError(errno.EACCES, os.strerror(errno.EACCES))  # python-libevdev opening /dev/uinput
        self.game = game
        self.state = PadState()
        self.id = game.plug_pad()

    def press_button(self, button: int) -> None:
        self.state = replace(self.state, buttons=self.state.buttons | int(button))

    def release_button(self, button: int) -> None:
        self.state = replace(self.state, buttons=self.state.buttons & ~int(button))

    def left_trigger_float(self, value_float: float) -> None:
        self.state = replace(self.state, left_trigger=min(max(float(value_float), 0.0), 1.0))

    def right_trigger_float(self, value_float: float) -> None:
        self.state = replace(self.state, right_trigger=min(max(float(value_float), 0.0), 1.0))

    def left_joystick_float(self, x_value_float: float, y_value_float: float) -> None:
        self.state = replace(self.state, stick_x=min(max(float(x_value_float), -1.0), 1.0),
                             stick_y=min(max(float(y_value_float), -1.0), 1.0))

    def reset(self) -> None:
        self.state = PadState()

    def update(self) -> None:
        self.game.pad_report(self.id, self.state)


class Vgamepad:
    """What `import vgamepad` gives, bound to the game."""

    XUSB_BUTTON = XUSB_BUTTON

    def __init__(self, game: Any):
        if game.platform == "windows" and not game.gamepad_driver:
            raise Exception("VIGEM_ERROR_BUS_NOT_FOUND")  # vgamepad/win/virtual_gamepad.py at import
        self.game = game

    def VX360Gamepad(self) -> VX360Gamepad:  # noqa: N802
        return VX360Gamepad(self.game)


KEYSYMS = {"Up": "gas", "Down": "brake", "Left": "left", "Right": "right", "BackSpace": "respawn"}
ARITY = {"search": -1, "windowfocus": 1, "windowmove": 3, "windowsize": 3, "keydown": 1, "keyup": 1,
         "mousemove": 2, "click": 1}


class Xdotool:
    def __init__(self, game: Any):
        self.game = game
        self.cursor = (0, 0)

    def __call__(self, args: Sequence[str]) -> str:
        argv, out, i = ["xdotool", *args], [], 0
        while i < len(args):
            command = args[i]
            if command not in ARITY:
                raise subprocess.CalledProcessError(1, argv, "", f"xdotool: Unknown command: {command}\n")
            n = len(args) - i - 1 if ARITY[command] < 0 else ARITY[command]  # search takes the rest
            out.append(self._run(argv, command, list(args[i + 1:i + 1 + n])))
            i += 1 + n
        return "".join(out)

    def _window(self, argv: list[str], wid: str) -> Any:
        if self.game.window is None or wid != str(self.game.hwnd):
            raise subprocess.CalledProcessError(1, argv, "", "X Error of failed request:  BadWindow (invalid Window parameter)\n")
        return self.game.window

    def _run(self, argv: list[str], command: str, params: list[str]) -> str:
        game = self.game
        if command == "search":
            window = game.window
            if window is None or not re.search(params[-1], window.title):
                raise subprocess.CalledProcessError(1, argv, "", "")
            return f"{game.hwnd}\n"
        if command in ("keydown", "keyup"):
            if params[0] in KEYSYMS:
                game.key(KEYSYMS[params[0]], command == "keydown")
        elif command == "mousemove":
            self.cursor = (int(params[0]), int(params[1]))
        elif command == "click":
            game.click(*self.cursor)
        else:
            with game.lock:
                window = self._window(argv, params[0])
                if command == "windowfocus":
                    game.focus()
                elif command == "windowmove":
                    window.move_frame(int(params[1]), int(params[2]))
                else:
                    window.size_client(int(params[1]), int(params[2]))
        return ""
