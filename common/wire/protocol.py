"""Message types and the header each one must carry.

The grammar is written out in docs/protocol.md. `parse` turns frames into a checked message or
raises ProtocolError; what a SAMPLES chunk holds is the chunk contract's (`tmrlx.common.chunks`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import IntEnum
from typing import Any

import numpy as np
from tmrlx.common.chunks import META
from tmrlx.common.fields import (
    COUNT,
    FLAG,
    IDENT,
    MAP,
    VERSION,
    Field,
    counts,
    integer,
    listing,
    number,
    problems,
    raw,
    text,
)
from tmrlx.common.wire.codec import Decoded, ProtocolError, decode, encode


class MsgType(IntEnum):
    HELLO = 1  # client -> broker: who I am
    CHALLENGE = 2  # broker -> client: prove you know PASSWORD
    AUTH = 3  # client -> broker: the proof
    WELCOME = 4  # broker -> client: accepted (with the broker's own proof and the first credit)
    SAMPLES = 5  # actor -> broker -> learner: one columnar chunk
    CREDIT = 6  # broker -> actor, learner -> broker: you may send n more chunks
    WEIGHTS = 7  # learner -> broker -> actors: the latest actor network
    EPISODE = 8  # actor -> broker -> learner: statistics of one finished episode
    HEARTBEAT = 9  # both ways, when nothing else was sent for a while
    ERROR = 10  # a refusal or rejection, with the reason
    BYE = 11  # client -> broker: I am leaving
    ACK = 12  # learner -> broker: chunks ingested (per actor session, the highest seq) and rows it allows in total
    STATUS = 13  # status client -> broker: what is your state?
    STATE = 14  # broker -> status client: counters, the connected peers, the latest problems
    WEIGHTS_PART = 15  # learner -> broker -> actors: a slice of a WEIGHTS too large for a heartbeat (common.wire.parts)


NONCE, MAC = raw(16), raw(32)
CREDIT = integer(0, 2**31)
REASON = text(2000)
MAX_ACKS = 8192  # actor sessions one ACK may name (those whose chunks one poll returned)
SECONDS = number(0.0, 1e12)
MAX_LISTED = 200  # peers one STATE lists (the learner first): ~150 bytes each keeps it far below the 64 KiB header
# A row of STATE's peer table; samples: rows received from it; seen_s: since its last message
PEER = {"role": IDENT, "session": IDENT, "address": text(64), "samples": COUNT, "connected_s": SECONDS, "seen_s": SECONDS,
        "policy_version": VERSION}
PROBLEM_TEXT = 400
PROBLEM = {"kind": IDENT, "ago_s": SECONDS, "reason": text(PROBLEM_TEXT)}  # the latest refusal or rejection of a kind
# Every header key of every message type, checked by `parse` on whichever end receives it (unknown keys too).
SCHEMAS: dict[MsgType, dict[str, Field]] = {
    MsgType.HELLO: {"role": IDENT, "session": IDENT, "spec_hash": IDENT, "nonce": NONCE, "policy_version": VERSION,
                    "paced": FLAG.optional()},  # paced: an actor whose environment waits for sample credit (lockstep)
    MsgType.CHALLENGE: {"nonce": NONCE, "echo": NONCE},  # echo: the HELLO's nonce, so a stale CHALLENGE is ignored
    MsgType.AUTH: {"mac": MAC},
    MsgType.WELCOME: {"mac": MAC, "credit": CREDIT, "heartbeat_s": number(0.001, 60.0).optional()},
    MsgType.SAMPLES: META,  # the chunk contract's header (tmrlx.common.chunks)
    # n: more chunks the receiver may send; to an actor also ack (the highest seq of its chunks the learner ingested),
    # steps (rows a paced actor may produce)
    MsgType.CREDIT: {"n": CREDIT, "ack": VERSION.optional(), "steps": CREDIT.optional()},
    MsgType.WEIGHTS: {"version": VERSION, "meta": MAP},  # meta: the weights contract's (checked by the broker)
    MsgType.EPISODE: {"stats": MAP, "session": IDENT.optional()},  # stats: the episode contract's (checked where used)
    # version: from an actor, the WEIGHTS it just received; to the learner, the WEIGHTS the broker stored or refused
    MsgType.HEARTBEAT: {"version": VERSION.optional()},
    MsgType.ERROR: {"reason": REASON, "fatal": FLAG, "retry": FLAG.optional()},
    MsgType.BYE: {},
    # acks: session -> highest seq ingested; allow: the rows this learner connection may receive in total (rate limiter)
    MsgType.ACK: {"acks": counts(MAX_ACKS), "allow": COUNT.optional()},
    MsgType.STATUS: {},
    # part: this slice's index of parts; size: the whole message's bytes, head: its header frame's (common.wire.parts)
    MsgType.WEIGHTS_PART: {"version": VERSION, "part": COUNT, "parts": integer(1, 2**31), "size": COUNT, "head": COUNT},
    MsgType.STATE: {"counts": counts(64), "weights_version": VERSION, "peers": listing(PEER, MAX_LISTED),
                    "problems": listing(PROBLEM, 32)},  # counts: the broker's counters, connected actors, buffered rows
}


_TYPES = {int(t): t for t in MsgType}


def make(mtype: MsgType, header: Mapping[str, Any] | None = None, arrays: Mapping[str, np.ndarray] | None = None,
         spare: list[bytearray] | None = None) -> list:
    """Frames of one message (see codec.encode)."""
    return encode(int(mtype), header or {}, arrays, spare)


def error(reason: str, fatal: bool = False, retry: bool = False) -> list:
    """An ERROR message; `retry`: the client should say HELLO again (the broker does not know it)."""
    return make(MsgType.ERROR, {"reason": reason, "fatal": fatal, "retry": retry})


def parse(frames: Sequence[Any], max_bytes: int) -> tuple[MsgType, Decoded]:
    """Decode and check the type and its required header keys; raises ProtocolError."""
    msg = decode(frames, max_bytes)
    mtype = _TYPES.get(msg.type)  # a dict lookup: calling the enum cost ~1 us per message
    if mtype is None:
        raise ProtocolError(f"unknown message type {msg.type}")
    problem = problems(SCHEMAS[mtype], msg.header)
    if problem:
        raise ProtocolError(f"{mtype.name} header {problem}")
    if msg.layout and mtype not in (MsgType.SAMPLES, MsgType.WEIGHTS, MsgType.WEIGHTS_PART):
        raise ProtocolError(f"{mtype.name} carries no arrays, got {len(msg.layout)}")
    return mtype, msg
