"""Hostile peers change nothing but their own connection: every field is checked where it enters, refusals are
counted, and 10,000 generated messages (unauthenticated, from an authenticated actor, from an authenticated learner)
leave the broker, the learner's link and its ingest serving the honest roles."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import numpy as np
import pytest
import zmq
from tmrlx.actor.link import ActorClient
from tmrlx.common import episodes
from tmrlx.common.chunks import ChunkError
from tmrlx.common.config import load_config
from tmrlx.common.kinds import spec_from_config
from tmrlx.common.wire.codec import MAGIC, VERSION, encode
from tmrlx.common.wire.handshake import ClientHandshake
from tmrlx.common.wire.parts import Assembly
from tmrlx.common.wire.protocol import MsgType, make, parse
from tmrlx.common.wire.security import auth_key
from tmrlx.learner.ingest import Ingest
from tmrlx.learner.link import LearnerClient

from tmrlx.testing import contract_weights, numbered_chunk, rows_of, running_broker, wait_for

CFG = load_config(overrides={"ENV": {"RTGYM_INTERFACE": "SIMLIDAR"}, "BUFFER_SIZE": 1 << 20, "PASSWORD": "hostile-test-pw"})
SPEC = spec_from_config(CFG)
KEYS = ["role", "session", "spec_hash", "nonce", "policy_version", "echo", "mac", "credit", "heartbeat_s", "seq", "step0",
        "n", "ack", "version", "meta", "stats", "reason", "fatal", "retry", "arrays", "return", "length", "x"]


def _value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(12 if depth < 2 else 9)
    return [
        lambda: rng.randint(-(2**63), 2**64 - 1),
        lambda: rng.choice([0, -1, 1, 2**31, 2**62 + 1]),
        lambda: rng.choice([math.nan, math.inf, -math.inf, 1e308, -0.0, 0.5]),
        lambda: rng.choice(["", "actor", "learner", "\x1b[2J\x1b[31mowned", "é" * 70, "a" * 5000, "ok-session"]),
        lambda: rng.randbytes(rng.choice([0, 15, 16, 32, 33])),
        lambda: rng.choice([True, False, None]),
        lambda: "s" * rng.randrange(100),
        lambda: rng.random() * 1e3,
        lambda: rng.randrange(-5, 5),
        lambda: [_value(rng, depth + 1) for _ in range(rng.randrange(4))],
        lambda: {rng.choice(KEYS): _value(rng, depth + 1) for _ in range(rng.randrange(5))},
        lambda: {"return": _value(rng, depth + 1), "length": _value(rng, depth + 1)},
    ][kind]()


def _arrays(rng: random.Random) -> dict[str, np.ndarray] | None:
    if rng.random() < 0.5:
        return None
    chunk = numbered_chunk(SPEC, 0, rng.randrange(1, 6))
    roll = rng.random()
    if roll < 0.2:
        chunk.pop(rng.choice(list(chunk)))
    elif roll < 0.4:
        chunk["reward"][0] = rng.choice([np.nan, np.inf])
    elif roll < 0.6:
        name = rng.choice(list(chunk))
        chunk[name] = np.zeros((len(chunk["reward"]) + 1, 2), rng.choice([np.float64, np.uint8, np.int32]))
    return chunk


def _message(rng: random.Random, mtype: int | None = None) -> list[bytes]:
    """One generated message: garbage, a bad prefix, or a well-formed frame whose header and arrays are random."""
    roll = rng.random()
    if roll < 0.05:
        return [rng.randbytes(rng.randrange(40))]
    if roll < 0.1:
        return [MAGIC + bytes((rng.randrange(256), rng.randrange(256))) + rng.randbytes(rng.randrange(20))]
    mtype = mtype if mtype is not None else rng.randrange(0, 13)
    header = {rng.choice(KEYS): _value(rng) for _ in range(rng.randrange(6))}
    if mtype == MsgType.SAMPLES and rng.random() < 0.7:
        header.update({"session": "fuzz", "seq": rng.randrange(1000), "step0": rng.randrange(10_000), "policy_version": 0})
    if mtype == MsgType.EPISODE and rng.random() < 0.7:
        header = {"stats": {"return": _value(rng), "length": _value(rng), rng.choice(KEYS): _value(rng)}}
    header.pop("arrays", None)
    try:
        frames = encode(mtype, header, _arrays(rng) if mtype in (MsgType.SAMPLES, MsgType.WEIGHTS) else None)
    except (ValueError, OverflowError, TypeError):  # msgpack cannot pack it: send the raw bytes instead
        return [MAGIC + bytes((VERSION, mtype)) + rng.randbytes(20)]
    return [bytes(memoryview(f)) for f in frames]


def _authenticated(cfg, role: str, session: str) -> zmq.Socket:
    """A raw DEALER that did the real handshake: past authentication, it may send anything."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(f"tcp://127.0.0.1:{cfg.PORT}")
    hs = ClientHandshake(auth_key(cfg.PASSWORD), role, session, SPEC.hash())
    sock.send_multipart(hs.hello(policy_version=-1))
    for _ in range(2):
        assert sock.poll(5000), "no answer to the handshake"
        mtype, msg = parse(sock.recv_multipart(), 1 << 20)
        if mtype is MsgType.CHALLENGE:
            sock.send_multipart(hs.on_challenge(msg.header))
        elif mtype is MsgType.WELCOME:
            assert hs.on_welcome(msg.header) is True
            return sock
    raise AssertionError(f"handshake did not finish ({mtype})")


