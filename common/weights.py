"""The weights contract between the learner, which writes actor weights, and the actors, which run them.

One place for what both sides must agree on (docs/architecture.md, "Weights on the wire"): the
architecture (`Arch`, the `arch` meta), the parameter names, the `meta` that travels with the
weights, and the `.npz` file the learner saves and `tmrlx test`/`expert` read. NumPy only: actor
machines import this module and never import JAX.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tmrlx.common.errors import ConfigError
from tmrlx.common.specs import ObsSpec

ARCH_TYPES = ("mlp", "cnn")
TMRL_CONVS = ((64, 8, 2), (64, 4, 2), (128, 4, 2), (128, 4, 2))  # TMRL's VanillaCNN: (out channels, kernel, stride)

# parameter names: "<layer>/<leaf>", layers conv_i (HWIO kernels), hidden_i, mu, log_std
KERNEL, BIAS = "kernel", "bias"
MU, LOG_STD = "mu", "log_std"
SEP = "/"

REAL = (int, float, np.integer, np.floating)

# the .npz file: the arrays by name, plus these two entries
META_KEY = "__meta__"
VERSION_KEY = "__version__"


class WeightsError(ValueError):
    """Weights that do not fit the architecture or the observation layout; the message says what."""


@dataclass(frozen=True)
class Arch:
    """Network sizes; `to_dict()` is the `arch` meta that travels with the weights."""

    type: str = "mlp"
    hidden: tuple[int, ...] = (256, 256)
    convs: tuple[tuple[int, int, int], ...] = TMRL_CONVS
    log_std_min: float = -20.0
    log_std_max: float = 2.0

    @classmethod
    def for_spec(cls, spec: ObsSpec, hidden: tuple[int, ...] = (256, 256)) -> Arch:
        """TMRL's sizes: the VanillaCNN trunk when the observation has an image, else the lidar MLP."""
        return cls("cnn" if spec.has_image else "mlp", tuple(hidden))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Arch:
        """The `arch` meta as an Arch: missing keys take their defaults, a bad value raises WeightsError naming its key."""
        if not isinstance(d, Mapping):
            raise WeightsError(f"weights meta 'arch' is {d!r}: expected an object")
        default = cls()
        kind = d.get("type", default.type)
        if kind not in ARCH_TYPES:
            raise _bad("type", kind, f"one of {ARCH_TYPES}")
        convs = _items(d.get("convs", default.convs), "convs", "a list of [out_channels, kernel, stride]")
        low, high = _number(d, "log_std_min", default.log_std_min), _number(d, "log_std_max", default.log_std_max)
        if low > high:
            raise _bad("log_std_max", high, f"at least log_std_min ({low})")
        return cls(kind, _sizes(d.get("hidden", default.hidden), "hidden", "a list of layer widths"),
                   tuple(_conv(c, f"convs[{i}]") for i, c in enumerate(convs)),
                   low, high)

    def to_dict(self) -> dict:
        return {"type": self.type, "hidden": list(self.hidden), "convs": [list(c) for c in self.convs],
                "log_std_min": self.log_std_min, "log_std_max": self.log_std_max}


def _bad(key: str, value: Any, expected: str) -> WeightsError:
    return WeightsError(f"weights meta 'arch.{key}' is {value!r}: expected {expected}")


def _items(value: Any, key: str, expected: str) -> list:
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise _bad(key, value, expected)
    return list(value)


def _sizes(value: Any, key: str, expected: str, length: int | None = None) -> tuple[int, ...]:
    """Positive whole numbers (layer widths, a conv's shape), or a WeightsError naming `key`."""
    items = _items(value, key, expected)
    whole = all(isinstance(v, REAL) and not isinstance(v, bool) and float(v).is_integer() and v >= 1 for v in items)
    if not whole or (length is not None and len(items) != length):
        raise _bad(key, value, expected)
    return tuple(int(v) for v in items)


def _conv(value: Any, key: str) -> tuple[int, int, int]:
    out, kernel, stride = _sizes(value, key, "[out_channels, kernel, stride]", 3)
    return out, kernel, stride


def _number(d: Mapping[str, Any], key: str, default: float) -> float:
    value = d.get(key, default)
    if not isinstance(value, REAL) or isinstance(value, bool) or not np.isfinite(value):
        raise _bad(key, value, "a number")
    return float(value)


def conv_name(i: int) -> str:
    return f"conv_{i}"


def hidden_name(i: int) -> str:
    return f"hidden_{i}"


def param_name(layer: str, leaf: str) -> str:
    """`hidden_0` + `kernel` -> `hidden_0/kernel`: the key of one array in the flat weight map."""
    return f"{layer}{SEP}{leaf}"


