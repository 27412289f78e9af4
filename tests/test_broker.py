"""Broker end to end on loopback: exact delivery, weights, refusals, hostile input, drops, expiry."""

import json
import multiprocessing as mp
import time

import msgpack
import numpy as np
import pytest
import zmq
from tmrlx.actor.link import ActorClient
from tmrlx.common.config import load_config
from tmrlx.common.kinds import spec_from_config
from tmrlx.common.wire.codec import MAGIC, VERSION
from tmrlx.common.wire.protocol import MsgType, make, parse
from tmrlx.learner.ingest import Ingest
from tmrlx.learner.link import LearnerClient
from zmq.utils.monitor import recv_monitor_message

from tmrlx.testing import contract_weights, counting_actor, holding_actor, numbered_chunk, rows_of, running_broker, wait_for

CFG = load_config(overrides={"ENV": {"RTGYM_INTERFACE": "SIMLIDAR"}, "BUFFER_SIZE": 1 << 20})
SPEC = spec_from_config(CFG)


def collect(learner, chunks, timeout=20.0):
    out, deadline = [], time.monotonic() + timeout
    while len(out) < chunks and time.monotonic() < deadline:
        out += learner.poll_samples(timeout=0.2)
    return out


@pytest.mark.slow
def test_actor_processes_and_learner_exchange_everything_exactly_once():
    n_actors, chunks, rows = 3, 40, 25
    with running_broker(CFG) as (broker, cfg):
        learner = LearnerClient(cfg, SPEC, window=8)  # small window: the broker must hold the backlog
        ctx = mp.get_context("spawn")
        procs = [ctx.Process(target=counting_actor, args=(cfg.to_dict(), f"actor{i}", chunks, rows)) for i in range(n_actors)]
        for p in procs:
            p.start()
        got = collect(learner, n_actors * chunks, timeout=60)
        for p in procs:
            p.join(timeout=30)
        assert [p.exitcode for p in procs] == [0] * n_actors
        assert learner.poll_samples(timeout=0.3) == []  # nothing duplicated afterwards either
        learner.close()
        rows_seen = rows_of(got)
        assert sorted(rows_seen) == [f"actor{i}" for i in range(n_actors)]
        for session, seen in rows_seen.items():
            assert seen == list(range(chunks * rows)), session  # complete, in order, no duplicates
        stats = broker.stats()
        assert stats["samples_in"] == stats["samples_out"] == n_actors * chunks * rows
        assert stats["rejected"] == 0


def test_weights_reach_actors_on_connect_and_on_change_and_episodes_reach_the_learner():
    with running_broker(CFG) as (broker, cfg):
        learner = LearnerClient(cfg, SPEC)
        assert learner.wait_connected(10)
        sent, sent_meta = contract_weights(SPEC, 0.5)
        learner.publish_weights(1, sent, sent_meta)
        assert wait_for(lambda: broker.stats()["weights_version"] == 1)
        actor = ActorClient(cfg, SPEC)
        assert wait_for(lambda: actor.stats()["policy_version"] == 1)
        version, arrays, meta = actor.latest_weights()
        assert version == 1 and meta == json.loads(json.dumps(sent_meta))  # msgpack: lists for tuples
        np.testing.assert_array_equal(arrays["mu/kernel"], sent["mu/kernel"])
        assert actor.latest_weights() is None  # only new weights
        learner.publish_weights(2, *contract_weights(SPEC, 0.0))
        assert wait_for(lambda: actor.stats()["policy_version"] == 2)
        assert actor.latest_weights()[0] == 2
        actor.send_episode({"return": 12.5, "length": 40})
        episodes = []
        assert wait_for(lambda: bool(episodes.extend(learner.poll_episodes()) or episodes))
        assert episodes == [{"return": 12.5, "length": 40, "session": actor.session}]
        actor.send_samples(numbered_chunk(SPEC, 0, 3))
        meta, _ = collect(learner, 1)[0]
        assert meta["policy_version"] == 2  # chunks say which policy produced them
        actor.close()
        learner.close()


