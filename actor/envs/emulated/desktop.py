"""The emulated screen: a desktop framebuffer with the game's top-level window on it.

The window has a title bar and borders around its client area (the game image); where it sits and how big
its client area is change only through the window calls (`move_outer`: win32gui.MoveWindow; `move_frame` /
`size_client`: xdotool). A grab of any screen rectangle returns what is there, so a grab of the wrong
rectangle shows borders, title bar or desktop, as on a real screen.

Decorations: Windows 10 at 100 % scaling, 8 px frame (GetWindowRect includes it) and a 23 px caption;
a GNOME-like Linux desktop, a 64 px dock on the left, a 32 px top panel and a 38 px title bar: windowmove
0 0 then leaves the client area at (64, 70), TMRL's LINUX_X_OFFSET / LINUX_Y_OFFSET defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCREEN = (1280, 720)
DESKTOP = (130, 90, 30, 255)  # BGRA: a dark teal wallpaper
TITLE_BAR = (245, 245, 245, 255)
BORDER = (200, 200, 200, 255)
PANEL = (60, 60, 60, 255)


@dataclass(frozen=True)
class Decorations:
    left: int
    top: int  # frame + title bar
    right: int
    bottom: int
    dock: int = 0  # Linux: the window manager keeps windows right of the dock ...
    panel: int = 0  # ... and below the top panel


DECORATIONS = {"windows": Decorations(8, 31, 8, 8), "linux": Decorations(0, 38, 0, 0, dock=64, panel=32)}


class Window:
    """Outer position (x, y) and client size (w, h); the decorations lie around the client area."""

    def __init__(self, title: str, platform: str, x: int, y: int, w: int, h: int):
        self.title, self.deco = title, DECORATIONS[platform]
        self.x, self.y, self.w, self.h = x, y, w, h

    @property
    def rect(self) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of the whole window, as GetWindowRect."""
        d = self.deco
        return self.x, self.y, self.x + d.left + self.w + d.right, self.y + d.top + self.h + d.bottom

    @property
    def client_origin(self) -> tuple[int, int]:
        return self.x + self.deco.left, self.y + self.deco.top

    def move_outer(self, x: int, y: int, outer_w: int, outer_h: int) -> None:
        d = self.deco
        self.x, self.y = x, y
        self.w, self.h = max(outer_w - d.left - d.right, 1), max(outer_h - d.top - d.bottom, 1)

    def move_frame(self, x: int, y: int) -> None:
        """Where the window manager lets a window go: not over the dock or the panel."""
        self.x, self.y = max(x, self.deco.dock), max(y, self.deco.panel)

    def size_client(self, w: int, h: int) -> None:
        self.w, self.h = max(w, 1), max(h, 1)


def compose(size: tuple[int, int], window: Window | None, client: np.ndarray | None) -> np.ndarray:
    """The whole screen (h, w, 4) BGRA: wallpaper, desktop panels, the window with `client` in its client area."""
    screen = np.empty((size[1], size[0], 4), np.uint8)
    screen[:] = DESKTOP
    if window is not None and client is not None:
        left, top, right, bottom = window.rect
        cx, cy = window.client_origin
        _paste(screen, left, top, np.full((bottom - top, right - left, 4), BORDER, np.uint8))
        _paste(screen, left + window.deco.left, top, np.full((cy - top, window.w, 4), TITLE_BAR, np.uint8))
        _paste(screen, cx, cy, client)
        deco = window.deco
        screen[:deco.panel] = PANEL
        screen[:, :deco.dock] = PANEL
    return screen


def _paste(screen: np.ndarray, x: int, y: int, pixels: np.ndarray) -> None:
    h, w = pixels.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, screen.shape[1]), min(y + h, screen.shape[0])
    if x0 < x1 and y0 < y1:
        screen[y0:y1, x0:x1] = pixels[y0 - y:y1 - y, x0 - x:x1 - x]


def cut(screen: np.ndarray, left: int, top: int, width: int, height: int) -> np.ndarray:
    """A screen rectangle; what lies beyond the screen's edges is black (as BitBlt returns it)."""
    out = np.zeros((height, width, 4), np.uint8)
    out[..., 3] = 255
    _paste(out, -left, -top, screen)
    return out
