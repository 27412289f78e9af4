"""An emulated TrackMania 2020 for rehearsing the real game path on any OS.

`interface_kwargs` `{"emulate": true}` on a TM20* interface runs the real TM20 backends (window
placement, capture, gamepad or keys, the plugin's TCP stream) against `EmulatedGame`: the built-in
simulator behind a desktop, a "Trackmania" window, a virtual gamepad, SendInput / xdotool and the
plugin's server. `emulate: true` takes this OS's branch ("windows" on Windows, else "linux"),
`"windows"` or `"linux"` picks one. See docs/environments.md for what each modelled behaviour is based on.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tmrlx.actor.envs.emulated.game import EmulatedGame
from tmrlx.actor.envs.sim.track import load_track, trajectory_path
from tmrlx.common.errors import ConfigError

__all__ = ["EmulatedGame", "platform_of", "start_game"]


def platform_of(emulate: bool | str) -> str:
    if emulate is True:
        return "windows" if sys.platform == "win32" else "linux"
    return str(emulate)


def start_game(track: str, emulate: bool | str) -> EmulatedGame:
    """The emulated game on a simulator track (name or .json path), its trajectory the default reward file."""
    try:
        loaded = load_track(track)
    except ValueError as e:
        raise ConfigError(f"interface_kwargs 'track': {e}") from None
    shipped = Path(track).with_suffix(".npy") if track.endswith(".json") else trajectory_path(track)
    return EmulatedGame(loaded, platform_of(emulate), trajectory=shipped)