def test_a_full_broker_withholds_credit_and_the_actor_drops_its_oldest_unsent_chunks_counted():
    # full from the first chunk on, so no credit comes back whichever way the three chunks arrive (with room for three
    # chunks, one that arrived alone got its credit back while the broker still had room)
    with running_broker(CFG.replace({"BUFFERS_MAXLEN": 5}), actor_window=3) as (broker, cfg):
        actor = ActorClient(cfg, SPEC, max_queue=3)
        assert actor.wait_connected(10)
        for i in range(3):  # the window: 15 rows, the broker is full and gives no credit back
            actor.send_samples(numbered_chunk(SPEC, 5 * i, 5))
        assert wait_for(lambda: broker.stats()["buffered"] == 15 and actor.stats()["held"] == 3)
        for i in range(3, 9):
            actor.send_samples(numbered_chunk(SPEC, 5 * i, 5))
        stats = actor.stats()  # nothing more left: the 3 oldest of these were dropped, the 3 newest wait
        assert (stats["dropped"], stats["dropped_rows"], stats["queued"], stats["held"]) == (3, 15, 3, 3)
        assert broker.stats()["buffered"] == 15
        learner = LearnerClient(cfg, SPEC)
        got = collect(learner, 6)
        assert rows_of(got)[actor.session] == list(range(15)) + list(range(30, 45))  # nothing lost but the drops
        actor.send_samples(numbered_chunk(SPEC, 45, 5))  # a drop is told by the chunks stamped after it
        got += collect(learner, 1)
        assert [m["dropped"] for m, _ in got] == [0, 0, 0, 0, 5, 10, 15]  # why rows 15..29 are missing
        learner.poll_samples()  # the previous poll's chunks are ingested: acknowledged end to end, the actor lets go
        assert wait_for(lambda: actor.stats()["held"] == 0 and actor.stats()["acked"] == 7)
        actor.close()
        learner.close()


def test_a_learner_that_takes_over_ingests_every_row_its_predecessor_left_unacknowledged_once():
    """What the broker forwarded to a learner that went unacknowledged goes to the next one first, in order."""
    with running_broker(CFG) as (broker, cfg):
        actor, first = ActorClient(cfg, SPEC), LearnerClient(cfg, SPEC, window=2)
        assert actor.wait_connected(10) and first.wait_connected(10)
        for i in range(8):
            actor.send_samples(numbered_chunk(SPEC, 5 * i, 5))
        assert wait_for(lambda: broker.stats()["buffered"] == 30 and first.stats()["inbox"] == 2)
        taken = first.poll_samples()  # two chunks, never acknowledged: the learner is gone before its next poll
        assert rows_of(taken)[actor.session] == list(range(10))
        first.close()
        assert wait_for(lambda: not broker.stats()["learner"], 10)
        second, ingest, order = LearnerClient(cfg, SPEC), Ingest(SPEC), []

        def ingested() -> bool:
            for meta, arrays in second.poll_samples(timeout=0.2):
                order.extend(int(r) for r in arrays["reward"])
                ingest.rows_of(meta, arrays)
            return ingest.rows >= 40

        assert wait_for(ingested, 20)
        assert order == list(range(40))  # before: the broker's 30 rows first, then the actor's resent 10 (dropped)
        assert ingest.accounts() == {"ingested_rows": 40, "duplicate_rows": 0, "actor_dropped_rows": 0, "lost_rows": 0}
        second.poll_samples()  # acknowledges what it ingested: the actor lets go of everything
        assert wait_for(lambda: actor.stats()["held"] == 0 and actor.stats()["acked"] == 8)
        for c in (actor, second):
            c.close()


def test_wrong_password_is_refused_on_both_sides_and_the_broker_goes_on(caplog):
    with running_broker(CFG) as (broker, cfg):
        intruder = ActorClient(cfg.replace({"PASSWORD": "not the password"}), SPEC)
        assert not intruder.wait_connected(10)
        assert "wrong PASSWORD" in intruder.error
        assert broker.stats()["refused"] == 1
        assert any("wrong PASSWORD" in r.getMessage() for r in caplog.records if r.name == "tmrlx.broker")
        intruder.close()
        actor = ActorClient(cfg, SPEC)
        assert actor.wait_connected(10)
        actor.close()


def test_other_observation_layout_is_refused():
    with running_broker(CFG) as (_, cfg):
        other = load_config(overrides={"ENV": {"RTGYM_INTERFACE": "SIMLIDAR", "IMG_HIST_LEN": 2}})
        actor = ActorClient(cfg, spec_from_config(other))
        assert not actor.wait_connected(10)
        assert "observation layout" in actor.error
        actor.close()


def test_nb_workers_caps_actors_and_the_one_turned_away_retries_until_a_slot_frees(caplog):
    with running_broker(CFG.replace({"NB_WORKERS": 2})) as (broker, cfg):
        first = [ActorClient(cfg, SPEC) for _ in range(2)]
        assert all(a.wait_connected(10) for a in first)
        extra = ActorClient(cfg, SPEC, backoff=(0.05, 0.2))
        assert wait_for(lambda: extra.stats()["reconnects"] >= 2)  # turned away, and trying again
        assert not extra.connected and extra.error is None
        assert any("NB_WORKERS=2 actors are already connected" in r.getMessage() and "trying again" in r.getMessage()
                   for r in caplog.records if r.name == "tmrlx.actor")
        learner = LearnerClient(cfg, SPEC)  # the cap is on actors only
        assert learner.wait_connected(10)
        first[0].close()  # a slot frees when an actor leaves: the one waiting takes it
        assert extra.wait_connected(10) and broker.stats()["actors"] == 2
        for c in (first[1], extra, learner):
            c.close()


