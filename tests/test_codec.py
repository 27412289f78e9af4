"""Codec: arrays round-trip bit-exactly; anything malformed raises ProtocolError, never anything else."""

import contextlib

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tmrlx.common.wire import codec
from tmrlx.common.wire.codec import DTYPES, MAGIC, VERSION, ProtocolError, decode, encode

LIMIT = 1 << 20
HEAD = MAGIC + bytes((VERSION, 5))


def frames_bytes(frames):
    return [bytes(memoryview(f)) for f in frames]


@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_every_dtype_round_trips(dtype):
    rng = np.random.default_rng(0)
    a = (rng.standard_normal((3, 4, 2)) * 100).astype(dtype)
    msg = decode(frames_bytes(encode(5, {"seq": 1}, {"x": a, "empty": np.zeros((0, 7), dtype)})), LIMIT)
    assert msg.type == 5 and msg.header == {"seq": 1}
    np.testing.assert_array_equal(msg.arrays["x"], a)
    assert msg.arrays["x"].dtype == a.dtype and msg.arrays["empty"].shape == (0, 7)


def test_big_endian_input_arrives_as_the_same_values():
    a = np.arange(6, dtype=">f4").reshape(2, 3)
    out = decode(frames_bytes(encode(5, {}, {"a": a})), LIMIT).arrays["a"]
    np.testing.assert_array_equal(out, a)
    assert out.dtype == np.dtype("<f4")


def test_non_contiguous_and_scalar_arrays():
    a = np.arange(20, dtype=np.int32).reshape(4, 5)[:, ::2]
    out = decode(frames_bytes(encode(5, {}, {"a": a, "s": np.float64(2.5)})), LIMIT).arrays
    np.testing.assert_array_equal(out["a"], a)
    assert out["s"].shape == () and out["s"] == 2.5


def test_refuses_to_encode_objects():
    with pytest.raises(ProtocolError, match="dtype object"):
        encode(5, {}, {"a": np.array([{}, 1], dtype=object)})


def test_arrays_share_one_aligned_body_and_padding_is_zeroed():
    frames = encode(5, {}, {"a": np.full(3, 255, np.uint8), "b": np.arange(2, dtype=np.float64)})
    assert len(frames) == 2 and bytes(frames[1][3:8]) == b"\0" * 5  # b starts at byte 8
    out = decode(frames_bytes(frames), LIMIT).arrays
    np.testing.assert_array_equal(out["b"], [0.0, 1.0])
    assert out["b"].ctypes.data % 8 == out["a"].ctypes.data % 8


def test_a_reused_body_is_overwritten_whole_padding_included():
    arrays = {"a": np.full(3, 7, np.uint8), "b": np.arange(2, dtype=np.float64)}
    size = len(encode(5, {}, arrays)[1])
    dirty, other = bytearray(b"\xff" * size), bytearray(size + 1)
    spare = [other, dirty]
    frames = encode(5, {}, arrays, spare)
    assert frames[1] is dirty and spare == [other]  # the body of the right size was taken
    assert bytes(frames[1][3:8]) == b"\0" * 5
    out = decode(frames_bytes(frames), LIMIT).arrays
    np.testing.assert_array_equal(out["a"], arrays["a"])
    np.testing.assert_array_equal(out["b"], arrays["b"])


def test_zero_copy_views_are_read_only():
    frames = encode(5, {}, {"a": np.ones(100_000, np.float32)})
    out = decode(frames_bytes(frames), LIMIT + 10**6).arrays["a"]
    assert not out.flags.writeable