def _spray(sock: zmq.Socket, rng: random.Random, count: int, mtypes: list[int] | None = None) -> None:
    for i in range(count):
        sock.send_multipart(_message(rng, rng.choice(mtypes) if mtypes else None))
        if i % 200 == 0:
            while sock.poll(0):
                sock.recv_multipart()


def _honest_round_trip(actor: ActorClient, learner: LearnerClient, step0: int) -> list:
    """An honest chunk and episode still go through; returns every chunk the learner got meanwhile (a learner that
    takes over first gets the earlier chunks its predecessor left unacknowledged, in order: nothing is lost)."""
    actor.send_samples(numbered_chunk(SPEC, step0, 4))
    actor.send_episode({"return": 1.5, "length": 4})
    got: list = []

    def honest_rows() -> list[int]:
        got.extend(learner.poll_samples())
        return rows_of([c for c in got if c[0]["session"] == actor.session]).get(actor.session, [])

    assert wait_for(lambda: set(range(step0, step0 + 4)) <= set(honest_rows()), 20)
    rows = honest_rows()
    assert rows == list(range(rows[0], step0 + 4))  # whole and in order, after any redelivered ones
    assert wait_for(lambda: learner.poll_episodes(), 20)
    return got


@pytest.mark.slow
def test_ten_thousand_generated_messages_leave_every_role_serving():
    rng = random.Random(1234)
    with running_broker(CFG) as (broker, cfg):
        learner, actor = LearnerClient(cfg, SPEC), ActorClient(cfg, SPEC)
        assert learner.wait_connected(10) and actor.wait_connected(10)
        learner.publish_weights(1, *contract_weights(SPEC))
        assert wait_for(lambda: actor.stats()["policy_version"] == 1, 10)

        unauthenticated = zmq.Context.instance().socket(zmq.DEALER)
        unauthenticated.linger = 0
        unauthenticated.connect(f"tcp://127.0.0.1:{cfg.PORT}")
        _spray(unauthenticated, rng, 4000)
        fuzz_actor = _authenticated(cfg, "actor", "fuzz")
        _spray(fuzz_actor, rng, 4000, [MsgType.SAMPLES, MsgType.EPISODE, MsgType.SAMPLES, rng.randrange(13)])
        received = _honest_round_trip(actor, learner, 0)

        # what the fuzzing actor got through the broker went to the learner: its ingest takes or refuses, nothing else
        ingest, taken, refused = Ingest(SPEC), 0, 0
        for meta, arrays in received + learner.poll_samples():
            try:
                taken += len(ingest.rows_of(meta, arrays).get("reward", ()))
            except ChunkError:
                refused += 1
        assert taken > 0 and refused > 0  # both paths ran: the broker forwards what only the learner can judge (values)
        learner.close()  # the fuzzing learner takes its place
        assert wait_for(lambda: not broker.stats()["learner"], 10)
        fuzz_learner = _authenticated(cfg, "learner", "fuzz-learner")
        _spray(fuzz_learner, rng, 2000, [MsgType.WEIGHTS, MsgType.CREDIT, rng.randrange(13)])
        fuzz_learner.close()
        assert actor.stats()["policy_version"] == 1 and actor.connected  # no generated weights reached the actor

        learner = LearnerClient(cfg, SPEC)
        assert learner.wait_connected(20)
        _honest_round_trip(actor, learner, 4)
        assert learner.error is None and actor.error is None
        assert broker.stats()["rejected"] > 1000
        for sock in (unauthenticated, fuzz_actor):
            sock.close()
        learner.close()
        actor.close()


