"""The registry of environment kinds, light half: names, layouts, clocks and options, no environment.

Every `ENV.RTGYM_INTERFACE` value belongs to exactly one kind. The config's schema, the broker and
the learner ask this registry; none of it imports rtgym, cv2 or the actor (gymnasium or a user's
class only when their layout is built). What each kind runs lives in `tmrlx.actor.envs.kinds`.

| kind | names | module |
|---|---|---|
| `trackmania` | `TM20FULL` (or any `TM20*` name not ending in LIDAR/LIDARPROGRESS), `TM20LIDAR`, `TM20LIDARPROGRESS` | `track` |
| `simulator` | `SIMFULL`, `SIMLIDAR`, `SIMLIDARPROGRESS` | `track` |
| `gym` | `GYM:<gymnasium id>` | `gym` |
| `custom` | `package.module:Class` | `custom` |
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tmrlx.common.errors import ConfigError
from tmrlx.common.kinds.custom import CUSTOM
from tmrlx.common.kinds.gym import GYM
from tmrlx.common.kinds.kind import Kind, Options, Timing
from tmrlx.common.kinds.track import SIMULATOR, TRACKMANIA

if TYPE_CHECKING:
    from tmrlx.common.config import Config
    from tmrlx.common.specs import ObsSpec

__all__ = ["CUSTOM", "GYM", "REGISTRY", "SIMULATOR", "TRACKMANIA", "Kind", "Options", "Timing", "interface_problem",
           "kind_of", "spec_from_config"]

REGISTRY: tuple[Kind, ...] = (TRACKMANIA, SIMULATOR, GYM, CUSTOM)


def interface_problem(interface: str) -> str | None:
    """None for an accepted ENV.RTGYM_INTERFACE value, else what was expected (the schema's check)."""
    if any(kind.matches(interface) for kind in REGISTRY):
        return None
    forms = [kind.accepts for kind in REGISTRY]
    return "one of " + ", ".join(forms[:-1]) + " or " + forms[-1]


def kind_of(interface: str) -> Kind:
    """The kind an ENV.RTGYM_INTERFACE value names; a ConfigError lists every accepted form."""
    for kind in REGISTRY:
        if kind.matches(interface):
            return kind
    raise ConfigError(f"config key 'ENV.RTGYM_INTERFACE' has value {interface!r}: expected {interface_problem(interface)}")


def spec_from_config(cfg: Config) -> ObsSpec:
    """The layout the config's interface produces, without starting the environment."""
    return kind_of(cfg.ENV.RTGYM_INTERFACE).spec(cfg.ENV, cfg.ENV.RTGYM_INTERFACE)
