"""The emulated TrackMania 2020: the simulator behind the game's OS boundary, in real time.

A 60 Hz game loop advances the simulated world (wall clock) and reads the input state once per frame, as
the game does: a button or key pressed and released between two frames is never seen. Per frame:
- respawn (gamepad B, or the respawn key held) on its rising edge, unless the finish pop-up is up;
- the finish pop-up appears when the car crosses the finish line and is drawn over the client area; it
  closes with gamepad A or a left click on its button;
- the car follows the triggers (a pedal pressed past `sim.world.PEDAL_ON`: the game has no analog pedals) and the
  stick (analog), or the keys, as TMRL maps them;
- keys reach the game only while its window is focused (the foreground window / xdotool windowfocus).
The OpenPlanet plugin is the simulator's TCP server (11 floats per frame while driving), with faults for
tests: `stall` (connected, silent), `outage` (the plugin gone, back later), `drop` (connections closed).
"""

from __future__ import annotations

import itertools
import logging
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tmrlx.actor.envs.backends.system import System
from tmrlx.actor.envs.clock import WallClock
from tmrlx.actor.envs.emulated.desktop import SCREEN, Window, compose, cut
from tmrlx.actor.envs.emulated.devices import XUSB_BUTTON, MssCapture, PadState, Vgamepad, Xdotool
from tmrlx.actor.envs.emulated.win32 import User32, Win32Gui
from tmrlx.actor.envs.sim.render import Renderer
from tmrlx.actor.envs.sim.server import GameDataServer
from tmrlx.actor.envs.sim.track import Track
from tmrlx.actor.envs.sim.world import SimWorld

FPS = 60
START_WINDOW = (120, 90, 800, 450)  # where a user left the window: outer x, y, client w, h (not the config's size)
BUTTON = (0.45, 0.60, 0.70, 0.90)  # the pop-up's button, fractions of the client area: holds both TMRL click points
POPUP = (0.20, 0.20, 0.80, 0.92)
log = logging.getLogger("tmrlx.actor")
_handles = itertools.count(0x30A1C, 0x10)