@pytest.mark.slow
def test_a_killed_actor_restarted_at_once_gets_its_nb_workers_slot_back():
    # a 30 s heartbeat: the dead actor would count for 90 s if the broker waited for it to go silent
    with running_broker(CFG.replace({"NB_WORKERS": 1}), heartbeat_s=30.0) as (broker, cfg):
        dead = mp.get_context("spawn").Process(target=holding_actor, args=(cfg.to_dict(), "dead-actor"))
        dead.start()
        try:
            assert wait_for(lambda: broker.stats()["actors"] == 1, 30)
        finally:
            dead.kill()
            dead.join()
        restarted = ActorClient(cfg, SPEC, backoff=(0.05, 0.2))
        try:
            assert restarted.wait_connected(10), restarted.stats()
            assert [p.session for p in broker.peers.values()] == [restarted.session]
        finally:
            restarted.close()


def _raw(cfg):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(f"tcp://127.0.0.1:{cfg.PORT}")
    return sock


def _reply(sock, timeout=5.0):
    assert sock.poll(timeout * 1000), "no reply"
    return parse(sock.recv_multipart(), 1 << 20)


def test_hostile_messages_are_rejected_with_reasons_and_everyone_else_is_served():
    cfg_small = CFG.replace({"BUFFER_SIZE": 4096})
    with running_broker(cfg_small) as (broker, cfg):
        learner = LearnerClient(cfg, SPEC)
        actor = ActorClient(cfg, SPEC)
        assert learner.wait_connected(10) and actor.wait_connected(10)
        raw = _raw(cfg)
        cases = [
            ([b"definitely not msgpack"], "bad magic"),
            ([MAGIC + bytes((VERSION, 77)) + msgpack.packb({})], "unknown message type 77"),
            ([MAGIC + bytes((VERSION + 3, 1)) + msgpack.packb({})], "protocol version"),
            ([MAGIC + bytes((VERSION, 1)) + b"\xc1\xc1"], "not valid msgpack"),
            ([MAGIC + bytes((VERSION, 1)) + msgpack.packb({})] + [b"x" * 1000] * 5, "exceeds the limit BUFFER_SIZE=4096"),
        ]
        for frames, reason in cases:
            raw.send_multipart(frames)
            mtype, msg = _reply(raw)
            assert mtype is MsgType.ERROR and reason in msg.header["reason"]
        raw.send_multipart(make(MsgType.SAMPLES, {"session": "x", "seq": 0, "step0": 0, "policy_version": 0},
                                numbered_chunk(SPEC, 0, 2)))
        mtype, msg = _reply(raw)
        assert msg.header["retry"]  # unauthenticated samples are not taken: say HELLO
        monitor = raw.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        raw.send(b"y" * 10_000)  # one frame over BUFFER_SIZE: libzmq cuts the connection
        assert monitor.poll(10_000) and recv_monitor_message(monitor)["event"] == zmq.EVENT_DISCONNECTED
        raw.disable_monitor()
        monitor.close()
        raw.close()
        bad = numbered_chunk(SPEC, 0, 4)
        bad["action"] = np.zeros((4, 2), np.float32)
        actor.send_samples(bad)
        assert wait_for(lambda: actor.stats()["rejected"] == 1)
        actor.send_samples(numbered_chunk(SPEC, 4, 4))
        got = collect(learner, 1)
        assert rows_of(got)[actor.session] == [4, 5, 6, 7]
        assert broker.stats()["rejected"] == len(cases) + 1
        actor.close()
        learner.close()


def test_silent_actor_is_forgotten_and_reconnects_by_itself():
    now = [1000.0]
    with running_broker(CFG, clock=lambda: now[0]) as (broker, cfg):
        actor = ActorClient(cfg, SPEC)
        assert actor.wait_connected(10) and wait_for(lambda: broker.stats()["actors"] == 1)
        now[0] += 10.0  # on the broker's clock, the actor missed its heartbeats
        assert wait_for(lambda: broker.stats()["actors"] == 0, 5)
        # its next heartbeat (<= 1 s) gets 'say HELLO': it authenticates again by itself
        assert wait_for(lambda: broker.stats()["actors"] == 1 and actor.connected, 10)
        assert actor.stats()["reconnects"] >= 1
        actor.close()
