"""A message too large to cross a slow link within a heartbeat, sent as WEIGHTS_PART messages and put back together
(learner -> broker, broker -> actors).

ZeroMQ hands over a message only once all of it arrived, and a client counts the broker as gone after MISSES
heartbeats of silence: a TM20FULL actor's weights (2.3 MB) take longer than that on a thin or far link (TCP's
slow start alone needs ~7 round trips for them), so the actor reconnected before they arrived, again and again.
Sent in parts of PART_BYTES, every part that arrives is the broker speaking (the ZeroMQ Guide's file transfer in
chunks). A part holds a slice of the whole message's frames (header frame then body frame, back to back); its
header says which slice, of how many, and the sizes needed to check and split the whole. The receiver trusts
nothing in them: a part that does not fit the message being assembled drops it (and a part 0 starts a new one).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from tmrlx.common.wire.codec import Decoded, ProtocolError
from tmrlx.common.wire.protocol import MsgType, make, parse

PART_BYTES = 32 * 1024  # ~0.7 s at 400 kbit/s: many parts arrive within a heartbeat on the thinnest links we serve


def messages(frames: list[Any], version: int) -> list[list[Any]]:
    """How one WEIGHTS message travels: as it is, or as WEIGHTS_PARTs when it is over PART_BYTES."""
    return split(frames, version) if sum(memoryview(f).nbytes for f in frames) > PART_BYTES else [frames]


def split(frames: list[Any], version: int) -> list[list[Any]]:
    """The WEIGHTS_PART messages of one message (`frames`: its header frame and body frame)."""
    head = memoryview(frames[0]).nbytes
    whole = b"".join(bytes(memoryview(f)) for f in frames)
    parts = math.ceil(len(whole) / PART_BYTES)
    return [make(MsgType.WEIGHTS_PART, {"version": version, "part": i, "parts": parts, "size": len(whole), "head": head},
                 {"data": np.frombuffer(whole, np.uint8, min(PART_BYTES, len(whole) - i * PART_BYTES), i * PART_BYTES)})
            for i in range(parts)]


class Assembly:
    """Parts from one peer, in order, into whole messages of at most `max_bytes`."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._key: tuple[int, int, int, int] | None = None  # version, parts, size, head of the message under way
        self._next = 0
        self._buf = bytearray()

    def add(self, header: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> list[bytes] | None:
        """The whole message's frames once its last part is in, else None; raises ProtocolError (and drops the
        message under way) for a part that does not belong to it."""
        key = (header["version"], header["parts"], header["size"], header["head"])
        data = arrays.get("data")
        if header["part"] == 0:
            self._key, self._next, self._buf = key, 0, bytearray()
            if not 0 < key[3] <= key[2] <= self.max_bytes or key[1] > key[2]:
                self._key = None
                raise ProtocolError(f"WEIGHTS_PART of a {key[2]}-byte message with a {key[3]}-byte header in {key[1]} "
                                    f"parts: at most BUFFER_SIZE={self.max_bytes} bytes, header first")
        problem = None
        if self._key is None or key != self._key or header["part"] != self._next:
            problem = f"part {header['part']} of {key[1]} (version {key[0]}) is not the next part of a message under way"
        elif data is None or data.dtype != np.uint8 or data.ndim != 1 or not data.size:
            problem = "a WEIGHTS_PART carries one non-empty uint8 array 'data'"
        elif len(self._buf) + data.size > key[2]:
            problem = f"parts add up to more than the {key[2]} bytes announced"
        if problem or data is None:
            self._key = None
            raise ProtocolError(problem or "no data")
        self._buf += data.tobytes()
        self._next += 1
        if self._next < key[1]:
            return None
        whole, self._key, self._buf = bytes(self._buf), None, bytearray()
        if len(whole) != key[2]:
            raise ProtocolError(f"the parts hold {len(whole)} bytes, {key[2]} were announced")
        return [whole[:key[3]], whole[key[3]:]] if key[3] < key[2] else [whole]

    def weights(self, header: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Decoded | None:
        """`add`, then the whole parsed: the WEIGHTS message of the parts' version; raises ProtocolError otherwise."""
        whole = self.add(header, arrays)
        if whole is None:
            return None
        mtype, msg = parse(whole, self.max_bytes)
        if mtype is not MsgType.WEIGHTS or msg.header["version"] != header["version"]:
            raise ProtocolError(f"WEIGHTS_PARTs of version {header['version']} make a {mtype.name} message")
        return msg
