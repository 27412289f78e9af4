"""The four things a track interface is built on; TrackMania and the simulator each provide them.

- screen: `grab()` -> BGRA frame (h, w, 4) uint8 of the game window (mss/win32 style);
- game data: `retrieve(timeout)` -> the 11 float32 of TMRL's OpenPlanet plugin (see `gamedata.FIELDS`),
  `NoGameData` when none comes in time;
- controller: `apply(gas, brake, steer)`, each in [-1, 1] as the policy outputs them (gas/brake act when > 0),
  `respawn()` (gamepad B / Delete key in the game) and `close_popup()` (the game's finish pop-up);
- clock: `now()` / `sleep(s)` (wall clock, or the simulator's virtual lockstep clock).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from tmrlx.actor.envs.clock import Clock


class Screen(Protocol):
    def grab(self) -> np.ndarray: ...


class GameData(Protocol):
    def retrieve(self, timeout: float = 10.0) -> np.ndarray: ...


class Controller(Protocol):
    def apply(self, gas: float, brake: float, steer: float) -> None: ...

    def respawn(self) -> None: ...

    def close_popup(self) -> None: ...


@dataclass
class Backends:
    screen: Screen
    gamedata: GameData
    controller: Controller
    clock: Clock
    game: Any = None  # the emulated game the other parts talk to (closed last), None on the real game

    def close(self) -> None:
        for part in (self.screen, self.gamedata, self.controller, self.game):
            close = getattr(part, "close", None)
            if close is not None:
                close()
