"""The episode-statistics contract (actor -> broker -> learner): what the `stats` of an EPISODE message may hold.

Actors report each finished episode; the learner averages and logs them and the demo follows them, so a
missing or non-numeric value must be refused where it enters (the broker, and again the learner), never
crash a mean or a JSON log later.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tmrlx.common.fields import FLAG, IDENT, VERSION, Field, choice, integer, number, problems

SECONDS = number(0.0, 1e6)
MILLISECONDS = number(0.0, 1e9)
FIELDS: dict[str, Field] = {
    "return": number(-1e12, 1e12),
    "length": integer(0, 2**31),
    "mean_step_s": SECONDS.optional(),
    "max_step_s": SECONDS.optional(),
    "late_steps": integer(0, 2**31).optional(),
    "inference_p50_ms": MILLISECONDS.optional(),
    "inference_max_ms": MILLISECONDS.optional(),
    "policy_version": VERSION.optional(),
    # how the episode was driven; "test": tanh(mu) of one policy version, its samples not sent (an actor's
    # test episode): the learner logs those as return_test / length_test / lap_test, apart from training's
    "mode": choice("actor", "expert", "test").optional(),
    "session": IDENT.optional(),
    "progress": number(0.0, 1.0).optional(),  # tracks: the share of the lap driven
    "finished": FLAG.optional(),  # tracks: the finish line was crossed
}


class EpisodeError(ValueError):
    """Episode statistics that break the contract; the message names the key."""


def check(stats: Any) -> dict[str, Any]:
    """A copy of `stats` held to FIELDS; raises EpisodeError."""
    if not isinstance(stats, Mapping):
        raise EpisodeError(f"episode statistics are {type(stats).__name__}, expected a map")
    problem = problems(FIELDS, stats)
    if problem:
        raise EpisodeError(f"episode statistics: {problem}")
    return dict(stats)