@pytest.mark.parametrize("frames, reason", [
    ([], "empty"),
    ([b"XYZ\x01\x05\x80"], "bad magic"),
    ([MAGIC + bytes((VERSION + 1, 5)) + msgpack.packb({})], "protocol version"),
    ([MAGIC + bytes((VERSION, 5)) + b"\xc1"], "not valid msgpack"),
    ([MAGIC + bytes((VERSION, 5)) + msgpack.packb([1, 2])], "expected a map"),
    ([MAGIC + bytes((VERSION, 5)) + msgpack.packb({"a": msgpack.ExtType(1, b"x")})], "extension type"),
    ([HEAD + msgpack.packb({"arrays": msgpack.packb([["a", "object", [1]]])}), b"\0" * 8], "dtype 'object'"),
    ([HEAD + msgpack.packb({"arrays": msgpack.packb([["a", "float32", [3]]])}), b"\0" * 8], "it has 8 bytes"),
    ([HEAD + msgpack.packb({"arrays": msgpack.packb([["a", "uint8", [3]], ["b", "uint8", [1]]])}), b"\0" * 4],
     "need a body of 9 bytes"),  # the second array starts at the next multiple of 8
    ([HEAD + msgpack.packb({"arrays": msgpack.packb([["a", "uint8", [-1]]])}), b""], "shape"),
    ([HEAD + msgpack.packb({"arrays": msgpack.packb([])}), b"extra"], "0 arrays but a body frame"),
    ([HEAD + msgpack.packb({"arrays": msgpack.packb([["a", "uint8", [1]]])})], "1 arrays but no body frame"),
    ([HEAD + msgpack.packb({"arrays": msgpack.packb([["a", "uint8", [1]], ["a", "uint8", [1]]])}), b"x" * 9],
     "declared twice"),
    ([MAGIC + bytes((VERSION, 5)) + msgpack.packb({"arrays": [["a", "uint8", [1]]]}), b"x"], "as a msgpack bin"),
    ([MAGIC + bytes((VERSION, 5)) + msgpack.packb({"arrays": b"\xc1"}), b"x"], "declarations is not valid msgpack"),
    ([HEAD + msgpack.packb({"arrays": msgpack.packb({"a": 1})}), b"x"], "expected a list"),
    ([MAGIC + bytes((VERSION, 5)) + msgpack.packb({}), b"x", b"y"], "3 frames"),
    ([MAGIC + bytes((VERSION, 5)) + msgpack.packb({}), b"\0" * (LIMIT + 1)], "exceeds the limit BUFFER_SIZE"),
])
def test_malformed_messages_are_refused_with_a_reason(frames, reason):
    with pytest.raises(ProtocolError, match=reason):
        decode(frames, LIMIT)


def test_declarations_are_checked_once_and_still_held_to_each_body():
    frames = frames_bytes(encode(5, {"seq": 1}, {"a": np.arange(6, dtype=np.int32).reshape(2, 3)}))
    first, second = decode(frames, LIMIT), decode(frames_bytes(encode(5, {"seq": 2}, {"a": np.zeros((2, 3), np.int32)})), LIMIT)
    assert first.layout is second.layout and second.header["seq"] == 2  # the second reused the first's check
    with pytest.raises(ProtocolError, match="need a body of 24 bytes but it has 20"):
        decode([frames[0], frames[1][:20]], LIMIT)
    for n in range(codec.MAX_LAYOUTS + 5):  # many distinct declarations: the cache stays bounded
        decode(frames_bytes(encode(5, {}, {f"x{n}": np.zeros(1, np.uint8)})), LIMIT)
    assert len(codec._LAYOUTS) <= codec.MAX_LAYOUTS


def test_version_mismatch_is_fatal_other_errors_are_not():
    with pytest.raises(ProtocolError) as e:
        decode([MAGIC + bytes((VERSION + 1, 5)) + msgpack.packb({})], LIMIT)
    assert e.value.fatal
    with pytest.raises(ProtocolError) as e:
        decode([b"junk!"], LIMIT)
    assert not e.value.fatal


@settings(max_examples=400, deadline=None)
@given(st.lists(st.binary(max_size=200), min_size=1, max_size=4))
def test_fuzz_random_frames_only_raise_protocol_error(frames):
    with contextlib.suppress(ProtocolError):
        decode(frames, LIMIT)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_fuzz_mutated_valid_messages_only_raise_protocol_error(data):
    frames = frames_bytes(encode(5, {"seq": 3, "session": "s"}, {"a": np.ones((2, 3), np.float32),
                                                                 "b": np.zeros(4, bool)}))
    i = data.draw(st.integers(0, len(frames) - 1))
    raw = bytearray(frames[i])
    for _ in range(data.draw(st.integers(1, 4))):
        if raw:
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    frames[i] = bytes(raw[: data.draw(st.integers(0, len(raw)))])
    try:
        msg = decode(frames, LIMIT)
    except ProtocolError:
        return
    for a in msg.arrays.values():  # whatever decoded is well-formed
        assert a.nbytes == a.size * a.itemsize


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats() | st.text() | st.binary(),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=5), c, max_size=4), max_leaves=20))
def test_fuzz_arbitrary_msgpack_headers(value):
    frame = MAGIC + bytes((VERSION, 5)) + msgpack.packb(value)
    with contextlib.suppress(ProtocolError):
        decode([frame], LIMIT)
