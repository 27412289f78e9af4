"""The chunk contract: one schema from the spec for writer, checker and replay; one counter per stream."""

import numpy as np
import pytest
from tmrlx.common.chunks import FLAGS, META, ChunkError, ChunkSchema, StreamCounter
from tmrlx.common.specs import Component, ObsSpec

SPEC = ObsSpec((Component("img", (4, 5), "uint8", history=3), Component("x", (2,))), act_dim=3, act_buf_len=2)


def test_schema_is_derived_once_from_the_spec():
    schema = ChunkSchema.of(SPEC)
    assert schema is ChunkSchema.of(SPEC)
    assert list(schema.fields) == ["obs.img", "obs.x", "action", "reward", *FLAGS]
    assert schema.fields["obs.img"] == (np.dtype("uint8"), (4, 5))  # one frame per row: no history axis
    chunk = schema.empty(7)
    assert schema.check_layout({k: (v.dtype, v.shape) for k, v in chunk.items()}) == 7
    stored = schema.replay_fields()
    assert "truncated" not in stored and stored["prev"] == (np.dtype("int32"), ())
    assert {k: v for k, v in stored.items() if k != "prev"} == {k: v for k, v in schema.fields.items() if k != "truncated"}


def test_stream_counter_numbers_chunks_and_rows():
    stream = StreamCounter("s")
    metas = [stream.stamp(n, 4) for n in (3, 5, 1)]
    assert [m["seq"] for m in metas] == [0, 1, 2] and [m["step0"] for m in metas] == [0, 3, 8]
    assert all(set(m) == set(META) and m["session"] == "s" and m["policy_version"] == 4 for m in metas)
    assert StreamCounter().session != StreamCounter().session  # random per process


@pytest.mark.parametrize("meta, message", [
    ({"session": "s", "seq": 0, "step0": "0", "policy_version": 0}, "'step0' is '0'"),
    ({"session": "s", "seq": 0, "step0": 0}, "'policy_version' is missing"),
    ({"session": 1, "seq": 0, "step0": 0, "policy_version": 0}, "'session' is 1"),
    ({"session": "s", "seq": True, "step0": 0, "policy_version": 0}, "'seq' is True"),
])
def test_check_holds_the_header_to_the_contract(meta, message):
    with pytest.raises(ChunkError, match=message):
        ChunkSchema.of(SPEC).check(meta, ChunkSchema.of(SPEC).empty(2))


def test_check_refuses_non_finite_floats_and_names_the_field():
    chunk = ChunkSchema.of(SPEC).empty(2)
    chunk["obs.x"][1, 0] = np.inf
    with pytest.raises(ChunkError, match="'obs.x' holds NaN or infinite"):
        ChunkSchema.of(SPEC).check(StreamCounter().stamp(2, 0), chunk)
