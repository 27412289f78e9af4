"""The rate limiter between acting and learning (the idea of Reverb's samples-per-insert limiter).

`MAX_TRAINING_STEPS_PER_ENVIRONMENT_STEP` (R) keeps TMRL's meaning: the learner never runs more than
R updates per sample (`can_update`). Actors whose environment can wait (lockstep) also never run
ahead: they step only on the rows the learner `wants`, which keeps R updates per sample from below
too, on any machine and with any number of actors. The lead (a few blocks of updates) is what keeps
the learner from waiting for rows in flight; it is the most the ratio can undershoot, once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

LEAD_ROWS = 64  # rows asked for ahead of the need: they cover the round trip to paced actors and back


@dataclass(frozen=True)
class RateLimiter:
    max_ratio: float  # updates per sample, at most
    start_samples: int  # samples before the first update
    lead: int  # updates the learner asks samples for ahead of its count

    @classmethod
    def ahead(cls, max_ratio: float, start_samples: int, block: int) -> RateLimiter:
        """A lead of `LEAD_ROWS` rows, or two blocks of updates (one running, one ready) when that is more."""
        return cls(max_ratio, start_samples, max(2 * block, math.ceil(LEAD_ROWS * max_ratio)))

    def can_update(self, updates: int, samples: int, block: int) -> bool:
        """Whether `block` more updates keep at most `max_ratio` updates per sample (and enough samples to start)."""
        return samples >= self.start_samples and updates + block <= self.max_ratio * samples

    def wanted(self, updates: int, samples: int) -> float:
        """Rows wanted beyond `samples`: enough to start, then enough for `max_ratio` updates per sample `lead` ahead."""
        return max(self.start_samples, (updates + self.lead) / self.max_ratio) - samples
