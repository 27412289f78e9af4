"""The broker's live one-line status: rates from the difference of two counter snapshots."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tmrlx.common.wire.liveness import Clock


def _si(x: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.1f}{unit}"
    return f"{x:.0f}"


class Status:
    """`line()` -> 'actors 2 | learner yes | in 12.3k smp/s 1.2MB/s | out ... | buffered 0 | rejected 0 | weights v7'."""

    def __init__(self, stats: Callable[[], dict[str, Any]], clock: Clock):
        self._stats, self._clock = stats, clock
        self._last, self._t = stats(), clock()

    def line(self) -> str:
        now, s = self._clock(), self._stats()
        dt = max(now - self._t, 1e-9)
        rate = {k: (s[k] - self._last[k]) / dt for k in ("samples_in", "bytes_in", "samples_out", "bytes_out")}
        self._last, self._t = s, now
        version = "-" if s["weights_version"] is None else f"v{s['weights_version']}"
        return (f"actors {s['actors']} | learner {'yes' if s['learner'] else 'no'} | "
                f"in {_si(rate['samples_in'])} smp/s {_si(rate['bytes_in'])}B/s | "
                f"out {_si(rate['samples_out'])} smp/s {_si(rate['bytes_out'])}B/s | buffered {s['buffered']} | "
                f"rejected {s['rejected']} | refused {s['refused']} | weights {version}")
