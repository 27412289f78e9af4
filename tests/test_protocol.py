"""Protocol and chunk contract: types and header keys are checked; chunks must match the observation spec exactly."""

import numpy as np
import pytest
from tmrlx.common.chunks import ChunkError, ChunkSchema
from tmrlx.common.config import load_config
from tmrlx.common.kinds import spec_from_config
from tmrlx.common.wire.codec import ProtocolError, encode
from tmrlx.common.wire.protocol import MsgType, make, parse

from tmrlx.testing import numbered_chunk

LIMIT = 1 << 24


@pytest.fixture(scope="module")
def spec():
    return spec_from_config(load_config(overrides={"ENV": {"RTGYM_INTERFACE": "SIMFULL"}}))


def test_round_trip_of_a_typed_message(spec):
    mtype, msg = parse(make(MsgType.SAMPLES, {"session": "a", "seq": 0, "step0": 0, "policy_version": 2},
                            numbered_chunk(spec, 10, 4)), LIMIT)
    assert mtype is MsgType.SAMPLES
    assert ChunkSchema.of(spec).check_layout(msg.layout) == 4
    np.testing.assert_array_equal(msg.arrays["reward"], [10, 11, 12, 13])


def test_unknown_type_is_refused():
    with pytest.raises(ProtocolError, match="unknown message type 99"):
        parse(encode(99, {}), LIMIT)


@pytest.mark.parametrize("header, reason", [
    ({"n": "3"}, "'n' is '3': expected an integer"),
    ({}, "'n' is missing"),
    ({"n": True}, "'n' is True: expected an integer"),
    ({"n": 3, "extra": 1}, "unexpected key"),
    ({"n": -1}, r"'n' is -1: expected an integer in \[0, "),
])
def test_header_keys_are_type_checked(header, reason):
    with pytest.raises(ProtocolError, match=reason):
        parse(make(MsgType.CREDIT, header), LIMIT)


def test_arrays_only_on_samples_and_weights():
    with pytest.raises(ProtocolError, match="HEARTBEAT carries no arrays"):
        parse(make(MsgType.HEARTBEAT, {}, {"a": np.zeros(2)}), LIMIT)


def test_chunk_fields_follow_the_spec(spec):
    fields = ChunkSchema.of(spec).fields
    assert fields["obs.images"] == (np.dtype("uint8"), (64, 64))
    assert fields["action"] == (np.dtype("float32"), (3,))
    assert fields["first"] == (np.dtype("bool"), ())


def _layout(chunk):
    return parse(make(MsgType.SAMPLES, {"session": "a", "seq": 0, "step0": 0, "policy_version": 0}, chunk), LIMIT)[1].layout


def _bad(spec, change):
    chunk = numbered_chunk(spec, 0, 5)
    change(chunk)
    return _layout(chunk)


@pytest.mark.parametrize("change, reason", [
    (lambda c: c.pop("reward"), r"missing \['reward'\]"),
    (lambda c: c.update(extra=np.zeros(5)), r"unexpected \['extra'\]"),
    (lambda c: c.update(action=np.zeros((5, 3), np.float64)), "'action' is float64"),
    (lambda c: c.update({"obs.images": np.zeros((5, 32, 64), np.uint8)}), "'obs.images' is uint8"),
    (lambda c: c.update(reward=np.zeros(4, np.float32)), "different row counts"),
    (lambda c: c.update(first=np.zeros((5, 1), bool)), "'first' is bool"),
])
def test_bad_chunks_are_refused(spec, change, reason):
    with pytest.raises(ChunkError, match=reason):
        ChunkSchema.of(spec).check_layout(_bad(spec, change))


def test_empty_chunk_is_refused(spec):
    with pytest.raises(ChunkError, match="no rows"):
        ChunkSchema.of(spec).check_layout(_layout(numbered_chunk(spec, 0, 0)))
