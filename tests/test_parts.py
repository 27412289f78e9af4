"""Weights in parts: a message split by the broker is put back together bit for bit; parts that do not fit the
message under way are refused without losing the next one; a TM20FULL actor gets its weights through a broker."""

from __future__ import annotations

import math

import numpy as np
import pytest
from tmrlx.actor.link import ActorClient
from tmrlx.common.config import load_config
from tmrlx.common.kinds import spec_from_config
from tmrlx.common.wire.codec import ProtocolError
from tmrlx.common.wire.parts import PART_BYTES, Assembly, split
from tmrlx.common.wire.protocol import MsgType, make, parse
from tmrlx.learner.link import LearnerClient

from tmrlx.testing import contract_weights, running_broker, wait_for

CFG = load_config(overrides={"ENV": {"RTGYM_INTERFACE": "TM20FULL"}})
SPEC = spec_from_config(CFG)
LIMIT = CFG.BUFFER_SIZE


def weights_message(version: int, fill: float) -> list:
    arrays, meta = contract_weights(SPEC, fill)
    arrays = {k: v + np.arange(v.size, dtype=np.float32).reshape(v.shape) for k, v in arrays.items()}  # not constant
    return make(MsgType.WEIGHTS, {"version": version, "meta": meta}, arrays)


def parts_of(frames: list, version: int) -> list[tuple[dict, dict]]:
    """(header, arrays) of each part, as the actor's link hands them over after `parse`."""
    out = []
    for part in split(frames, version):
        mtype, msg = parse(part, LIMIT)
        assert mtype is MsgType.WEIGHTS_PART and sum(memoryview(f).nbytes for f in part) < PART_BYTES + 1024
        out.append((msg.header, msg.arrays))
    return out


def assemble(assembly: Assembly, parts: list[tuple[dict, dict]]) -> list | None:
    whole = None
    for i, (header, arrays) in enumerate(parts):
        whole = assembly.add(header, arrays)
        assert (whole is None) == (i < len(parts) - 1)
    return whole


def test_a_message_split_in_parts_is_put_back_bit_for_bit():
    frames = weights_message(7, 0.25)
    size = sum(memoryview(f).nbytes for f in frames)
    parts = parts_of(frames, 7)
    assert size > 2_000_000 and len(parts) == math.ceil(size / PART_BYTES)
    whole = assemble(Assembly(LIMIT), parts)
    assert [bytes(memoryview(f)) for f in whole] == [bytes(memoryview(f)) for f in frames]
    mtype, msg = parse(whole, LIMIT)
    assert mtype is MsgType.WEIGHTS and msg.header["version"] == 7


def _tampered(parts, i, **changes):
    header, arrays = parts[i]
    return [*parts[:i], ({**header, **changes.get("header", {})}, changes.get("arrays", arrays)), *parts[i + 1:]]


@pytest.mark.parametrize("case, reason", [
    ("skip", "not the next part"),
    ("repeat", "not the next part"),
    ("other version", "not the next part"),
    ("other size", "not the next part"),
    ("too large", "at most BUFFER_SIZE"),
    ("header beyond the message", "header first"),
    ("more bytes than announced", "more than the"),
    ("fewer bytes than announced", "were announced"),
    ("float data", "one non-empty uint8 array"),
    ("no data", "one non-empty uint8 array"),
])
def test_a_part_that_does_not_fit_is_refused_and_the_next_message_still_arrives(case, reason):
    parts = parts_of(weights_message(3, 0.5), 3)
    header, arrays = parts[1]
    bad = {
        "skip": parts[:1] + parts[2:],
        "repeat": parts[:2] + parts[1:],
        "other version": _tampered(parts, 1, header={"version": 4}),
        "other size": _tampered(parts, 1, header={"size": header["size"] + 1}),
        "too large": [({**p[0], "size": LIMIT + 1}, p[1]) for p in parts],
        "header beyond the message": [({**p[0], "head": p[0]["size"] + 1}, p[1]) for p in parts],
        "more bytes than announced": _tampered(parts, len(parts) - 1,
                                               arrays={"data": np.zeros(PART_BYTES, np.uint8)}),
        "fewer bytes than announced": _tampered(parts, len(parts) - 1, arrays={"data": np.zeros(1, np.uint8)}),
        "float data": _tampered(parts, 1, arrays={"data": np.zeros(8, np.float32)}),
        "no data": _tampered(parts, 1, arrays={}),
    }[case]
    assembly = Assembly(LIMIT)
    with pytest.raises(ProtocolError, match=reason):
        for h, a in bad:
            assembly.add(h, a)
    good = parts_of(weights_message(5, 0.75), 5)
    whole = assemble(assembly, good)  # a part 0 starts over
    assert parse(whole, LIMIT)[1].header["version"] == 5


