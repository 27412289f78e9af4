"""The devices the learner trains on: one, or several in data parallel over a one-axis `jax.sharding.Mesh`.

With several devices XLA's SPMD partitioner runs each fused update block on all of them: the parameters, the
optimizer states and the replay memory are replicated on every device, and each sampled batch is split along the
mesh's `batch` axis, so every device runs the forward and backward passes on its share and XLA all-reduces the
losses and gradients; every replica then applies the same update. The replay memory is replicated rather than split
by rows so that sampling stays local: a batch drawn uniformly from rows spread over the devices would need a
cross-device gather every update. The price is one copy of the memory per device (1M lidar rows are well under
1 GiB; 1M 64x64 grayscale frames about 4 GiB). One device is the single-device program exactly, with no mesh.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, TypeVar

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tmrlx.common.config import Config
from tmrlx.common.errors import ConfigError

log = logging.getLogger("tmrlx.learner")
BATCH_AXIS = "batch"
T = TypeVar("T")


def pick_device(cfg: Config) -> jax.Device:
    """The GPU when `CUDA_TRAINING` and one is visible, else the CPU; says so when a GPU was asked for but absent."""
    if cfg.CUDA_TRAINING:
        try:
            return jax.devices("gpu")[0]
        except RuntimeError:
            log.warning("CUDA_TRAINING is true but JAX sees no GPU (install jax[cuda12]?): training on the CPU")
    return jax.devices("cpu")[0]


def training_devices(cfg: Config) -> list[jax.Device]:
    """`TRAINING_DEVICES` of the platform `pick_device` chose: "auto" is every local GPU (one CPU device otherwise),
    a number is the first that many; refused when fewer are visible."""
    first = pick_device(cfg)
    visible = jax.local_devices(backend=first.platform)
    wanted = cfg.TRAINING_DEVICES
    if wanted == "auto":
        return visible if first.platform == "gpu" else [first]
    if wanted > len(visible):
        raise ConfigError(f"config key 'TRAINING_DEVICES' has value {wanted}: JAX sees {len(visible)} {first.platform} "
                          f"device(s) here")
    return visible[:wanted]


class Devices:
    """Where the learner's arrays live and how a jitted update is split over the devices (see the module docstring)."""

    def __init__(self, devices: Sequence[jax.Device]):
        if not devices:
            raise ValueError("Devices needs at least one device")
        self.devices = tuple(devices)
        self.mesh = Mesh(np.array(self.devices), (BATCH_AXIS,)) if len(self.devices) > 1 else None
        # where `jax.device_put` places replicated arrays: the device itself when there is only one
        self.home: jax.Device | NamedSharding = (self.devices[0] if self.mesh is None
                                                 else NamedSharding(self.mesh, PartitionSpec()))

    @classmethod
    def from_config(cls, cfg: Config) -> Devices:
        devices = cls(training_devices(cfg))
        log.info("training on %s", devices)
        return devices

    def __repr__(self) -> str:
        first = self.devices[0]
        if self.mesh is None:
            return f"{first.device_kind} ({first.platform})"
        return (f"{self.count} x {first.device_kind} ({first.platform}), data parallel: each batch split across them, "
                f"parameters and replay memory replicated")

    @property
    def count(self) -> int:
        return len(self.devices)

    @property
    def platform(self) -> str:
        return str(self.devices[0].platform)

    def check_batch(self, batch_size: int) -> None:
        """Every device takes an equal share of each batch."""
        if batch_size % self.count:
            raise ConfigError(f"config key 'BATCH_SIZE' has value {batch_size}: expected a multiple of the {self.count} "
                              f"training devices (TRAINING_DEVICES), which share each batch equally")

    def put(self, tree: T) -> T:
        """`tree` on the training device, or replicated on every device of the mesh."""
        return jax.device_put(tree, self.home)

    def split(self, tree: T) -> T:
        """Inside jit: `tree`'s leading (batch) axis split across the devices; unchanged on one device."""
        if self.mesh is None:
            return tree
        return jax.lax.with_sharding_constraint(tree, NamedSharding(self.mesh, PartitionSpec(BATCH_AXIS)))

    def jit(self, fn: Any, **kwargs: Any) -> Any:
        """`jax.jit(fn)` whose outputs stay replicated on a mesh (so donated state keeps its buffers and placement)."""
        if self.mesh is not None:
            kwargs["out_shardings"] = self.home
        return jax.jit(fn, **kwargs)
