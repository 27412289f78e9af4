"""TrackMania 2020 (`TM20*`) and the built-in simulator (`SIM*`): the same three TMRL layouts.

- `*LIDAR`: speed, then the history of 19 lidar beams;
- `*LIDARPROGRESS`: speed, progress along the reward trajectory, lidar history;
- `*FULL`: speed, gear, rpm, then the image history (grayscale unless `IMG_GRAYSCALE` is false).
As in TMRL, any `TM20…` name that does not end in LIDAR or LIDARPROGRESS (`TM20IMAGES`, ...) is the FULL
layout; the simulator's names are exactly the three `SIM*` ones.
Actions are [gas, brake, steer]. `specs` (NumPy) is imported only when a layout is built, so the
config's name check stays free of it.

Simulator `interface_kwargs` (all optional):
- `lockstep` (bool, default true): virtual clock, each step advances exactly `time_step_duration`
  of simulated time; false: physics follows the wall clock, as in the game;
- `steps_per_s` (number or null): lockstep only, at most this many steps per second of wall time;
- `track` (`"easy"`, `"medium"`, `"hard"` or a track .json path, default `"easy"`);
- `seed` (int or null, default null): jitter the respawn position (+-1 m) and heading (+-3 degrees)
  with this seed; null always respawns exactly on the start line;
- `gamedata` (`"direct"` default, or `"tcp"`: serve the plugin's byte stream on 127.0.0.1:`port`
  and read it back with the real TCP client; real-time only);
- `port` (int, default 0: a free port) for `gamedata: "tcp"`;
- `reward_file` (path, default the track's shipped trajectory);
- `save_replays`: accepted for TMRL compatibility, ignored.
TrackMania `interface_kwargs`: the plugin's `host`/`port`, `reward_file` (default: the data folder's
recorded lap), `save_replays` (ignored), and for rehearsing without the game:
- `emulate` (false, true, `"windows"` or `"linux"`; default false): run the real TM20 code against the
  emulated game (`tmrlx.actor.envs.emulated`); true takes this OS's branch, a string picks the branch
  (Windows: pywin32 window, ViGEm gamepad or SendInput keys; Linux: xdotool, uinput);
- `track` (default `"easy"`): the emulated game's simulator track (as the simulator's `track`); its
  shipped trajectory is the reward file unless `reward_file` is given.
The window is found and placed by the backends (TMRL's way), so there is no window position option.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tmrlx.common.errors import ConfigError
from tmrlx.common.kinds.kind import Kind, Options

if TYPE_CHECKING:
    from tmrlx.common.config import Section
    from tmrlx.common.specs import ObsSpec

LAYOUTS = ("FULL", "LIDAR", "LIDARPROGRESS")
TM_PREFIX, SIM_PREFIX = "TM20", "SIM"
ACT_DIM = 3  # gas, brake, steer
LIDAR_BEAMS = 19


def names(prefix: str) -> tuple[str, ...]:
    return tuple(prefix + layout for layout in LAYOUTS)


def layout_of(interface: str) -> str:
    """FULL, LIDAR or LIDARPROGRESS: TMRL's rule, by the name's ending (anything else is FULL)."""
    return next((layout for layout in ("LIDARPROGRESS", "LIDAR") if interface.endswith(layout)), "FULL")


def spec(env: Section, interface: str) -> ObsSpec:
    """The TMRL layout a TM20* or SIM* name produces, scaled so the networks see values near [0, 1]."""
    from tmrlx.common.specs import Component, ObsSpec

    layout = layout_of(interface)
    hist = env.IMG_HIST_LEN
    speed = Component("speed", (1,), scale=1.0 / 1000.0)
    if layout == "FULL":
        shape = (env.IMG_HEIGHT, env.IMG_WIDTH) if env.IMG_GRAYSCALE else (env.IMG_HEIGHT, env.IMG_WIDTH, 3)
        comps: tuple[Component, ...] = (speed, Component("gear", (1,), scale=0.1), Component("rpm", (1,), scale=1e-4),
                 Component("images", shape, "uint8", hist, scale=1.0 / 256.0))
    else:
        lidar = Component("lidar", (LIDAR_BEAMS,), history=hist, scale=2.0 / env.WINDOW_WIDTH)
        comps = (speed, lidar) if layout == "LIDAR" else (speed, Component("progress", (1,)), lidar)
    return ObsSpec(comps, ACT_DIM, env.RTGYM_CONFIG.act_buf_len)


def _check_sim(opts: Mapping[str, Any]) -> None:
    if opts["gamedata"] not in ("direct", "tcp"):
        raise ConfigError(f"interface_kwargs 'gamedata' has value {opts['gamedata']!r}: expected 'direct' or 'tcp'")
    if opts["gamedata"] == "tcp" and opts["lockstep"]:
        raise ConfigError("interface_kwargs 'gamedata': 'tcp' streams in real time: set 'lockstep': false with it")
    if opts["seed"] is not None and not isinstance(opts["seed"], int):
        raise ConfigError(f"interface_kwargs 'seed' has value {opts['seed']!r}: expected an integer or null")


def _check_tm(opts: Mapping[str, Any]) -> None:
    if opts["emulate"] not in (False, True, "windows", "linux"):
        raise ConfigError(f"interface_kwargs 'emulate' has value {opts['emulate']!r}: expected false, true, "
                          "'windows' or 'linux'")


TRACKMANIA = Kind(
    name="trackmania", pattern=TM_PREFIX + r"\w*", spec=spec,
    accepts=", ".join(names(TM_PREFIX)) + f" (any other {TM_PREFIX}* name, e.g. {TM_PREFIX}IMAGES, is the FULL layout)",
    options=Options("TrackMania", {"save_replays": False, "host": "127.0.0.1", "port": 9000, "reward_file": None,
                                   "emulate": False, "track": "easy"}, _check_tm),
)
SIMULATOR = Kind(
    name="simulator", pattern="|".join(names(SIM_PREFIX)), accepts=", ".join(names(SIM_PREFIX)), spec=spec,
    options=Options("simulator", {"track": "easy", "seed": None, "gamedata": "direct", "port": 0, "reward_file": None,
                                  "save_replays": False}, _check_sim),
    lockstep=True, lockstep_option=True,
)
