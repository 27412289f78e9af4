"""Frames on the wire: `[magic + version + type + msgpack header]` then, when arrays travel, one body frame.

The header's "arrays" entry is one msgpack bin holding the declarations (name, dtype, shape) of the
arrays; the body holds their raw little-endian bytes back to back, each starting at a multiple of
ALIGN bytes (zero padding). One body frame, not one frame per array: every frame costs a ZeroMQ
message part on each hop. The declarations are a bin so that a receiver checks each distinct one
once: a stream of chunks repeats the same bytes, and re-checking them cost as much as the rest of
the broker's per-chunk work. Receivers rebuild arrays as zero-copy read-only views; nothing received
can run code: no pickle, no eval, no msgpack extension types, a bounded header and an allow-list of
dtypes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

import msgpack
import numpy as np

MAGIC = b"TMX"
# 5: no CREDIT rewind (the broker keeps what a learner has not acknowledged); 4: WEIGHTS_PART; 3: declarations as one
# bin, checked once per distinct value; 2: as a list; 1: one frame per array
VERSION = 5
PREFIX = len(MAGIC) + 2
ALIGN = 8
MAX_HEADER_BYTES = 1 << 16
MAX_ARRAYS = 64
MAX_NDIM = 8
DTYPES = frozenset({"bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64",
                    "float16", "float32", "float64"})
_WIRE = {name: np.dtype(name).newbyteorder("<") for name in DTYPES}  # name -> little-endian dtype
_NAME = {dt: name for name, dt in _WIRE.items()} | {np.dtype(name): name for name in DTYPES}  # dtype.name is slow
Layout = dict[str, tuple[np.dtype, tuple[int, ...]]]
_U8 = np.dtype(np.uint8)
MAX_LAYOUTS = 256  # distinct declarations remembered; the cache is emptied when full (bounded under attack)
Plan = tuple[tuple[str, tuple[int, ...], np.dtype, int], ...]  # (name, shape, dtype, body offset) per array
_LAYOUTS: dict[bytes, tuple[Layout, Plan, int]] = {}  # declarations -> checked layout, plan, body size


class ProtocolError(ValueError):
    """A message we refuse; `reason` is sent back to its sender. `fatal`: the peer cannot go on (version)."""

    def __init__(self, reason: str, fatal: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.fatal = fatal


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


class Decoded:
    """A received message: type byte, header map, `layout` (name -> (dtype, shape), checked against the body;
    shared between messages with the same declarations: read only), `decl` (the declarations' bytes, a key for
    checks that depend only on them), `arrays` (read-only views, built on first use: the broker forwards chunks
    without them) and the raw frames."""

    def __init__(self, mtype: int, header: dict[str, Any], layout: Layout, plan: Plan, frames: list[Any],
                 nbytes: int, decl: bytes = b""):
        self.type, self.header, self.layout, self.frames, self.nbytes = mtype, header, layout, frames, nbytes
        self.decl = decl
        self._plan = plan

    @cached_property
    def arrays(self) -> dict[str, np.ndarray]:
        if not self._plan:
            return {}
        body = memoryview(self.frames[1]).toreadonly()
        return {name: np.ndarray(shape, dtype, body, off) for name, shape, dtype, off in self._plan}


def encode(mtype: int, header: Mapping[str, Any], arrays: Mapping[str, np.ndarray] | None = None,
           spare: list[bytearray] | None = None) -> list[Any]:
    """Frames for `zmq.Socket.send_multipart(frames, copy=False)`; the body is a copy of the arrays.

    `spare`: bodies of messages the peer has acknowledged; one of the right size is reused (and removed from
    the list) rather than allocating: a fresh 200 kB buffer costs page faults that took longer than the copy.
    """
    sig, values = [], []
    for name, value in (arrays or {}).items():
        a = np.asarray(value)
        dtype_name = _NAME.get(a.dtype)
        if dtype_name is None:
            if a.dtype.byteorder != ">" or a.dtype.newbyteorder("<") not in _NAME:
                raise ProtocolError(f"array {name!r} has dtype {a.dtype}, the wire carries only {sorted(DTYPES)}")
            dtype_name = _NAME[a.dtype.newbyteorder("<")]
        sig.append((name, dtype_name, a.shape))
        values.append(a)
    if not sig:
        return [MAGIC + bytes((VERSION, mtype)) + msgpack.packb(dict(header), use_bin_type=True)]
    packed, starts, size = _declare(tuple(sig))
    head = MAGIC + bytes((VERSION, mtype)) + msgpack.packb({**header, "arrays": packed}, use_bin_type=True)
    reuse = next((i for i, b in enumerate(spare) if len(b) == size), None) if spare else None
    body = spare.pop(reuse) if spare is not None and reuse is not None else bytearray(size)
    out = np.frombuffer(body, _U8)  # numpy-side copies: exporting each array's buffer to a memoryview costs more
    end = 0
    for (_, dtype_name, _), start, a in zip(sig, starts, values):  # C order, little-endian, one memcpy each
        if start > end:
            out[end:start] = 0  # padding (a reused body holds old bytes there)
        end = start + a.nbytes
        out[start:end] = np.ascontiguousarray(a, _WIRE[dtype_name]).reshape(-1).view(_U8)
    return [head, body]


@functools.lru_cache(maxsize=MAX_LAYOUTS)
def _declare(sig: tuple[tuple[str, str, tuple[int, ...]], ...]) -> tuple[bytes, tuple[int, ...], int]:
    """Packed declarations, each array's body offset and the body's size, for (name, dtype, shape) in order:
    a sender repeats the same few layouts, so they are packed once each."""
    starts, size = [], 0
    for _, dtype_name, shape in sig:
        starts.append(_aligned(size))
        size = starts[-1] + math.prod(shape) * _WIRE[dtype_name].itemsize
    return msgpack.packb([[n, d, list(sh)] for n, d, sh in sig], use_bin_type=True), tuple(starts), size


def _no_ext(code: int, data: bytes) -> None:
    raise ProtocolError(f"msgpack extension type {code} is not allowed")


def _unpack(raw: Any, what: str, kind: type) -> Any:
    try:
        value = msgpack.unpackb(raw, raw=False, strict_map_key=True, ext_hook=_no_ext)
    except ProtocolError:
        raise
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as e:
        raise ProtocolError(f"{what} is not valid msgpack ({type(e).__name__})") from None
    if not isinstance(value, kind):
        raise ProtocolError(f"{what} is a msgpack {type(value).__name__}, expected a {'map' if kind is dict else 'list'}")
    return value


def _unpack_header(raw: memoryview) -> dict[str, Any]:
    if raw.nbytes > MAX_HEADER_BYTES:
        raise ProtocolError(f"header of {raw.nbytes} bytes exceeds {MAX_HEADER_BYTES}")
    return _unpack(raw, "header", dict)


def _shape(name: str, shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, list) or len(shape) > MAX_NDIM or not all(
            type(d) is int and 0 <= d < 1 << 40 for d in shape):
        raise ProtocolError(f"array {name!r} has shape {shape!r}: expected a list of at most {MAX_NDIM} sizes >= 0")
    return tuple(shape)


def _layout(packed: Any) -> tuple[Layout, Plan, int]:
    """Check packed declarations; name -> (dtype, shape), the plan to view the body, the body's size."""
    if not isinstance(packed, bytes):
        raise ProtocolError(f"header key 'arrays' is {packed!r:.80}: expected the declarations as a msgpack bin")
    decl = _unpack(packed, "array declarations", list)
    if len(decl) > MAX_ARRAYS:
        raise ProtocolError(f"header declares {len(decl)} arrays: at most {MAX_ARRAYS} are allowed")
    layout: Layout = {}
    offsets, size = [], 0
    for entry in decl:
        if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str) and isinstance(entry[1], str)):
            raise ProtocolError(f"array declaration {entry!r:.80} is not [name, dtype, shape]")
        name, dtype_name, raw_shape = entry
        if name in layout:
            raise ProtocolError(f"array {name!r} is declared twice")
        dtype = _WIRE.get(dtype_name)
        if dtype is None:
            raise ProtocolError(f"array {name!r} has dtype {dtype_name!r}, expected one of {sorted(DTYPES)}")
        shape = _shape(name, raw_shape)
        layout[name] = (dtype, shape)
        offsets.append(_aligned(size))
        size = offsets[-1] + math.prod(shape) * dtype.itemsize
    return layout, tuple((name, shape, dtype, off) for (name, (dtype, shape)), off in zip(layout.items(), offsets)), size


