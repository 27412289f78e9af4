"""Helpers for tests and benchmarks of the wire: an in-process broker, numbered chunks, a counting actor.

Kept in the package (not in tests/) so multiprocessing children can import them by name.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tmrlx.broker.server import Broker
from tmrlx.common import weights
from tmrlx.common.chunks import ChunkSchema
from tmrlx.common.config import Config
from tmrlx.common.kinds import spec_from_config
from tmrlx.common.specs import ObsSpec


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll `predicate` until it returns something truthy (returned) or `timeout` passes (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(interval)
    return False


def free_port() -> int:
    """A TCP port the OS says is free now (for a broker that must come back on the same port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_broker(cfg: Config, **kwargs: Any) -> Iterator[tuple[Broker, Config]]:
    """A broker on a free loopback port, served by a thread; yields it and the config clients should use."""
    broker = Broker(cfg, host="127.0.0.1", port=kwargs.pop("port", 0), **kwargs)
    thread = threading.Thread(target=broker.serve_forever, name="tmrlx-broker", daemon=True)
    thread.start()
    try:
        yield broker, cfg.replace({"PORT": broker.port})
    finally:
        broker.stop()
        thread.join(timeout=5)
        broker.close()  # raises if the thread still serves: its sockets are never closed from under it


def numbered_chunk(spec: ObsSpec, step0: int, rows: int) -> dict[str, np.ndarray]:
    """A valid chunk whose `reward` column holds the running row index (so receivers can count rows)."""
    out = ChunkSchema.of(spec).empty(rows)
    out["reward"] = np.arange(step0, step0 + rows, dtype=np.float32)
    return out


def contract_weights(spec: ObsSpec, fill: float = 0.5) -> tuple[dict[str, np.ndarray], dict]:
    """Actor weights the broker accepts for `spec` (every array of the contract's shapes, filled with `fill`) and meta."""
    arch = weights.Arch.for_spec(spec)
    arrays = {name: np.full(shape, fill, np.float32) for name, shape in weights.actor_shapes(spec, arch).items()}
    return arrays, weights.meta(spec, arch)


def rows_of(chunks: list[tuple[dict, Mapping[str, np.ndarray]]]) -> dict[str, list[int]]:
    """session -> every row index received (from `numbered_chunk`'s reward column), in arrival order."""
    out: dict[str, list[int]] = {}
    for meta, arrays in chunks:
        out.setdefault(meta["session"], []).extend(int(r) for r in arrays["reward"])
    return out


def counting_actor(cfg_dict: dict, session: str, chunks: int, rows: int, timeout: float = 30.0) -> None:
    """Child process: send `chunks` numbered chunks of `rows` rows, wait until all are handed over, exit."""
    from tmrlx.actor.link import ActorClient

    cfg = Config.from_dict(cfg_dict)
    client = ActorClient(cfg, spec_from_config(cfg), session=session)
    try:
        if not client.wait_connected(timeout):
            raise SystemExit(f"actor {session}: not connected ({client.error})")
        spec = spec_from_config(cfg)
        for i in range(chunks):
            client.send_samples(numbered_chunk(spec, i * rows, rows))
            time.sleep(0.001)
        if not client.flush(timeout):
            raise SystemExit(f"actor {session}: could not send everything: {client.stats()}")
    finally:
        client.close()


def holding_actor(cfg_dict: dict, session: str, timeout: float = 30.0) -> None:
    """Child process: connect and hold the connection until killed (a worker the test kills mid-run)."""
    from tmrlx.actor.link import ActorClient

    cfg = Config.from_dict(cfg_dict)
    client = ActorClient(cfg, spec_from_config(cfg), session=session)
    if not client.wait_connected(timeout):
        raise SystemExit(f"actor {session}: not connected ({client.error})")
    threading.Event().wait()


def tapped_actor(tap: str, argv: list[str]) -> int:
    """`tmrlx` with `argv` (an actor command) whose link also appends every float32 observation column it is handed
    to the file `tap`, each as a 4-byte length and the raw bytes: what a wire capture is checked against."""
    from tmrlx.actor.link import ActorClient
    from tmrlx.cli import main

    send = ActorClient.send_samples

    def send_and_keep(self: ActorClient, arrays: Mapping[str, np.ndarray], *args: Any, **kwargs: Any) -> Any:
        with open(tap, "ab") as f:
            for name, a in arrays.items():
                if name.startswith("obs.") and a.dtype == np.float32:
                    raw = np.ascontiguousarray(a).tobytes()
                    f.write(len(raw).to_bytes(4, "little") + raw)
        return send(self, arrays, *args, **kwargs)

    ActorClient.send_samples = send_and_keep  # type: ignore[method-assign]
    return main(argv)


def tapped(tap: Path) -> list[bytes]:
    """The columns `tapped_actor` recorded."""
    data, out, pos = tap.read_bytes(), [], 0
    while pos + 4 <= len(data):
        n = int.from_bytes(data[pos:pos + 4], "little")
        out.append(data[pos + 4:pos + 4 + n])
        pos += 4 + n
    return out
