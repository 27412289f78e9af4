"""Driving the game: TMRL's virtual gamepad and keyboard mappings, with inputs held long enough to be seen.

The game reads its inputs once per rendered frame, so a button pressed and released in the same instant
is never seen: respawn (gamepad B, Delete / BackSpace) and closing the finish pop-up (gamepad A) are held
for HOLD_S (TMRL's 0.1 s) on the backend's clock. The keyboard closes the pop-up with a mouse click on it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from tmrlx.actor.envs.backends import sendinput
from tmrlx.actor.envs.clock import Clock
from tmrlx.common.errors import ConfigError

HOLD_S = 0.1
NO_VIGEM = ("the virtual gamepad needs the ViGEmBus driver (vgamepad: {error}). Install ViGEmBus from "
            "https://github.com/nefarius/ViGEmBus/releases (vgamepad's installer normally does it), restart, "
            "or set VIRTUAL_GAMEPAD to false to drive with the keyboard")
NO_UINPUT = ("the virtual gamepad creates a uinput device (vgamepad: {error}). Make /dev/uinput writable for your "
             "user (docs/environments.md: a udev rule and the input group), or set VIRTUAL_GAMEPAD to false to "
             "drive with xdotool keys")


class GamepadController:
    """vgamepad's Xbox 360 pad: gas -> right trigger, brake -> left trigger, steer -> left stick x; B respawns, A
    closes the pop-up."""

    def __init__(self, vgamepad: Callable[[], Any], clock: Clock, platform: str):
        try:
            self.vg = vgamepad()
            self.pad = self.vg.VX360Gamepad()
        except Exception as e:  # VIGEM_ERROR_BUS_NOT_FOUND on Windows, OSError on a locked /dev/uinput
            advice = NO_VIGEM if platform == "windows" else NO_UINPUT
            raise ConfigError(advice.format(error=f"{type(e).__name__}: {e}")) from None
        self.clock = clock

    def apply(self, gas: float, brake: float, steer: float) -> None:
        self.pad.right_trigger_float(value_float=min(max(gas, 0.0), 1.0))
        self.pad.left_trigger_float(value_float=min(max(brake, 0.0), 1.0))
        self.pad.left_joystick_float(x_value_float=min(max(steer, -1.0), 1.0), y_value_float=0.0)
        self.pad.update()

    def _hold(self, button: Any) -> None:
        self.pad.press_button(button=button)
        self.pad.update()
        self.clock.sleep(HOLD_S)
        self.pad.release_button(button=button)
        self.pad.update()

    def respawn(self) -> None:
        self._hold(self.vg.XUSB_BUTTON.XUSB_GAMEPAD_B)

    def close_popup(self) -> None:
        self._hold(self.vg.XUSB_BUTTON.XUSB_GAMEPAD_A)

    def close(self) -> None:
        self.pad.reset()
        self.pad.update()


class KeyboardController(ABC):
    """TMRL's binary keys: gas > 0, brake > 0, steer > 0.5 right, < -0.5 left; only changes are sent."""

    def __init__(self, clock: Clock, popup_point: tuple[int, int]):
        self.clock, self.popup_point = clock, popup_point
        self.down: set[str] = set()

    @abstractmethod
    def _key(self, name: str, down: bool) -> None: ...

    @abstractmethod
    def _click(self, x: int, y: int) -> None: ...

    def apply(self, gas: float, brake: float, steer: float) -> None:
        wanted = {"gas": gas > 0, "brake": brake > 0, "right": steer > 0.5, "left": steer < -0.5}
        for name, down in wanted.items():
            if down != (name in self.down):
                self._key(name, down)
                (self.down.add if down else self.down.discard)(name)

    def respawn(self) -> None:
        self._key("respawn", True)
        self.clock.sleep(HOLD_S)
        self._key("respawn", False)

    def close_popup(self) -> None:
        self._click(*self.popup_point)

    def close(self) -> None:
        self.apply(0.0, 0.0, 0.0)


class SendInputKeyboard(KeyboardController):
    """Windows: W/S/A/D and Delete by scan code through user32.SendInput; a left click closes the pop-up."""

    SCANS = {"gas": (0x11, False), "brake": (0x1F, False), "left": (0x1E, False), "right": (0x20, False),
             "respawn": (0x53, True)}  # W, S, A, D; Delete is an extended key

    def __init__(self, user32: Any, clock: Clock, popup_point: tuple[int, int]):
        super().__init__(clock, popup_point)
        self.user32 = user32

    def _key(self, name: str, down: bool) -> None:
        scan, extended = self.SCANS[name]
        sendinput.send(self.user32, [sendinput.key_event(scan, up=not down, extended=extended)])

    def _click(self, x: int, y: int) -> None:
        sendinput.send(self.user32, sendinput.click_events(self.user32, x, y))


class XdotoolKeyboard(KeyboardController):
    """Linux (Proton): arrow keys and BackSpace with xdotool keydown/keyup; mousemove + click closes the pop-up."""

    KEYSYMS = {"gas": "Up", "brake": "Down", "left": "Left", "right": "Right", "respawn": "BackSpace"}

    def __init__(self, xdotool: Callable[[Sequence[str]], str], clock: Clock, popup_point: tuple[int, int]):
        super().__init__(clock, popup_point)
        self.xdotool = xdotool

    def _key(self, name: str, down: bool) -> None:
        self.xdotool(["keydown" if down else "keyup", self.KEYSYMS[name]])

    def _click(self, x: int, y: int) -> None:
        self.xdotool(["mousemove", str(x), str(y), "click", "1"])
