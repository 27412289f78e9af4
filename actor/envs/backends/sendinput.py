"""Windows' `SendInput` with ctypes: the INPUT structures and the two kinds of events TMRL sends.

Field types have fixed widths (DWORD 32-bit, LONG 32-bit, WORD 16-bit, ULONG_PTR pointer-sized) so the
structures are the same on every OS: the emulated game reads exactly what Windows would.
Constants and layouts: Microsoft's winuser.h documentation (INPUT, KEYBDINPUT, MOUSEINPUT).
"""

from __future__ import annotations

import ctypes
from typing import Any

INPUT_MOUSE, INPUT_KEYBOARD = 0, 1
KEYEVENTF_EXTENDEDKEY, KEYEVENTF_KEYUP, KEYEVENTF_SCANCODE = 0x0001, 0x0002, 0x0008
MOUSEEVENTF_MOVE, MOUSEEVENTF_LEFTDOWN, MOUSEEVENTF_LEFTUP, MOUSEEVENTF_ABSOLUTE = 0x0001, 0x0002, 0x0004, 0x8000
SM_CXSCREEN, SM_CYSCREEN = 0, 1
ABSOLUTE_MAX = 65535  # normalised absolute mouse coordinates span 0..65535 over the primary screen


class KEYBDINPUT(ctypes.Structure):
    _fields_ = [("wVk", ctypes.c_uint16), ("wScan", ctypes.c_uint16), ("dwFlags", ctypes.c_uint32),
                ("time", ctypes.c_uint32), ("dwExtraInfo", ctypes.c_size_t)]


class MOUSEINPUT(ctypes.Structure):
    _fields_ = [("dx", ctypes.c_int32), ("dy", ctypes.c_int32), ("mouseData", ctypes.c_uint32),
                ("dwFlags", ctypes.c_uint32), ("time", ctypes.c_uint32), ("dwExtraInfo", ctypes.c_size_t)]


class HARDWAREINPUT(ctypes.Structure):
    _fields_ = [("uMsg", ctypes.c_uint32), ("wParamL", ctypes.c_uint16), ("wParamH", ctypes.c_uint16)]


class _EVENT(ctypes.Union):
    _fields_ = [("mi", MOUSEINPUT), ("ki", KEYBDINPUT), ("hi", HARDWAREINPUT)]


class INPUT(ctypes.Structure):
    _anonymous_ = ("event",)
    _fields_ = [("type", ctypes.c_uint32), ("event", _EVENT)]


def key_event(scan: int, up: bool, extended: bool = False) -> INPUT:
    """A key by its scan code (what games read), pressed or released."""
    flags = KEYEVENTF_SCANCODE | (KEYEVENTF_KEYUP if up else 0) | (KEYEVENTF_EXTENDEDKEY if extended else 0)
    return INPUT(type=INPUT_KEYBOARD, ki=KEYBDINPUT(wVk=0, wScan=scan, dwFlags=flags))


def click_events(user32: Any, x: int, y: int) -> list[INPUT]:
    """Move the cursor to screen pixel (x, y), then press and release the left button."""
    width, height = user32.GetSystemMetrics(SM_CXSCREEN), user32.GetSystemMetrics(SM_CYSCREEN)
    dx, dy = round(x * ABSOLUTE_MAX / max(width - 1, 1)), round(y * ABSOLUTE_MAX / max(height - 1, 1))
    move = INPUT(type=INPUT_MOUSE, mi=MOUSEINPUT(dx=dx, dy=dy, dwFlags=MOUSEEVENTF_MOVE | MOUSEEVENTF_ABSOLUTE))
    return [move] + [INPUT(type=INPUT_MOUSE, mi=MOUSEINPUT(dwFlags=f)) for f in (MOUSEEVENTF_LEFTDOWN, MOUSEEVENTF_LEFTUP)]


def send(user32: Any, events: list[INPUT]) -> None:
    """One SendInput call; Windows inserts fewer events when another program blocks input (UIPI)."""
    array = (INPUT * len(events))(*events)
    sent = user32.SendInput(len(events), array, ctypes.sizeof(INPUT))
    if sent != len(events):
        raise OSError(f"SendInput inserted {sent} of {len(events)} input events: run tmrlx with the same "
                      "privileges as the game (an elevated game ignores input from a normal process)")
