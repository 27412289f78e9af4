"""The handshake both ends share: proofs both ways, stale answers ignored, a wrong password caught on each side."""

from tmrlx.common.wire.codec import decode
from tmrlx.common.wire.handshake import ClientHandshake, ServerHandshake
from tmrlx.common.wire.protocol import MsgType
from tmrlx.common.wire.security import auth_key

LIMIT = 1 << 20


def _header(frames, mtype):
    msg = decode(frames, LIMIT)
    assert msg.type == mtype
    return msg.header


def _run(client_password: str, broker_password: str):
    client = ClientHandshake(auth_key(client_password), "actor", "sess", "spec")
    hello = _header(client.hello(policy_version=3), MsgType.HELLO)
    server = ServerHandshake.from_hello(hello, "127.0.0.1", now=0.0)
    auth = client.on_challenge(_header(server.challenge(), MsgType.CHALLENGE))
    assert client.state == "auth" and auth is not None
    accepted = server.verify(auth_key(broker_password), _header(auth, MsgType.AUTH))
    welcome = _header(server.welcome(auth_key(broker_password), credit=16, heartbeat_s=1.0), MsgType.WELCOME)
    return client, server, accepted, welcome


def test_same_password_is_accepted_both_ways():
    client, server, accepted, welcome = _run("pw", "pw")
    assert accepted and server.policy_version == 3 and server.session == "sess"
    assert client.on_welcome(welcome) is True and client.ready and welcome["credit"] == 16


def test_a_wrong_password_is_caught_by_the_broker_and_by_the_client():
    client, _, accepted, welcome = _run("guess", "pw")
    assert not accepted  # the broker refuses the client's proof
    assert client.on_welcome(welcome) is False and not client.ready  # and the client would refuse the broker's


def test_stale_or_unexpected_answers_are_ignored():
    client = ClientHandshake(auth_key("pw"), "learner", "s", "spec")
    other = ServerHandshake.from_hello(_header(ClientHandshake(auth_key("pw"), "learner", "s", "spec").hello(0), MsgType.HELLO),
                                       "?", now=0.0)
    assert client.on_challenge(_header(other.challenge(), MsgType.CHALLENGE)) is None  # answers another HELLO's nonce
    assert client.state == "hello"
    assert client.on_welcome({"mac": b"x", "credit": 1}) is None  # WELCOME before AUTH: not expected
