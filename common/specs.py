"""Observation and action layouts, shared by actor, broker and learner (each kind's in `common.kinds`).

An rtgym observation is a tuple of components followed by the last `act_buf_len` actions.
A component with `history > 1` is a stack of the last `history` frames, newest last; actors send
only the newest frame per step and the learner's replay rebuilds the stack. Every component
has a `scale` so actor and learner feed the networks the same normalised floats.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from tmrlx.common.errors import ConfigError


@dataclass(frozen=True)
class Component:
    """One part of the observation; `shape` is one frame, without the history axis."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    history: int = 1
    scale: float = 1.0

    @property
    def is_image(self) -> bool:
        return self.dtype == "uint8" and len(self.shape) >= 2

    @property
    def obs_shape(self) -> tuple[int, ...]:
        """Shape in the rtgym observation (with the history axis when there is one)."""
        return (self.history, *self.shape) if self.history > 1 else self.shape


@dataclass(frozen=True)
class ObsSpec:
    """The full layout: observation components, action size and action-buffer length."""

    components: tuple[Component, ...]
    act_dim: int
    act_buf_len: int

    @property
    def has_image(self) -> bool:
        return any(c.is_image for c in self.components)

    @property
    def max_history(self) -> int:
        return max([c.history for c in self.components] + [self.act_buf_len, 1])

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> ObsSpec:
        comps = tuple(Component(**{**c, "shape": tuple(c["shape"])}) for c in d["components"])
        return cls(comps, int(d["act_dim"]), int(d["act_buf_len"]))

    def hash(self) -> str:
        """Stable digest: an actor whose layout differs from the learner's is refused."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def split(self, obs: Sequence[Any]) -> dict[str, np.ndarray]:
        """rtgym observation tuple -> {component: array, "act_buf": (act_buf_len, act_dim)}."""
        n = len(self.components)
        if len(obs) != n + self.act_buf_len:
            raise ValueError(f"observation has {len(obs)} parts, the spec expects {n} + {self.act_buf_len} actions")
        out = {c.name: np.asarray(o, dtype=c.dtype).reshape(c.obs_shape) for c, o in zip(self.components, obs)}
        acts = [np.asarray(a, np.float32).reshape(self.act_dim) for a in obs[n:]]
        out["act_buf"] = np.stack(acts) if acts else np.zeros((0, self.act_dim), np.float32)
        return out

    def newest(self, obs: Sequence[Any]) -> dict[str, np.ndarray]:
        """What is new in an observation: the newest frame of each component (sent on the wire)."""
        parts = self.split(obs)
        return {c.name: parts[c.name][-1] if c.history > 1 else parts[c.name] for c in self.components}

    def normalise(self, parts: Mapping[str, Any]) -> dict[str, Any]:
        """Scaled float32 network inputs; works on NumPy and JAX arrays alike (batched or not)."""
        out = {c.name: parts[c.name].astype(np.float32) * np.float32(c.scale) for c in self.components}
        out["act_buf"] = parts["act_buf"].astype(np.float32)
        return out


def spec_from_spaces(obs_space: Any, act_space: Any, act_buf_len: int) -> ObsSpec:
    """Layout of a generic environment: each Box of a (Tuple) observation space is one component."""
    from gymnasium import spaces

    boxes = obs_space.spaces if isinstance(obs_space, spaces.Tuple) else (obs_space,)
    comps = []
    for i, box in enumerate(boxes):
        if not isinstance(box, spaces.Box):
            raise ConfigError(f"observation component {i} is a {type(box).__name__}: only Box spaces are supported")
        dtype = "uint8" if box.dtype == np.uint8 else "float32"
        comps.append(Component(f"obs{i}" if len(boxes) > 1 else "obs", tuple(box.shape), dtype))
    if not isinstance(act_space, spaces.Box) or len(act_space.shape) != 1:
        raise ConfigError("the action space must be a 1-D Box (continuous actions)")
    return ObsSpec(tuple(comps), int(act_space.shape[0]), act_buf_len)
