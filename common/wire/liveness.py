"""Heartbeats and reconnect backoff, on an injectable clock so tests need not sleep.

Any message counts as a heartbeat; a peer silent for `misses` intervals is gone. Both the broker
(per peer) and each client (for the broker) keep one `Liveness`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

Clock = Callable[[], float]
HEARTBEAT_S = 1.0
MISSES = 3


@dataclass
class Liveness:
    """When we last heard from / spoke to one peer."""

    interval: float = HEARTBEAT_S
    misses: int = MISSES
    clock: Clock = time.monotonic
    last_recv: float = field(init=False)
    last_send: float = field(init=False)

    def __post_init__(self) -> None:
        self.last_recv = self.last_send = self.clock()

    def received(self) -> None:
        self.last_recv = self.clock()

    def sent(self) -> None:
        self.last_send = self.clock()

    def silent(self) -> bool:
        """True once the peer missed `misses` heartbeats."""
        return self.clock() - self.last_recv > self.interval * self.misses

    def heartbeat_due(self) -> bool:
        return self.clock() - self.last_send >= self.interval

    def until_heartbeat(self) -> float:
        """Seconds until we must send something (for poll timeouts)."""
        return max(0.0, self.last_send + self.interval - self.clock())


@dataclass
class Backoff:
    """Reconnect delays first, 2*first, ... capped at `cap`; `reset` after a successful handshake."""

    first: float = 1.0
    cap: float = 32.0
    _next: float = field(init=False)

    def __post_init__(self) -> None:
        self._next = self.first

    def next(self) -> float:
        delay, self._next = self._next, min(self._next * 2, self.cap)
        return delay

    def reset(self) -> None:
        self._next = self.first
