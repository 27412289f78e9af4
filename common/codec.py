"""Frames on the wire: `[magic + version + type + msgpack header][one raw frame per array]...`.

Arrays travel as (name, dtype, shape) in the header plus their raw little-endian bytes, so a
receiver rebuilds them with `np.frombuffer` (zero copy) and nothing received can run code: no
pickle, no eval, no msgpack extension types, a bounded header and an allow-list of dtypes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

MAGIC = b"TMX"
VERSION = 1
PREFIX = len(MAGIC) + 2
MAX_HEADER_BYTES = 1 << 16
MAX_ARRAYS = 64
MAX_NDIM = 8
DTYPES = frozenset({"bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64",
                    "float16", "float32", "float64"})
_WIRE = {name: np.dtype(name).newbyteorder("<") for name in DTYPES}  # name -> little-endian dtype
_NAME = {dt: name for name, dt in _WIRE.items()} | {np.dtype(name): name for name in DTYPES}  # dtype.name is slow


class ProtocolError(ValueError):
    """A message we refuse; `reason` is sent back to its sender. `fatal`: the peer cannot go on (version)."""

    def __init__(self, reason: str, fatal: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.fatal = fatal


@dataclass
class Decoded:
    """A received message: its type byte, header map, arrays (read-only views) and the raw frames."""

    type: int
    header: dict[str, Any]
    arrays: dict[str, np.ndarray]
    frames: list[Any] = field(repr=False)
    nbytes: int


def encode(mtype: int, header: Mapping[str, Any], arrays: Mapping[str, np.ndarray] | None = None) -> list[Any]:
    """Frames for `zmq.Socket.send_multipart(frames, copy=False)`; array frames are views, not copies."""
    decl, bufs = [], []
    for name, value in (arrays or {}).items():
        a = np.asarray(value)
        if not a.flags.c_contiguous:
            a = np.array(a, order="C")
        dtype_name = _NAME.get(a.dtype)
        if dtype_name is None:
            if a.dtype.byteorder != ">" or a.dtype.newbyteorder("<") not in _NAME:
                raise ProtocolError(f"array {name!r} has dtype {a.dtype}, the wire carries only {sorted(DTYPES)}")
            a = a.astype(a.dtype.newbyteorder("<"))
            dtype_name = _NAME[a.dtype]
        decl.append([name, dtype_name, list(a.shape)])
        bufs.append(a.reshape(-1).view(np.uint8).data if a.size else b"")
    head = {**header, "arrays": decl}
    return [MAGIC + bytes((VERSION, mtype)) + msgpack.packb(head, use_bin_type=True), *bufs]


def _no_ext(code: int, data: bytes) -> None:
    raise ProtocolError(f"msgpack extension type {code} is not allowed")


def _unpack_header(raw: memoryview) -> dict[str, Any]:
    if raw.nbytes > MAX_HEADER_BYTES:
        raise ProtocolError(f"header of {raw.nbytes} bytes exceeds {MAX_HEADER_BYTES}")
    try:
        head = msgpack.unpackb(raw, raw=False, strict_map_key=True, ext_hook=_no_ext)
    except ProtocolError:
        raise
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as e:
        raise ProtocolError(f"header is not valid msgpack ({type(e).__name__})") from None
    if not isinstance(head, dict):
        raise ProtocolError(f"header is a msgpack {type(head).__name__}, expected a map")
    return head


def _shape(name: str, shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, list) or len(shape) > MAX_NDIM or not all(
            type(d) is int and 0 <= d < 1 << 40 for d in shape):
        raise ProtocolError(f"array {name!r} has shape {shape!r}: expected a list of at most {MAX_NDIM} sizes >= 0")
    return tuple(shape)


def _arrays(decl: Any, bufs: Sequence[memoryview]) -> dict[str, np.ndarray]:
    if not isinstance(decl, list) or len(decl) != len(bufs) or len(decl) > MAX_ARRAYS:
        raise ProtocolError(f"header declares {len(decl) if isinstance(decl, list) else decl!r} arrays "
                            f"but {len(bufs)} array frames arrived")
    out: dict[str, np.ndarray] = {}
    for entry, buf in zip(decl, bufs):
        if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str) and isinstance(entry[1], str)):
            raise ProtocolError(f"array declaration {entry!r} is not [name, dtype, shape]")
        name, dtype_name, raw_shape = entry
        if name in out:
            raise ProtocolError(f"array {name!r} is declared twice")
        dtype = _WIRE.get(dtype_name)
        if dtype is None:
            raise ProtocolError(f"array {name!r} has dtype {dtype_name!r}, expected one of {sorted(DTYPES)}")
        shape = _shape(name, raw_shape)
        if math.prod(shape) * dtype.itemsize != buf.nbytes:
            raise ProtocolError(f"array {name!r} declares {dtype_name}{list(shape)} but its frame has {buf.nbytes} bytes")
        out[name] = np.frombuffer(buf, dtype=dtype).reshape(shape)
    return out


def decode(frames: Sequence[Any], max_bytes: int) -> Decoded:
    """Parse and bound-check one message; raises ProtocolError naming what is wrong."""
    bufs = [memoryview(f).cast("B") for f in frames]
    if not bufs:
        raise ProtocolError("empty message")
    total = sum(b.nbytes for b in bufs)
    if total > max_bytes:
        raise ProtocolError(f"message of {total} bytes exceeds the limit BUFFER_SIZE={max_bytes}")
    head = bufs[0]
    if head.nbytes < PREFIX or bytes(head[:len(MAGIC)]) != MAGIC:
        raise ProtocolError("not a tmrlx message (bad magic bytes)")
    version, mtype = head[len(MAGIC)], head[len(MAGIC) + 1]
    if version != VERSION:
        raise ProtocolError(f"protocol version {version}, this side speaks version {VERSION}: update tmrlx", fatal=True)
    header = _unpack_header(head[PREFIX:])
    arrays = _arrays(header.pop("arrays", []), bufs[1:])
    return Decoded(mtype, header, arrays, list(frames), total)
