"""Client side: the actor never waits on the network, its queue is bounded, liveness and backoff."""

import time

from tmrlx.actor.link import ActorClient
from tmrlx.common.config import load_config
from tmrlx.common.kinds import spec_from_config
from tmrlx.common.wire.link import LinkSettings
from tmrlx.common.wire.liveness import Backoff, Liveness
from tmrlx.learner.link import LearnerClient

from tmrlx.testing import free_port, numbered_chunk, rows_of, running_broker

CFG = load_config(overrides={"ENV": {"RTGYM_INTERFACE": "SIMLIDAR"}})
SPEC = spec_from_config(CFG)


def test_addresses_follow_the_localhost_flags():
    cfg = CFG.replace({"LOCALHOST_WORKER": False, "PUBLIC_IP_SERVER": "10.1.2.3", "PORT": 6000})
    assert LinkSettings.from_config(cfg, "actor").address == "tcp://10.1.2.3:6000"
    assert LinkSettings.from_config(cfg, "learner").address == "tcp://127.0.0.1:6000"


def test_liveness_on_a_fake_clock():
    now = [0.0]
    live = Liveness(interval=1.0, misses=3, clock=lambda: now[0])
    now[0] = 0.9
    assert not live.heartbeat_due() and abs(live.until_heartbeat() - 0.1) < 1e-9
    now[0] = 1.0
    assert live.heartbeat_due()
    live.sent()
    now[0] = 3.0
    assert not live.silent()
    now[0] = 3.1
    assert live.silent()
    live.received()
    assert not live.silent()


def test_backoff_doubles_up_to_the_cap_and_resets():
    b = Backoff(1.0, 32.0)
    assert [b.next() for _ in range(7)] == [1, 2, 4, 8, 16, 32, 32]
    b.reset()
    assert b.next() == 1


def test_sending_never_blocks_without_a_broker_and_drops_the_oldest():
    actor = ActorClient(CFG.replace({"PORT": free_port()}), SPEC, max_queue=5)
    try:
        chunk = numbered_chunk(SPEC, 0, 50)
        start = time.perf_counter()
        for _ in range(200):
            actor.send_samples(chunk)
        per_call = (time.perf_counter() - start) / 200
        assert per_call < 0.01  # a copy and an append, no network wait (20 Hz loops have 50 ms)
        stats = actor.stats()
        assert stats["queued"] == actor.queued == 5 and stats["dropped"] == 195 and not stats["connected"]
    finally:
        actor.close()


def test_queued_chunks_go_out_when_the_broker_appears():
    port = free_port()
    actor = ActorClient(CFG.replace({"PORT": port}), SPEC, backoff=(0.2, 0.5))
    for i in range(3):
        actor.send_samples(numbered_chunk(SPEC, 4 * i, 4))
    time.sleep(0.3)
    try:
        with running_broker(CFG, port=port) as (_, cfg):
            learner = LearnerClient(cfg, SPEC)
            got, deadline = [], time.monotonic() + 20
            while len(got) < 3 and time.monotonic() < deadline:
                got += learner.poll_samples(timeout=0.2)
            learner.close()
        assert rows_of(got)[actor.session] == list(range(12))
    finally:
        actor.close()


def test_oversized_chunk_is_dropped_locally_with_an_error(caplog):
    actor = ActorClient(CFG.replace({"PORT": free_port(), "BUFFER_SIZE": 2048}), SPEC)
    try:
        actor.send_samples(numbered_chunk(SPEC, 0, 100))
        assert actor.stats()["dropped"] == 1 and actor.stats()["queued"] == 0
        assert any("over BUFFER_SIZE=2048" in r.getMessage() for r in caplog.records)
    finally:
        actor.close()
