"""Find the game window, place its client area at the screen's top-left at the config's size, and say
which screen rectangle to capture (TMRL's window set-up, both platforms).

- Windows (pywin32): FindWindow "Trackmania"; the border and title-bar sizes are the difference between
  the window and client rectangles; MoveWindow so that the client area is WINDOW_WIDTH x WINDOW_HEIGHT
  at the top-left; the capture region is the client area's screen rectangle (ClientToScreen).
- Linux (the game under Proton): xdotool search/windowfocus/windowmove 0 0/windowsize, a 1 s wait for
  the window manager, then the capture region is offset by ENV.LINUX_X_OFFSET / LINUX_Y_OFFSET (the
  desktop's decorations; TMRL's defaults 64 and 70), x to the left and y to the top.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tmrlx.actor.envs.clock import Clock
from tmrlx.common.errors import ConfigError

TITLE = "Trackmania"
CLIENT_AT = (0, 0)  # where the client area goes on the screen (Windows)
WM_SETTLE_S = 1.0  # TMRL's wait after xdotool resized the window
NOT_FOUND = ("no window titled 'Trackmania' ({why}): start TrackMania 2020 in windowed mode (Settings > Graphics > "
             "display mode: windowed), load a map, and keep the window open while tmrlx runs")


@dataclass(frozen=True)
class Placement:
    region: dict[str, int]  # the screen rectangle of the game image: left, top, width, height (mss's monitor dict)
    popup_point: tuple[int, int]  # screen pixel of the finish pop-up's button (TMRL's click point)


def popup_point(width: int, height: int) -> tuple[int, int]:
    """TMRL's click point in the client area: (138, 108) in its small 256x128 window, else (550, 320)."""
    return (138, 108) if width <= 256 and height <= 128 else (550, 320)


def _placement(left: int, top: int, width: int, height: int) -> Placement:
    px, py = popup_point(width, height)
    return Placement({"left": left, "top": top, "width": width, "height": height}, (left + px, top + py))


def place_win32(win32gui: Any, width: int, height: int) -> Placement:
    hwnd = win32gui.FindWindow(None, TITLE)
    if not hwnd:
        raise ConfigError(NOT_FOUND.format(why="win32gui.FindWindow returned 0"))
    left, top, right, bottom = win32gui.GetWindowRect(hwnd)
    _, _, cw, ch = win32gui.GetClientRect(hwnd)
    cx, cy = win32gui.ClientToScreen(hwnd, (0, 0))
    border_x, border_y = cx - left, cy - top  # left border, top border + title bar
    extra_w, extra_h = (right - left) - cw, (bottom - top) - ch
    win32gui.MoveWindow(hwnd, CLIENT_AT[0] - border_x, CLIENT_AT[1] - border_y, width + extra_w, height + extra_h, True)
    win32gui.SetForegroundWindow(hwnd)  # keys go to the foreground window
    _, _, cw, ch = win32gui.GetClientRect(hwnd)
    if (cw, ch) != (width, height):
        raise ConfigError(f"the Trackmania window's image is {cw}x{ch} after resizing it to {width}x{height}: use "
                          "windowed mode and 100 % display scaling, or set ENV.WINDOW_WIDTH/HEIGHT to a size it accepts")
    left, top = win32gui.ClientToScreen(hwnd, (0, 0))
    return _placement(left, top, width, height)


def place_xdotool(xdotool: Callable[[Sequence[str]], str], clock: Clock, width: int, height: int,
                  x_offset: int, y_offset: int) -> Placement:
    try:
        found = xdotool(["search", "--name", TITLE]).split()
    except subprocess.CalledProcessError as e:  # xdotool exits with 1 when no window matches
        raise ConfigError(NOT_FOUND.format(why=f"xdotool search exited with {e.returncode}")) from None
    except FileNotFoundError:
        raise ConfigError("the xdotool program is missing (e.g. apt-get install xdotool)") from None
    if not found:
        raise ConfigError(NOT_FOUND.format(why="xdotool search printed no window"))
    wid = found[0]
    for command in (["windowfocus", wid], ["windowmove", wid, "0", "0"], ["windowsize", wid, str(width), str(height)]):
        xdotool(command)
    clock.sleep(WM_SETTLE_S)
    return _placement(x_offset, y_offset, width, height)