def test_a_learner_that_never_acknowledges_gets_buffers_maxlen_rows_and_the_next_learner_gets_every_row(caplog):
    """The broker keeps what it forwarded until the learner acknowledges it: a learner that never does is not sent more
    than BUFFERS_MAXLEN rows (the broker's memory stays bounded), and what it got goes to the next learner, in order."""
    with running_broker(CFG.replace({"BUFFERS_MAXLEN": 15})) as (broker, cfg):
        actor, mute = ActorClient(cfg, SPEC), _authenticated(cfg, "learner", "mute-learner")
        mute.send_multipart(make(MsgType.CREDIT, {"n": 100}))
        assert actor.wait_connected(10)
        for i in range(6):
            actor.send_samples(numbered_chunk(SPEC, 5 * i, 5))
        assert wait_for(lambda: broker.stats()["samples_out"] == 15 and broker.stats()["buffered"] == 15)
        assert wait_for(lambda: "acknowledged none of the last 15 rows" in caplog.text)
        assert broker.stats()["samples_out"] == 15  # credit for 97 more chunks, and nothing more went
        mute.send_multipart(make(MsgType.BYE))
        mute.close()
        learner, got = LearnerClient(cfg, SPEC), []

        def rows() -> list[int]:
            got.extend(learner.poll_samples())
            return rows_of(got).get(actor.session, [])

        assert wait_for(lambda: len(rows()) >= 30, 20)
        assert rows() == list(range(30))
        learner.close()
        actor.close()


@pytest.mark.parametrize("stats, reason", [
    ({"return": 1.0}, "'length' is missing"),
    ({"return": math.nan, "length": 3}, "'return' is nan"),
    ({"return": 1.0, "length": 3, "evil": 1}, "unexpected key"),
    ({"return": b"1", "length": 3}, "'return' is b'1'"),
    ({"return": 1.0, "length": 3, "session": "\x1b[2J"}, "'session' is"),
])
def test_bad_episode_statistics_are_refused_where_they_enter(stats, reason):
    with pytest.raises(episodes.EpisodeError, match=reason):
        episodes.check(stats)
    with running_broker(CFG) as (broker, cfg):
        learner, actor = LearnerClient(cfg, SPEC), ActorClient(cfg, SPEC)
        assert learner.wait_connected(10) and actor.wait_connected(10)
        actor.send_episode(stats)
        assert wait_for(lambda: actor.stats()["rejected"] == 1, 10)  # told why
        assert broker.stats()["rejected"] == 1
        actor.send_episode({"return": 2.0, "length": 5})
        got: list = []
        assert wait_for(lambda: got.extend(learner.poll_episodes()) or got, 10)
        assert [(e["return"], e["length"]) for e in got] == [(2.0, 5)]
        learner.close()
        actor.close()