def _checked_layout(packed: Any, body: int | None) -> tuple[Layout, Plan]:
    """The declarations checked (once per distinct value) and held against the body's size (None: no body)."""
    hit = _LAYOUTS.get(packed) if isinstance(packed, bytes) else None
    if hit is None:
        hit = _layout(packed)
        if len(_LAYOUTS) >= MAX_LAYOUTS:
            _LAYOUTS.clear()
        _LAYOUTS[packed] = hit
    layout, plan, size = hit
    if bool(layout) != (body is not None):
        raise ProtocolError(f"header declares {len(layout)} arrays but {'a' if body is not None else 'no'} body frame arrived")
    if body is not None and size != body:
        raise ProtocolError(f"arrays {[[n, str(d), list(s)] for n, (d, s) in layout.items()]!s:.200} need a body of "
                            f"{size} bytes but it has {body} bytes")
    return layout, plan


def decode(frames: Sequence[Any], max_bytes: int) -> Decoded:
    """Parse and bound-check one message; raises ProtocolError naming what is wrong."""
    if not frames:
        raise ProtocolError("empty message")
    sizes = [memoryview(f).nbytes for f in frames]
    total = sum(sizes)
    if total > max_bytes:
        raise ProtocolError(f"message of {total} bytes exceeds the limit BUFFER_SIZE={max_bytes}")
    if len(frames) > 2:
        raise ProtocolError(f"message of {len(frames)} frames: expected a header and at most one body frame")
    head = memoryview(frames[0]).cast("B")
    if head.nbytes < PREFIX or bytes(head[:len(MAGIC)]) != MAGIC:
        raise ProtocolError("not a tmrlx message (bad magic bytes)")
    version, mtype = head[len(MAGIC)], head[len(MAGIC) + 1]
    if version != VERSION:
        raise ProtocolError(f"protocol version {version}, this side speaks version {VERSION}: update tmrlx", fatal=True)
    header = _unpack_header(head[PREFIX:])
    packed = header.pop("arrays", None)
    if packed is None:
        if len(sizes) == 2:
            raise ProtocolError("header declares 0 arrays but a body frame arrived")
        return Decoded(mtype, header, {}, (), list(frames), total)
    layout, plan = _checked_layout(packed, sizes[1] if len(sizes) == 2 else None)
    return Decoded(mtype, header, layout, plan, list(frames), total, packed)