def test_a_new_message_replaces_one_cut_short():
    assembly = Assembly(LIMIT)
    first = parts_of(weights_message(1, 0.5), 1)
    for header, arrays in first[:5]:  # the connection dropped here
        assert assembly.add(header, arrays) is None
    whole = assemble(assembly, parts_of(weights_message(2, 0.5), 2))
    assert parse(whole, LIMIT)[1].header["version"] == 2


def test_a_tm20full_actor_gets_its_weights_in_parts_through_the_broker():
    with running_broker(CFG) as (broker, cfg):
        learner = LearnerClient(cfg, SPEC)
        actor = ActorClient(cfg, SPEC)
        try:
            assert learner.wait_connected(10) and actor.wait_connected(10)
            sent, meta = contract_weights(SPEC, 0.5)
            sent["mu/bias"] = np.array([0.1, 0.2, 0.3], np.float32)
            learner.publish_weights(1, sent, meta)
            assert wait_for(lambda: actor.stats()["policy_version"] == 1, 30)
            version, arrays, _ = actor.latest_weights()
            assert version == 1 and sorted(arrays) == sorted(sent)
            for name in sent:
                np.testing.assert_array_equal(arrays[name], sent[name])
            assert actor.stats()["rejected"] == 0 and broker.stats()["weights_out"] == 1
        finally:
            actor.close()
            learner.close()


def test_a_learner_sends_its_weights_in_parts_and_the_next_only_once_the_broker_has_the_last():
    """The broker's acknowledgement (HEARTBEAT `version`) is held back: versions published meanwhile wait in the
    learner, and once it arrives only the newest travels (a slow link never queues version after version)."""
    with running_broker(CFG) as (broker, cfg):
        held: list[tuple[bytes, list]] = []
        send = broker._send

        def holding_acks(ident: bytes, frames: list) -> bool:  # on the broker's thread, the only one that may send
            if release and held:
                send(*held.pop())
            mtype, msg = parse(frames, LIMIT)
            if mtype is MsgType.HEARTBEAT and "version" in msg.header and not release:
                held.append((ident, frames))
                return True
            return send(ident, frames)

        release = False
        broker._send = holding_acks
        learner = LearnerClient(cfg, SPEC)
        try:
            assert learner.wait_connected(10)
            arrays, meta = contract_weights(SPEC, 0.5)
            learner.publish_weights(1, arrays, meta)
            assert wait_for(lambda: broker.stats()["weights_version"] == 1 and len(held) == 1, 30)
            for version in (2, 3):
                learner.publish_weights(version, arrays, meta)
            heartbeats = learner.stats()["heartbeats"]
            assert wait_for(lambda: learner.stats()["heartbeats"] >= heartbeats + 2, 10)  # its loop went round since
            assert learner.stats()["weights_sent"] == 1 and broker.stats()["weights_in"] == 1
            release = True  # the held acknowledgement goes with the broker's next message (a heartbeat within 1 s)
            assert wait_for(lambda: broker.stats()["weights_version"] == 3, 30)
            assert broker.stats()["weights_in"] == 2 and broker.stats()["rejected"] == 0  # version 2 never travelled
        finally:
            learner.close()