class EmulatedGame:
    def __init__(self, track: Track, platform: str = "windows", *, trajectory: Path | None = None,
                 gamepad_driver: bool = True, window: bool = True, screen: tuple[int, int] = SCREEN):
        self.platform, self.gamepad_driver, self.screen_size = platform, gamepad_driver, screen
        self.trajectory = trajectory
        self.lock = threading.RLock()
        self.world = SimWorld(track, WallClock())
        self.window = Window("Trackmania", platform, *START_WINDOW) if window else None
        self.hwnd = next(_handles)
        self.focused = False
        self.pads: dict[int, PadState] = {}
        self.keys: set[str] = set()
        self.clicks: list[tuple[int, int]] = []
        self.popup = False
        self.frame = 0
        self.respawns = 0
        self._respawn_held = False
        self._finish_shown = False
        self._shown = self.world.state()
        self._renderer: Renderer | None = None
        self._cache: tuple[Any, np.ndarray] | None = None
        self._silent_until = 0.0
        self._stop = threading.Event()
        self.server = GameDataServer(self.world, period=1.0 / FPS, live=self._live).start()
        self.port = self.server.port
        self._thread = threading.Thread(target=self._loop, name="emulated-trackmania", daemon=True)
        self._thread.start()
        self.system = System(platform, lambda: MssCapture(self), lambda: Vgamepad(self),
                             win32gui=Win32Gui(self) if platform == "windows" else None,
                             user32=User32(self) if platform == "windows" else None,
                             xdotool=Xdotool(self) if platform == "linux" else None, game=self)

    # inputs (from the device objects) ------------------------------------------------------------
    def plug_pad(self) -> int:
        with self.lock:
            pad = len(self.pads)
            self.pads[pad] = PadState()
            return pad

    def pad_report(self, pad: int, state: PadState) -> None:
        with self.lock:
            self.pads[pad] = state

    def key(self, name: str, down: bool) -> None:
        with self.lock:
            if self.focused:
                (self.keys.add if down else self.keys.discard)(name)

    def click(self, x: int, y: int) -> None:
        with self.lock:
            window = self.window
            if window is None:
                return
            cx, cy = window.client_origin
            if 0 <= x - cx < window.w and 0 <= y - cy < window.h:
                self.focused = True  # a click on a window brings it to the front
                self.clicks.append((x - cx, y - cy))

    def focus(self) -> None:
        with self.lock:
            self.focused = True

    # the game loop --------------------------------------------------------------------------------
    def _loop(self) -> None:
        period = 1.0 / FPS
        next_frame = self.world.clock.now()
        while not self._stop.is_set():
            self._frame()
            next_frame += period
            self._stop.wait(max(next_frame - self.world.clock.now(), 0.0))

    def _on_button(self, point: tuple[int, int]) -> bool:
        assert self.window is not None
        x0, y0, x1, y1 = BUTTON
        return x0 <= point[0] / self.window.w <= x1 and y0 <= point[1] / self.window.h <= y1

    def _frame(self) -> None:
        with self.lock:
            pads = list(self.pads.values())
            keys = set(self.keys)
            clicks, self.clicks = self.clicks, []
            buttons = 0
            for pad in pads:
                buttons |= pad.buttons
            if self.popup and (buttons & XUSB_BUTTON.XUSB_GAMEPAD_A or any(self._on_button(c) for c in clicks)):
                self.popup = False
            respawn = bool(buttons & XUSB_BUTTON.XUSB_GAMEPAD_B) or "respawn" in keys
            if respawn and not self._respawn_held and not self.popup:
                self.world.respawn()
                self._finish_shown = False
                self.respawns += 1
            self._respawn_held = respawn
            gas = max([p.right_trigger for p in pads] + [float("gas" in keys)])
            brake = max([p.left_trigger for p in pads] + [float("brake" in keys)])
            steer = sum(p.stick_x for p in pads) + float("right" in keys) - float("left" in keys)
            self.world.control(gas, brake, min(max(steer, -1.0), 1.0))
            if self.world.finished and not self._finish_shown:
                self.popup = self._finish_shown = True
            self._shown = self.world.state()
            self.frame += 1

    # the screen -----------------------------------------------------------------------------------
    def _client(self) -> np.ndarray:
        """The game image at the last frame, at the window's client size, with the pop-up over it."""
        assert self.window is not None
        w, h = self.window.w, self.window.h
        if self._renderer is None or self._renderer.size != (w, h):
            self._renderer = Renderer(self.world.track, w, h)
        image = self._renderer.render(self._shown).copy()
        if self.popup:
            x0, y0, x1, y1 = POPUP
            cv2.rectangle(image, (int(x0 * w), int(y0 * h)), (int(x1 * w), int(y1 * h)), (90, 40, 20, 255), -1)
            x0, y0, x1, y1 = BUTTON
            cv2.rectangle(image, (int(x0 * w), int(y0 * h)), (int(x1 * w), int(y1 * h)), (40, 200, 240, 255), -1)
        return image

    def grab(self, left: int, top: int, width: int, height: int) -> np.ndarray:
        """What the screen shows in this rectangle now (BGRA)."""
        with self.lock:
            window = self.window
            key = (self.frame, self.popup, window.rect if window is not None else None)
            if self._cache is None or self._cache[0] != key:
                client = self._client() if window is not None else None
                self._cache = (key, compose(self.screen_size, window, client))
            return cut(self._cache[1], left, top, width, height)

    # the plugin's faults --------------------------------------------------------------------------
    def _live(self) -> bool:
        return self.world.clock.now() >= self._silent_until

    def stall(self, seconds: float) -> None:
        """The plugin stays connected but sends nothing (the game paused, a map loading)."""
        self._silent_until = self.world.clock.now() + seconds

    def outage(self, seconds: float) -> None:
        """The plugin goes away (OpenPlanet reloading it) and comes back on the same port after `seconds`."""
        self.server.stop()
        timer = threading.Timer(seconds, self._restart)
        timer.daemon = True
        timer.start()

    def _restart(self) -> None:
        if not self._stop.is_set():
            self.server.start()

    def drop(self) -> None:
        """The plugin closes its connections (clients must reconnect)."""
        self.server.drop()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self.server.stop()