@pytest.mark.parametrize("spoil, reason", [
    (lambda a, m: a.__setitem__("mu/bias", np.full(3, np.nan, np.float32)), "NaN or infinite"),
    (lambda a, m: a.pop("mu/bias"), "differ from what arch"),
    (lambda a, m: m["spec"].__setitem__("act_dim", 2), "for layout"),
    (lambda a, m: m["arch"].__setitem__("type", "transformer"), "arch.type"),
])
def test_weights_actors_cannot_use_are_refused_and_the_last_good_ones_stay(spoil, reason, caplog):
    with running_broker(CFG) as (broker, cfg):
        learner, actor = LearnerClient(cfg, SPEC), ActorClient(cfg, SPEC)
        assert learner.wait_connected(10) and actor.wait_connected(10)
        learner.publish_weights(1, *contract_weights(SPEC))
        assert wait_for(lambda: actor.stats()["policy_version"] == 1, 10)
        arrays, meta = contract_weights(SPEC)
        meta = json.loads(json.dumps(meta))
        spoil(arrays, meta)
        learner.publish_weights(2, arrays, meta)
        assert wait_for(lambda: learner.stats()["rejected"] == 1, 10)
        assert broker.stats()["weights_version"] == 1 and actor.stats()["policy_version"] == 1
        assert any(reason in r.getMessage() for r in caplog.records if r.name == "tmrlx.broker")
        learner.close()
        actor.close()


def test_the_learner_never_publishes_non_finite_weights(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("TMRLX_DATA", str(tmp_path))
    import jax
    from tmrlx.learner.train import Trainer

    class Source:
        published: list[int] = []

        def poll_samples(self, max_chunks=None, timeout=0.0):
            return []

        def poll_episodes(self):
            return []

        def publish_weights(self, version, arrays, meta):
            self.published.append(version)

    source = Source()
    trainer = Trainer(CFG.replace({"MEMORY_SIZE": 64}), SPEC, source)
    trainer.publish()
    trainer.counters.updates = 200
    trainer.state = trainer.state.replace(actor=jax.tree.map(lambda p: p * np.nan, trainer.state.actor))
    trainer.publish()
    assert source.published == [1]
    assert any("non-finite" in r.getMessage() and "version 1" in r.getMessage() for r in caplog.records)


def test_refusals_print_peer_text_escaped():
    """Text a peer chose reaches logs only through checks that refuse control characters, or as repr."""
    frames = encode(MsgType.HELLO, {"role": "actor", "session": "\x1b]0;pwned\x07", "spec_hash": "x", "nonce": b"n" * 16,
                                    "policy_version": 0})
    with pytest.raises(Exception) as e:
        parse(frames, 1 << 20)
    assert "\x1b" not in str(e.value) and "\\x1b" in str(e.value)



def test_a_mute_actor_gets_one_weights_message_in_flight_and_the_newest_once_it_acknowledges():
    with running_broker(CFG) as (broker, cfg):
        learner = LearnerClient(cfg, SPEC)
        mute = _authenticated(cfg, "actor", "mute-actor")  # never reads its socket while weights are published
        for version in range(1, 21):
            learner.publish_weights(version, *contract_weights(SPEC, float(version)))
            assert wait_for(lambda v=version: broker.stats()["weights_version"] == v)
        assert broker.stats()["weights_out"] == 1  # not one per version piling up in its send queue
        assembly = Assembly(1 << 20)

        def weights_versions() -> list[int]:
            """Versions of the whole WEIGHTS messages among what waits on the socket (they come in parts)."""
            out = []
            while mute.poll(100):
                mtype, msg = parse(mute.recv_multipart(), 1 << 20)
                whole = assembly.add(msg.header, msg.arrays) if mtype is MsgType.WEIGHTS_PART else None
                if whole is not None:
                    out.append(parse(whole, 1 << 20)[1].header["version"])
            return out

        got: list[int] = []
        assert wait_for(lambda: bool(got.extend(weights_versions()) or got))
        [first] = got
        mute.send_multipart(encode(int(MsgType.HEARTBEAT), {"version": first}))  # the actor link's acknowledgement
        newest: list[int] = []
        assert wait_for(lambda: newest.extend(weights_versions()) or 20 in newest)
        assert wait_for(lambda: broker.stats()["weights_out"] == 2)  # counted just after the send: the broker's thread
        honest = ActorClient(cfg, SPEC)  # a real actor acknowledges by itself and follows every publication
        assert wait_for(lambda: honest.stats()["policy_version"] == 20)
        learner.publish_weights(21, *contract_weights(SPEC, 21.0))
        assert wait_for(lambda: honest.stats()["policy_version"] == 21)
        mute.close()
        for c in (honest, learner):
            c.close()
