"""`GYM:<gymnasium id>`: any Gymnasium environment, lockstep unless `"lockstep": false`.

gymnasium is imported only when the layout is built (it makes the env to read its spaces).
Options: `lockstep`, `steps_per_s` (as for the simulator) and `save_replays` (ignored).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tmrlx.common.errors import ConfigError
from tmrlx.common.kinds.kind import Kind, Options

if TYPE_CHECKING:
    from tmrlx.common.config import Section
    from tmrlx.common.specs import ObsSpec

PREFIX = "GYM:"


def gym_id(interface: str) -> str:
    """`GYM:Pendulum-v1` -> `Pendulum-v1`."""
    return interface[len(PREFIX):]


def spec(env: Section, interface: str) -> ObsSpec:
    """The layout of the env's spaces (one component per Box)."""
    import gymnasium
    from tmrlx.common.specs import spec_from_spaces

    try:
        made = gymnasium.make(gym_id(interface))
    except Exception as e:  # gymnasium raises several types for unknown or broken ids
        raise ConfigError(f"config key 'ENV.RTGYM_INTERFACE' has value {interface!r}: {e}") from None
    try:
        return spec_from_spaces(made.observation_space, made.action_space, env.RTGYM_CONFIG.act_buf_len)
    finally:
        made.close()


GYM = Kind(name="gym", pattern=PREFIX + ".+", accepts=f"'{PREFIX}<gymnasium id>'", spec=spec,
           options=Options("GYM: environment", {"save_replays": False}), lockstep=True, lockstep_option=True)
