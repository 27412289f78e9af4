"""Clocks: every sleep and time reading of an environment goes through one, so lockstep is exact.

`WallClock` is real time. `VirtualClock` only moves when slept on (integer nanoseconds, so long
lockstep runs stay bit-identical); the simulator advances its physics to the clock's time.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class WallClock:
    def now(self) -> float:
        return time.perf_counter()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class VirtualClock:
    def __init__(self) -> None:
        self._ns = 0

    def now(self) -> float:
        return self._ns * 1e-9

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._ns += int(round(seconds * 1e9))
