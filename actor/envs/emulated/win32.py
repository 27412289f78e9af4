"""pywin32's `win32gui` and ctypes' `user32`, as the emulated game answers them.

Shapes from pywin32 (win32gui.FindWindow returns 0 when no window matches; rectangles are 4-tuples,
GetClientRect's origin is (0, 0); MoveWindow takes the outer rectangle) and from Microsoft's
SendInput/GetSystemMetrics documentation (keyboard events by scan code, normalised absolute mouse
coordinates 0..65535). Keys reach the game only while its window is the foreground window.
"""

from __future__ import annotations

import ctypes
from typing import Any

from tmrlx.actor.envs.backends import sendinput as si

SCANCODES = {(0x11, False): "gas", (0x1F, False): "brake", (0x1E, False): "left", (0x20, False): "right",
             (0x53, True): "respawn"}  # W, S, A, D, Delete (extended): TMRL's Windows keys


class Win32Gui:
    def __init__(self, game: Any):
        self.game = game

    def _window(self, hwnd: int) -> Any:
        if self.game.window is None or hwnd != self.game.hwnd:
            raise OSError(1400, "Invalid window handle.")  # pywintypes.error (1400, ..., 'Invalid window handle.')
        return self.game.window

    def FindWindow(self, class_name: str | None, title: str | None) -> int:  # noqa: N802 (pywin32's names)
        window = self.game.window
        return self.game.hwnd if window is not None and title in (None, window.title) else 0

    def GetWindowRect(self, hwnd: int) -> tuple[int, int, int, int]:  # noqa: N802
        with self.game.lock:
            return self._window(hwnd).rect

    def GetClientRect(self, hwnd: int) -> tuple[int, int, int, int]:  # noqa: N802
        with self.game.lock:
            window = self._window(hwnd)
            return 0, 0, window.w, window.h

    def ClientToScreen(self, hwnd: int, point: tuple[int, int]) -> tuple[int, int]:  # noqa: N802
        with self.game.lock:
            cx, cy = self._window(hwnd).client_origin
            return cx + point[0], cy + point[1]

    def MoveWindow(self, hwnd: int, x: int, y: int, width: int, height: int, repaint: bool) -> None:  # noqa: N802
        with self.game.lock:
            self._window(hwnd).move_outer(x, y, width, height)

    def SetForegroundWindow(self, hwnd: int) -> None:  # noqa: N802
        self._window(hwnd)
        self.game.focus()


class User32:
    def __init__(self, game: Any):
        self.game = game
        self.cursor = (0, 0)

    def GetSystemMetrics(self, index: int) -> int:  # noqa: N802
        return self.game.screen_size[index]

    def SendInput(self, count: int, inputs: Any, size: int) -> int:  # noqa: N802
        if size != ctypes.sizeof(si.INPUT):
            return 0  # Windows rejects a wrong cbSize (ERROR_INVALID_PARAMETER)
        width, height = self.game.screen_size
        for event in inputs[:count]:
            if event.type == si.INPUT_KEYBOARD:
                ki = event.ki
                name = SCANCODES.get((ki.wScan, bool(ki.dwFlags & si.KEYEVENTF_EXTENDEDKEY)))
                if ki.dwFlags & si.KEYEVENTF_SCANCODE and name is not None:
                    self.game.key(name, not ki.dwFlags & si.KEYEVENTF_KEYUP)
            elif event.type == si.INPUT_MOUSE:
                mi = event.mi
                if mi.dwFlags & si.MOUSEEVENTF_MOVE and mi.dwFlags & si.MOUSEEVENTF_ABSOLUTE:
                    self.cursor = (round(mi.dx * (width - 1) / si.ABSOLUTE_MAX), round(mi.dy * (height - 1) / si.ABSOLUTE_MAX))
                if mi.dwFlags & si.MOUSEEVENTF_LEFTUP:
                    self.game.click(*self.cursor)
        return count
