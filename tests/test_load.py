"""The load generator of `just bench load` at a small scale: every offered chunk reaches the learner exactly once."""

from collections import Counter

import pytest

from tmrlx.loadgen import ROWS, passes, run_level


@pytest.mark.slow
def test_simulated_actors_deliver_everything_exactly_once():
    level = run_level(50, seconds=3.0, warmup=1.0, drain=2.0, record=True)
    offered, delivered = level["offered_ids"], level["delivered_ids"]
    assert level["connected"] == 50 and level["failed_actors"] == 0
    assert len(offered) >= 0.9 * 50 * 3.0 * 2  # a chunk every 0.5 s per actor (the generator did not stall)
    assert len(set(offered)) == len(offered)
    assert not [k for k, n in Counter(delivered).items() if n > 1], "a chunk reached the learner twice"
    assert set(delivered) == set(offered)
    assert level["delivered_samples"] == level["offered_samples"] == ROWS * len(offered)
    assert level["drops"] == 0 and level["broker_rejected"] == 0 and level["broker_refused"] == 0
    assert 0 < level["latency_p50_ms"] <= level["latency_p99_ms"] < 1000
    assert 0 < level["broker_rss_mib"] < 1024 and level["broker_cpu_percent"] > 0
    assert passes(level)
