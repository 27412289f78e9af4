"""PASSWORD proofs, CurveZMQ keys and the broker's ZAP authenticator.

Password: HELLO -> CHALLENGE(nonce) -> AUTH(HMAC) -> WELCOME(HMAC), so the password never travels
and both sides learn when the other's differs. TLS: CurveZMQ; keys come from
TLS_CREDENTIALS_DIRECTORY or are derived from PASSWORD with scrypt, so, as in TMRL, the password
is all that must be shared.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import zmq
import zmq.auth
from tmrlx.common.config import KEYS, Config
from tmrlx.common.errors import ConfigError
from zmq.utils import z85

MIN_PASSWORD = 12  # characters a PASSWORD needs before a broker accepts connections from other machines
ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ZAP_DOMAIN = b"tmrlx"
SERVER_CERT = "server"
CLIENT_CERT = "client"


def auth_key(password: str) -> bytes:
    """HMAC key of the password proofs."""
    return hashlib.sha256(b"tmrlx-auth\0" + password.encode()).digest()


def weak_password(password: str) -> str | None:
    """Why `password` must not guard a broker open to other machines, or None when it may."""
    if password == KEYS["PASSWORD"].default:
        return "is TMRL's well-known default"
    if len(password) < MIN_PASSWORD:
        return f"has {len(password)} characters, fewer than {MIN_PASSWORD}"
    return None


def nonce() -> bytes:
    return secrets.token_bytes(16)


def mac(key: bytes, *parts: bytes | str) -> bytes:
    """HMAC-SHA256 of length-prefixed parts (no ambiguity between part boundaries)."""
    h = hmac.new(key, digestmod=hashlib.sha256)
    for p in parts:
        b = p.encode() if isinstance(p, str) else p
        h.update(len(b).to_bytes(4, "little") + b)
    return h.digest()


def verify(key: bytes, proof: bytes, *parts: bytes | str) -> bool:
    return hmac.compare_digest(proof, mac(key, *parts))


@dataclass(frozen=True)
class CurveKeys:
    """Z85 keys. The broker has `secret` of the server and `allowed` client keys; a client has its own pair."""

    server_public: bytes
    public: bytes
    secret: bytes
    allowed: frozenset[bytes]


@lru_cache(maxsize=8)
def derive_pair(password: str, label: str) -> tuple[bytes, bytes]:
    """A (public, secret) Z85 key pair from the password, with scrypt so guessing it is slow."""
    seed = hashlib.scrypt(password.encode(), salt=b"tmrlx-curve-" + label.encode(), n=2 ** 14, r=8, p=1, dklen=32)
    secret = z85.encode(seed)
    return zmq.curve_public(secret), secret


def _load(directory: Path, name: str, need_secret: bool) -> tuple[bytes, bytes | None]:
    path = directory / (f"{name}.key_secret" if need_secret else f"{name}.key")
    if not path.is_file():
        raise ConfigError(f"config key 'TLS_CREDENTIALS_DIRECTORY' has value {str(directory)!r}: {path.name} is missing "
                          "(create the keys with `tmrlx keys` and copy them as docs/protocol.md explains)")
    try:
        return zmq.auth.load_certificate(path)
    except (ValueError, OSError) as e:
        raise ConfigError(f"cannot read CurveZMQ key {path}: {e}") from None


def curve_keys(cfg: Config, server: bool) -> CurveKeys:
    """Keys of the broker (`server`) or of a client, from the credentials folder or the password."""
    if not cfg.TLS_CREDENTIALS_DIRECTORY:
        s_pub, s_sec = derive_pair(cfg.PASSWORD, SERVER_CERT)
        c_pub, c_sec = derive_pair(cfg.PASSWORD, CLIENT_CERT)
        return CurveKeys(s_pub, s_pub if server else c_pub, s_sec if server else c_sec, frozenset({c_pub}))
    folder = Path(cfg.TLS_CREDENTIALS_DIRECTORY).expanduser()
    if server:
        pub, sec = _load(folder, SERVER_CERT, True)
        allowed = frozenset(zmq.auth.load_certificate(p)[0] for p in folder.glob("*.key") if p.stem != SERVER_CERT)
        return CurveKeys(pub, pub, _secret(sec), allowed)
    server_pub, _ = _load(folder, SERVER_CERT, False)
    pub, sec = _load(folder, CLIENT_CERT, True)
    return CurveKeys(server_pub, pub, _secret(sec), frozenset())


def _secret(key: bytes | None) -> bytes:
    """`_load` with need_secret=True read a `.key_secret` file, which always holds the secret key."""
    assert key is not None
    return key


def secure_server(sock: zmq.Socket, keys: CurveKeys) -> None:
    sock.curve_server = True
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.zap_domain = ZAP_DOMAIN


def secure_client(sock: zmq.Socket, keys: CurveKeys) -> None:
    sock.curve_serverkey = keys.server_public
    sock.curve_publickey = keys.public
    sock.curve_secretkey = keys.secret


class ZapHandler:
    """ZeroMQ's authentication protocol (RFC 27), answered from the broker's own poll loop."""

    def __init__(self, ctx: zmq.Context, allowed: frozenset[bytes]):
        self.allowed = allowed
        self.socket = ctx.socket(zmq.REP)
        self.socket.linger = 0
        self.socket.bind(ZAP_ENDPOINT)

    def handle(self) -> tuple[bool, str]:
        """Answer one request; returns (accepted, peer address)."""
        frames = self.socket.recv_multipart()
        version, request_id, _domain, address, _identity, mechanism, *creds = frames + [b""] * max(0, 6 - len(frames))
        ok = mechanism == b"CURVE" and len(creds) == 1 and z85.encode(creds[0]) in self.allowed
        status = (b"200", b"OK") if ok else (b"400", b"CurveZMQ key not allowed")
        self.socket.send_multipart([version or b"1.0", request_id, *status, b"", b""])
        return ok, address.decode(errors="replace")

    def close(self) -> None:
        self.socket.close(linger=0)


def generate(folder: Path) -> list[Path]:
    """Write a server and a client key pair (Z85 certificate files) into `folder`; secret keys are readable by their
    owner only (0600, in a 0700 folder): pyzmq writes them with the default umask."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    written = []
    for name in (SERVER_CERT, CLIENT_CERT):
        if (folder / f"{name}.key_secret").exists():
            raise ConfigError(f"{folder / (name + '.key_secret')} exists: refusing to overwrite keys (remove it first)")
        public, secret = (Path(p) for p in zmq.auth.create_certificates(folder, name))
        secret.chmod(0o600)
        written += [public, secret]
    return written
