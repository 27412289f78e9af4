"""`package.module:Class`: a user's rtgym `RealTimeGymInterface`, built with `interface_kwargs`, in real time.

The class is imported only when its layout is built or its interface made; its kwargs are its own.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from tmrlx.common.errors import ConfigError
from tmrlx.common.kinds.gym import PREFIX as GYM_PREFIX
from tmrlx.common.kinds.kind import Kind

if TYPE_CHECKING:
    from tmrlx.common.config import Section
    from tmrlx.common.specs import ObsSpec


def load_interface_class(interface: str) -> type:
    """Import a user's `package.module:Class` rtgym interface, with a clear error."""
    module, _, attr = interface.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"config key 'ENV.RTGYM_INTERFACE' has value {interface!r}: cannot import it ({e})") from None


def spec(env: Section, interface: str) -> ObsSpec:
    """The layout of the interface's spaces: the class is built with the kwargs (its `__init__` must not need the device)."""
    from tmrlx.common.specs import spec_from_spaces

    iface = load_interface_class(interface)(**dict(env.RTGYM_CONFIG.interface_kwargs))
    return spec_from_spaces(iface.get_observation_space(), iface.get_action_space(), env.RTGYM_CONFIG.act_buf_len)


CUSTOM = Kind(name="custom", pattern=rf"(?!{GYM_PREFIX})[A-Za-z_][\w.]*:[A-Za-z_]\w*",
              accepts="'package.module:InterfaceClass'", spec=spec)
