"""Checks for values that arrive from peers: every field of every message is held to one of these where it enters.

A peer may be hostile before it authenticates and buggy after, so nothing it sends is trusted: numbers
must be finite and within their range, text is bounded and printable (it ends up in logs and terminals),
identifiers use a small alphabet, byte strings have their exact length. A failed check is a `problem`
string naming the key, the value (repr, cut short) and what was expected; the caller raises its own error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

IDENT_MAX = 64
_IDENT = re.compile(rf"[\w.:\-]{{1,{IDENT_MAX}}}", re.ASCII)


@dataclass(frozen=True)
class Field:
    """What one key must hold (`ok`), in words (`expected`), and whether it may be absent."""

    expected: str
    ok: Callable[[Any], bool]
    required: bool = True

    def optional(self) -> Field:
        return replace(self, required=False)


def integer(lo: int, hi: int) -> Field:
    return Field(f"an integer in [{lo}, {hi}]", lambda v: type(v) is int and lo <= v <= hi)


def number(lo: float, hi: float) -> Field:
    """A finite int or float in [lo, hi] (never a bool, NaN or infinity)."""
    return Field(f"a finite number in [{lo:g}, {hi:g}]",
                 lambda v: type(v) in (int, float) and math.isfinite(v) and lo <= v <= hi)


def text(max_len: int) -> Field:
    return Field(f"printable text of at most {max_len} characters",
                 lambda v: isinstance(v, str) and len(v) <= max_len and v.isprintable())


def raw(size: int) -> Field:
    return Field(f"{size} bytes", lambda v: isinstance(v, bytes) and len(v) == size)


def choice(*values: str) -> Field:
    return Field("one of " + ", ".join(repr(v) for v in values), lambda v: isinstance(v, str) and v in values)


IDENT = Field(f"letters, digits, '_', '.', ':' or '-' (1 to {IDENT_MAX})",
              lambda v: isinstance(v, str) and _IDENT.fullmatch(v) is not None)
FLAG = Field("true or false", lambda v: isinstance(v, bool))
MAP = Field("a map", lambda v: isinstance(v, dict))
COUNT = integer(0, 2**62)  # counters that only grow: sequence numbers, row indices
VERSION = integer(-1, 2**62)  # a policy version; -1: none yet


def listing(item: Mapping[str, Field], max_len: int) -> Field:
    """A list of at most `max_len` maps, each holding to `item` (a table, e.g. the broker's peers for `tmrlx status`)."""
    return Field(f"a list of at most {max_len} maps with keys {sorted(item)}",
                 lambda v: isinstance(v, list) and len(v) <= max_len
                 and all(isinstance(e, dict) and problems(item, e) is None for e in v))


def counts(max_len: int) -> Field:
    """A map of at most `max_len` named counters: identifiers to non-negative integers (the broker's counters, a
    learner's acknowledgements: actor session -> highest seq)."""
    return Field(f"a map of at most {max_len} identifiers to counts",
                 lambda v: isinstance(v, dict) and len(v) <= max_len
                 and all(IDENT.ok(k) and COUNT.ok(x) for k, x in v.items()))


def problems(fields: Mapping[str, Field], values: Mapping[str, Any]) -> str | None:
    """The first way `values` breaks `fields` (a missing required key, an unknown key, a bad value), or None."""
    for key, field in fields.items():
        if key not in values:
            if field.required:
                return f"key {key!r} is missing: expected {field.expected}"
        elif not field.ok(values[key]):
            return f"key {key!r} is {values[key]!r:.80}: expected {field.expected}"
    extra = [k for k in values if k not in fields]
    if extra:
        return f"unexpected key(s) {[str(k)[:40] for k in extra[:5]]!r}: expected some of {sorted(fields)}"
    return None
