"""The replay memory: a pre-allocated ring buffer per field on the learner's device.

Every row stores the newest frame of each component once (images as uint8) and `prev`, the
absolute index of the previous row of the same actor stream (a `first` row points to itself).
Histories and action buffers are rebuilt inside the jitted sampler by following `prev`, which
clamps at episode starts for free (rtgym pads with the first frame and zero actions, and a `first`
row's action is zero). A row is a usable transition when it is not `first` and every row its
histories reach is still in the ring.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from tmrlx.common.chunks import ChunkSchema
from tmrlx.common.specs import ObsSpec

RESAMPLE_ROUNDS = 3  # invalid draws are redrawn this many times, then masked out of the loss


@struct.dataclass
class Replay:
    """Device arrays: `data[field]` has `capacity` rows; `count` is the number of rows ever inserted."""

    data: dict[str, jax.Array]
    count: jax.Array

    @property
    def capacity(self) -> int:
        return int(self.data["reward"].shape[0])


def init_replay(spec: ObsSpec, capacity: int, device: jax.Device | jax.sharding.Sharding | None = None) -> Replay:
    """Zeroed rows on `device` (a sharding replicates them over several devices: `learner.devices`)."""
    data = {k: jnp.zeros((capacity, *shape), dtype) for k, (dtype, shape) in ChunkSchema.of(spec).replay_fields().items()}
    return jax.device_put(Replay(data, jnp.zeros((), jnp.int32)), device)


def _bucket(n: int) -> int:
    return max(16, 1 << (n - 1).bit_length())


def _insert(replay: Replay, rows: dict[str, jax.Array], n: jax.Array) -> Replay:
    cap = replay.data["reward"].shape[0]
    pos = jnp.arange(rows["reward"].shape[0])
    slots = jnp.where(pos < n, (replay.count + pos) % cap, cap)  # padding rows land out of bounds: dropped
    data = {k: v.at[slots].set(rows[k], mode="drop") for k, v in replay.data.items()}
    return Replay(data, replay.count + n)


_insert_donated = jax.jit(_insert, donate_argnums=0)


def insert(replay: Replay, rows: Mapping[str, np.ndarray]) -> Replay:
    """Append host rows (all fields of `ChunkSchema.replay_fields`, `prev` absolute) in one device call; pads to a
    power-of-two bucket so the insert compiles only a handful of times."""
    n = int(rows["reward"].shape[0])
    if n == 0:
        return replay
    cap = replay.capacity
    if n > cap:  # only the newest `cap` rows can survive anyway
        rows = {k: v[n - cap:] for k, v in rows.items()}
        replay = dataclasses.replace(replay, count=replay.count + (n - cap))
        n = cap
    size = _bucket(n)
    padded = {k: np.concatenate([v, np.zeros((size - n, *v.shape[1:]), v.dtype)]) for k, v in rows.items()}
    return _insert_donated(replay, padded, jnp.int32(n))


def size(replay: Replay) -> int:
    return int(min(int(replay.count), replay.capacity))


def _chains(replay: Replay, idx: jax.Array, depth: int) -> tuple[jax.Array, jax.Array]:
    """(depth+1, *idx.shape) absolute rows idx, prev(idx), prev(prev(idx)), ... and whether each transition is usable."""
    cap = replay.data["reward"].shape[0]
    lo = jnp.maximum(replay.count - cap, 0)
    chain = [idx]
    valid = (idx >= lo) & (idx < replay.count) & ~replay.data["first"][idx % cap]
    for _ in range(depth):
        nxt = replay.data["prev"][chain[-1] % cap]
        valid &= nxt >= lo
        chain.append(nxt)
    return jnp.stack(chain), valid


def draw_rows(replay: Replay, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Uniform absolute row numbers among those still in the ring, inside jit: `sample_rows` takes (RESAMPLE_ROUNDS + 1,
    batch) of them per batch. Drawing many batches' rows in one call costs one random-bits computation, which
    on the CPU is a loop of its own per call (most of what sampling cost there when each round drew its own)."""
    cap = replay.data["reward"].shape[0]
    lo = jnp.maximum(replay.count - cap, 0)
    return jax.random.randint(key, shape, lo, jnp.maximum(replay.count, lo + 1))


def sample(replay: Replay, spec: ObsSpec, key: jax.Array, batch_size: int) -> tuple[dict, jax.Array]:
    """A uniform batch of transitions, inside jit: `sample_rows` of rows drawn from `key`."""
    return sample_rows(replay, spec, draw_rows(replay, key, (RESAMPLE_ROUNDS + 1, batch_size)))


def sample_rows(replay: Replay, spec: ObsSpec, rows: jax.Array) -> tuple[dict, jax.Array]:
    """The batch of transitions at `rows[0]` (from `draw_rows`), an unusable draw replaced by the next round's: ({o, a, r,
    o2, terminated}, weights).

    `o`/`o2` are raw parts ({component: (B, [history,] *shape), "act_buf": (B, L, A)}) for
    `spec.normalise`; `weights` is 1 for usable transitions, 0 for the rare draw that stayed unusable.
    Every round's history chains are followed at once and each field is gathered once for `o`, `o2` and `a` (they
    overlap by all but one row): on the CPU each gather is an operation of its own, 30 -> 12 per batch.
    """
    cap = replay.data["reward"].shape[0]
    depth = max([c.history for c in spec.components] + [spec.act_buf_len, 1])
    chains, valid = _chains(replay, rows, depth)  # every round's at once: (depth+1, rounds, B), (rounds, B)
    pick = jnp.argmax(valid.at[-1].set(True), axis=0)  # the first usable round, else the last
    slots = jnp.take_along_axis(chains, pick[None, None], axis=1)[:, 0] % cap  # (depth+1, B)
    valid = jnp.take_along_axis(valid, pick[None], axis=0)[0]

    def window(field: str, n: int) -> jax.Array:
        """(B, n, ...): the field at rows slots[n-1], ..., slots[0] (oldest first)."""
        return replay.data[field][slots[:n][::-1].T]

    o: dict[str, jax.Array] = {}
    o2: dict[str, jax.Array] = {}
    for c in spec.components:
        w = window(f"obs.{c.name}", c.history + 1)
        o[c.name], o2[c.name] = (w[:, :-1], w[:, 1:]) if c.history > 1 else (w[:, 0], w[:, 1])
    acts = window("action", spec.act_buf_len + 1)
    o["act_buf"], o2["act_buf"] = acts[:, :-1], acts[:, 1:]
    row = slots[0]
    batch = {"o": o, "o2": o2, "a": acts[:, -1], "r": replay.data["reward"][row], "terminated": replay.data["terminated"][row]}
    return batch, valid.astype(jnp.float32)
