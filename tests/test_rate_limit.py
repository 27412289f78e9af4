"""The rate limiter through the real wire: paced actors hold the learner's ratio, real-time ones never wait."""

import threading
import time

import pytest
from tmrlx.actor.link import ActorClient
from tmrlx.common.config import load_config
from tmrlx.common.kinds import spec_from_config
from tmrlx.learner.limiter import LEAD_ROWS, RateLimiter
from tmrlx.learner.link import LearnerClient

from tmrlx.testing import numbered_chunk, running_broker, wait_for

CFG = load_config(overrides={"ENV": {"RTGYM_INTERFACE": "SIMLIDAR"}, "BUFFER_SIZE": 1 << 20})
SPEC = spec_from_config(CFG)


def test_the_limiter_keeps_updates_per_sample_at_most_the_ratio_and_asks_for_rows_ahead():
    lim = RateLimiter(max_ratio=4.0, start_samples=100, lead=40)
    assert not lim.can_update(0, 99, 10) and lim.can_update(0, 100, 10)
    assert lim.can_update(390, 100, 10) and not lim.can_update(391, 100, 10)
    assert lim.wanted(0, 0) == 100 and lim.wanted(0, 100) == 0  # enough to start, no more before training
    assert lim.wanted(400, 100) == 10  # (400 + 40) / 4 = 110 rows, 100 ingested
    assert RateLimiter.ahead(4.0, 100, block=20).lead == 4 * LEAD_ROWS  # rows ahead, or two blocks when more
    assert RateLimiter.ahead(0.01, 100, block=20).lead == 40


class PacedActor(threading.Thread):
    """What a lockstep rollout does with its link: take the granted steps, produce that many rows, send them."""

    def __init__(self, cfg, stop):
        super().__init__(daemon=True)
        self.client, self.stop, self.rows = ActorClient(cfg, SPEC, paced=True), stop, 0

    def run(self):
        while not self.stop.is_set():
            k = self.client.acquire_steps(self.stop)
            if k:
                self.client.send_samples(numbered_chunk(SPEC, self.rows, k))
                self.rows += k


def throttled_learner(cfg, limiter, updates_per_s, seconds, block=20):
    """A learner whose updates run at `updates_per_s` at most, under `limiter`; (updates, samples) over time."""
    learner = LearnerClient(cfg, SPEC, demand=limiter.wanted(0, 0))
    assert learner.wait_connected(10)
    updates = samples = 0
    trace, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        samples += sum(len(a["reward"]) for _, a in learner.poll_samples(timeout=0.01))
        if limiter.can_update(updates, samples, block):
            time.sleep(block / updates_per_s)
            updates += block
        learner.demand(limiter.wanted(updates, samples))
        trace.append((time.monotonic(), updates, samples))
    learner.close()
    return trace


@pytest.mark.parametrize(("n_actors", "ratio"), [(1, 4.0), (3, 20.0)])
def test_paced_actors_hold_the_ratio_against_a_throttled_learner(n_actors, ratio):
    with running_broker(CFG) as (broker, cfg):
        stop = threading.Event()
        actors = [PacedActor(cfg, stop) for _ in range(n_actors)]
        for a in actors:
            a.start()
        assert all(a.client.wait_connected(10) for a in actors)
        limiter = RateLimiter.ahead(ratio, start_samples=50, block=20)
        trace = throttled_learner(cfg, limiter, updates_per_s=2000, seconds=3.0)
        stop.set()
        for a in actors:
            a.join(5)
            a.client.close()
    t0 = trace[0][0]
    (_, u0, s0), (_, u1, s1) = next(x for x in trace if x[0] - t0 >= 1.0), trace[-1]  # steady state: the last 2 s
    achieved = (u1 - u0) / (s1 - s0)
    assert 0.9 * ratio <= achieved <= 1.1 * ratio, (achieved, u1 - u0, s1 - s0)
    assert u1 - u0 >= 0.5 * 2000 * 2.0  # the learner was rarely kept waiting for rows
    assert all(a.rows > 0 for a in actors)  # every paced actor got its share of steps


def test_a_real_time_actor_is_never_held_back_by_the_limiter():
    with running_broker(CFG) as (broker, cfg):
        stop = threading.Event()
        paced = PacedActor(cfg, stop)
        paced.start()
        learner = LearnerClient(cfg, SPEC, demand=0)  # the learner wants nothing: paced actors get no steps
        assert learner.wait_connected(10)
        realtime = ActorClient(cfg, SPEC)
        assert realtime.wait_connected(10)
        got = 0
        for i in range(50):
            t = time.perf_counter()
            realtime.send_samples(numbered_chunk(SPEC, 10 * i, 10))
            assert time.perf_counter() - t < 0.05  # send_samples only queues
            got += sum(len(a["reward"]) for m, a in learner.poll_samples(timeout=0.01) if m["session"] == realtime.session)

        def arrived():
            nonlocal got
            got += sum(len(a["reward"]) for m, a in learner.poll_samples(timeout=0.05) if m["session"] == realtime.session)
            return got == 500

        assert wait_for(arrived)  # every real-time row reached the learner
        assert paced.rows == 0 and broker.stats()["steps_granted"] == 0  # while the paced actor got no step
        learner.demand(30)
        assert wait_for(lambda: paced.rows == 30)  # and it steps as soon as the learner wants rows
        stop.set()
        paced.join(5)
        for c in (paced.client, realtime, learner):
            c.close()
