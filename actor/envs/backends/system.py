"""The operating-system access of the TrackMania backends, behind one seam.

The backends call these objects with the real packages' shapes: pywin32's `win32gui`, ctypes'
`user32` (`SendInput`, `GetSystemMetrics`), `mss.mss`, `vgamepad` and the `xdotool` program.
`real_system()` imports the real ones; `tmrlx.actor.envs.emulated` provides the emulated game's.
The backends branch on `platform` ("windows": pywin32 window, ViGEm gamepad or SendInput keys;
"linux": the game under Proton, xdotool and uinput), never on `sys.platform`, so both branches
run in tests on any OS.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

PLATFORMS = ("windows", "linux")
TM_EXTRA = "install the tm extra: pip install 'tmrlx[tm]'"


@dataclass(frozen=True)
class System:
    platform: str  # "windows" or "linux"
    mss: Callable[[], Any]  # mss.mss: a capture object with grab(region) -> BGRA screenshot, close()
    vgamepad: Callable[[], Any]  # imports vgamepad (on Windows the import itself fails without ViGEmBus)
    win32gui: Any = None  # windows: pywin32's win32gui
    user32: Any = None  # windows: ctypes.windll.user32
    xdotool: Callable[[Sequence[str]], str] | None = None  # linux: runs `xdotool ARGS`, returns stdout (CalledProcessError)
    game: Any = None  # the emulated game behind these objects (closed with the backends); None on a real machine


def run_xdotool(args: Sequence[str]) -> str:
    return subprocess.run(["xdotool", *args], check=True, capture_output=True, text=True, timeout=10).stdout


def _vgamepad() -> Any:
    return importlib.import_module("vgamepad")


def real_system(gamepad: bool, problems: list[str]) -> System | None:
    """This machine's modules; what is missing goes to `problems` (then None)."""
    try:
        import mss
    except ImportError as e:
        problems.append(f"python package 'mss' ({e}); {TM_EXTRA}")
        mss = None
    if gamepad and importlib.util.find_spec("vgamepad") is None:
        problems.append(f"python package 'vgamepad' (for VIRTUAL_GAMEPAD: true); {TM_EXTRA}")
    if sys.platform == "win32":
        try:
            import ctypes

            import win32gui
        except ImportError as e:
            problems.append(f"python package 'pywin32' ({e}); {TM_EXTRA}")
            return None
        return System("windows", mss.mss, _vgamepad, win32gui=win32gui, user32=ctypes.windll.user32) if mss else None
    if not os.environ.get("DISPLAY"):
        problems.append("an X11 display to capture (no DISPLAY is set); the game under Proton needs X11")
    if shutil.which("xdotool") is None:
        problems.append("the xdotool program (e.g. apt-get install xdotool)")
    if gamepad and not os.access("/dev/uinput", os.W_OK):
        problems.append("a writable /dev/uinput for the virtual gamepad (see docs/environments.md), "
                        "or set VIRTUAL_GAMEPAD to false to drive with xdotool keys")
    return System("linux", mss.mss, _vgamepad, xdotool=run_xdotool) if mss and not problems else None
