"""What one kind of environment is, as far as the config and the observation layout go.

A kind knows which `ENV.RTGYM_INTERFACE` names it answers to, the layout those names produce,
the clock it runs on and the `interface_kwargs` it understands. What it runs (rtgym interfaces,
backends, drivers) is the actor's half: `tmrlx.actor.envs.kinds`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from tmrlx.common.errors import ConfigError

if TYPE_CHECKING:
    from tmrlx.common.config import Section
    from tmrlx.common.specs import ObsSpec

SpecBuilder = Callable[["Section", str], "ObsSpec"]  # (cfg.ENV, interface name) -> layout


@dataclass(frozen=True)
class Options:
    """The `interface_kwargs` a kind understands: every key's default, and a check of the values together."""

    what: str  # how error messages call the options: "simulator", "TrackMania", ...
    defaults: Mapping[str, Any]
    check: Callable[[Mapping[str, Any]], None] | None = None

    def resolve(self, kwargs: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
        """`kwargs` over the defaults (and `extra` defaults); unknown keys or bad values are a ConfigError."""
        defaults = {**self.defaults, **extra}
        unknown = sorted(set(kwargs) - set(defaults))
        if unknown:
            raise ConfigError(f"config key 'ENV.RTGYM_CONFIG.interface_kwargs' has unknown {self.what} option(s) "
                              f"{unknown}: expected some of {sorted(defaults)}")
        opts = {**defaults, **kwargs}
        if self.check is not None:
            self.check(opts)
        return opts


class Timing(NamedTuple):
    """How an environment's time runs: lockstep on a virtual clock (optionally paced) or real time."""

    lockstep: bool
    steps_per_s: float | None = None


@dataclass(frozen=True)
class Kind:
    """One kind of environment: the names it accepts, its layout, its clock and its options."""

    name: str  # "trackmania", "simulator", "gym", "custom": the key of the actor's half too
    pattern: str  # regular expression an ENV.RTGYM_INTERFACE value must match in full
    accepts: str  # the accepted names, for error messages
    spec: SpecBuilder
    options: Options | None = None  # None: interface_kwargs go unchecked to the user's class
    lockstep: bool = False  # the default clock: lockstep, or real time
    lockstep_option: bool = False  # interface_kwargs "lockstep" may switch the clock ("steps_per_s" paces lockstep)

    def matches(self, interface: str) -> bool:
        return re.fullmatch(self.pattern, interface) is not None

    def interface_options(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """`interface_kwargs` completed with defaults and checked (a user's class gets them as they are)."""
        if self.options is None:
            return dict(kwargs)
        clock = {"lockstep": self.lockstep, "steps_per_s": None} if self.lockstep_option else {}
        opts = self.options.resolve(kwargs, clock)
        if self.lockstep_option:
            _check_pace(opts["steps_per_s"])
        return opts

    def timing(self, kwargs: Mapping[str, Any]) -> Timing:
        """The clock this kind runs on under these `interface_kwargs`."""
        if not self.lockstep_option:
            return Timing(self.lockstep)
        opts = self.interface_options(kwargs)
        return Timing(bool(opts["lockstep"]), opts["steps_per_s"])


def _check_pace(pace: Any) -> None:
    if pace is not None and (isinstance(pace, bool) or not isinstance(pace, (int, float)) or pace <= 0):
        raise ConfigError(f"interface_kwargs 'steps_per_s' has value {pace!r}: expected a number > 0 or null")