def actor_layers(arch: Arch) -> list[str]:
    """The actor's layers in evaluation order: the convs (cnn only), the hidden layers, the two heads."""
    convs = [conv_name(i) for i in range(len(arch.convs))] if arch.type == "cnn" else []
    return convs + [hidden_name(i) for i in range(len(arch.hidden))] + [MU, LOG_STD]


def actor_names(arch: Arch) -> set[str]:
    """Every array name the actor's weights hold for `arch`: no more, no fewer."""
    return {param_name(layer, leaf) for layer in actor_layers(arch) for leaf in (KERNEL, BIAS)}


def actor_shapes(spec: ObsSpec, arch: Arch) -> dict[str, tuple[int, ...]]:
    """Every array of the actor's weights with its shape, from the layout and the architecture alone (the broker
    bounds a weights message with it; the Flax actor's parameters have exactly these shapes)."""
    shapes: dict[str, tuple[int, ...]] = {}
    fan_in = sum(int(np.prod(c.obs_shape)) for c in spec.components if not c.is_image) + spec.act_buf_len * spec.act_dim
    image = next((c for c in spec.components if c.is_image), None)
    if arch.type == "cnn" and image is not None:
        h, w = image.shape[:2]
        channels = image.history * (image.shape[2] if len(image.shape) == 3 else 1)
        for i, (out, k, stride) in enumerate(arch.convs):
            shapes[param_name(conv_name(i), KERNEL)], shapes[param_name(conv_name(i), BIAS)] = (k, k, channels, out), (out,)
            h, w, channels = (h - k) // stride + 1, (w - k) // stride + 1, out
        fan_in += h * w * channels
    for i, size in enumerate(arch.hidden):
        shapes[param_name(hidden_name(i), KERNEL)], shapes[param_name(hidden_name(i), BIAS)] = (fan_in, size), (size,)
        fan_in = size
    for head in (MU, LOG_STD):
        shapes[param_name(head, KERNEL)], shapes[param_name(head, BIAS)] = (fan_in, spec.act_dim), (spec.act_dim,)
    return shapes


def meta(spec: ObsSpec, arch: Arch) -> dict:
    """The `meta` published with the weights: how to rebuild the actor."""
    return {"arch": arch.to_dict(), "spec": spec.to_dict()}


def parse_meta(meta: Mapping[str, Any]) -> tuple[Arch, ObsSpec]:
    """The reverse of `meta`, checked: a WeightsError that says what is wrong rather than a KeyError later."""
    try:
        arch = meta["arch"]
        spec = ObsSpec.from_dict(meta["spec"])
    except (KeyError, TypeError, ValueError) as e:
        raise WeightsError(f"weights meta must hold 'arch' and 'spec' ({type(e).__name__}: {e})") from None
    return Arch.from_dict(arch), spec


def save(path: Path, version: int, arrays: Mapping[str, np.ndarray], meta: Mapping) -> None:
    """Write weights as an `.npz` (no pickle): the float32 arrays plus JSON meta and the version.

    Written to a temporary file then renamed, so a reader never sees half a file.
    """
    entries: dict[str, Any] = {k: np.asarray(v, np.float32) for k, v in arrays.items()}
    entries.update({META_KEY: np.array(json.dumps(meta)), VERSION_KEY: np.array(int(version))})
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **entries)
    tmp.replace(path)


def load(path: Path) -> tuple[int, dict[str, np.ndarray], dict]:
    """Read an `.npz` weights file written by `save`, refusing pickled objects: (version, arrays, meta)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        raise WeightsError(f"cannot read weights file {path}: {e}") from None
    if META_KEY not in arrays:
        raise WeightsError(f"weights file {path} has no {META_KEY!r} entry (arch and observation layout)")
    try:
        meta = json.loads(str(arrays.pop(META_KEY)))
    except json.JSONDecodeError as e:
        raise WeightsError(f"weights file {path}: {META_KEY!r} is not JSON ({e.msg})") from None
    version = int(arrays.pop(VERSION_KEY, -1))
    return version, arrays, meta


def find(run_name: str, weights_dir: Path, given: Path | None) -> Path | None:
    """The weights file to use: `given` (a file, or the newest .npz in a folder), else the newest of `run_name`'s.

    The learner writes `RUN_NAME.npz` (each checkpoint) and `RUN_NAME_<version>.npz` (`SAVE_MODEL_EVERY`)
    in `weights_dir`; None when there is none.
    """
    if given is not None:
        if given.is_dir():
            found = sorted(given.glob("*.npz"), key=lambda p: p.stat().st_mtime)
            if not found:
                raise ConfigError(f"--weights {given}: the folder holds no .npz weights file")
            return found[-1]
        if not given.is_file():
            raise ConfigError(f"--weights {given}: no such file")
        return given
    ours = re.compile(re.escape(run_name) + r"(_\d+)?\.npz")
    found = sorted((p for p in weights_dir.glob("*.npz") if ours.fullmatch(p.name)), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None
