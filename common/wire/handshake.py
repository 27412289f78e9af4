"""The handshake both ends share: HELLO -> CHALLENGE -> AUTH -> WELCOME, with PASSWORD proofs both ways.

The client says who it is (role, session, observation layout) with a fresh nonce; the broker answers
with its own nonce, echoing the client's so a stale CHALLENGE is ignored; the client proves it knows
the password with an HMAC over both nonces, its session and role; the broker accepts with its own
proof, so the client learns when the broker's password differs. The password never travels. Each
proof is written once here (`client_proof`, `broker_proof`) and both ends call the same functions.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass, field
from typing import Any

from tmrlx.common.wire import security
from tmrlx.common.wire.protocol import MsgType, make

ROLES = ("actor", "learner", "status")  # status: `tmrlx status`, which only asks for the broker's state
Frames = list[Any]


def client_proof(key: bytes, client_nonce: bytes, server_nonce: bytes, session: str, role: str) -> bytes:
    return security.mac(key, "client", client_nonce, server_nonce, session, role)


def broker_proof(key: bytes, client_nonce: bytes, server_nonce: bytes, session: str) -> bytes:
    return security.mac(key, "broker", client_nonce, server_nonce, session)


@dataclass
class ClientHandshake:
    """The client's side, one per connection attempt: `hello` -> `on_challenge` -> `on_welcome`; `state` says where it is."""

    key: bytes
    role: str
    session: str
    spec_hash: str
    state: str = "hello"  # hello (HELLO not sent or not answered) -> auth (AUTH sent) -> ready
    hello_sent: bool = False
    nonce: bytes = field(default_factory=security.nonce)
    server_nonce: bytes = b""

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    def hello(self, policy_version: int, paced: bool = False) -> Frames:
        return make(MsgType.HELLO, {"role": self.role, "session": self.session, "spec_hash": self.spec_hash,
                                    "nonce": self.nonce, "policy_version": policy_version, "paced": paced})

    def on_challenge(self, header: dict) -> Frames | None:
        """The AUTH to send, or None for a CHALLENGE that is not an answer to our current HELLO."""
        if self.state != "hello" or header["echo"] != self.nonce:
            return None
        self.server_nonce = header["nonce"]
        self.state = "auth"
        return make(MsgType.AUTH, {"mac": client_proof(self.key, self.nonce, self.server_nonce, self.session, self.role)})

    def on_welcome(self, header: dict) -> bool | None:
        """True: accepted; False: the broker's proof is wrong (another PASSWORD); None: not expected now."""
        if self.state != "auth":
            return None
        if not hmac.compare_digest(header["mac"], broker_proof(self.key, self.nonce, self.server_nonce, self.session)):
            return False
        self.state = "ready"
        return True


@dataclass
class ServerHandshake:
    """The broker's side for one client between HELLO and AUTH."""

    role: str
    session: str
    address: str
    client_nonce: bytes
    policy_version: int
    started: float = field(default_factory=time.monotonic)
    paced: bool = False
    server_nonce: bytes = field(default_factory=security.nonce)

    @classmethod
    def from_hello(cls, header: dict, address: str, now: float) -> ServerHandshake:
        return cls(header["role"], header["session"], address, header["nonce"], header["policy_version"], now,
                   paced=header.get("paced", False))

    def challenge(self) -> Frames:
        return make(MsgType.CHALLENGE, {"nonce": self.server_nonce, "echo": self.client_nonce})

    def verify(self, key: bytes, header: dict) -> bool:
        """Does the AUTH prove the client knows the password?"""
        expected = client_proof(key, self.client_nonce, self.server_nonce, self.session, self.role)
        return hmac.compare_digest(header["mac"], expected)

    def welcome(self, key: bytes, credit: int, heartbeat_s: float) -> Frames:
        proof = broker_proof(key, self.client_nonce, self.server_nonce, self.session)
        return make(MsgType.WELCOME, {"mac": proof, "credit": credit, "heartbeat_s": heartbeat_s})
