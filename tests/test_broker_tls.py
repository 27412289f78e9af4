"""TLS: CurveZMQ end to end; a tap on the wire sees neither the password nor sample bytes."""

import socket
import threading
import time

import numpy as np
import pytest
from tmrlx.actor.link import ActorClient
from tmrlx.common.config import load_config
from tmrlx.common.kinds import spec_from_config
from tmrlx.common.wire import security
from tmrlx.learner.link import LearnerClient

from tmrlx.testing import contract_weights, numbered_chunk, running_broker, wait_for

PASSWORD = "correct horse battery staple"
CFG = load_config(overrides={"ENV": {"RTGYM_INTERFACE": "SIMLIDAR"}, "PASSWORD": PASSWORD})
SPEC = spec_from_config(CFG)
PATTERN = np.frombuffer(b"SECRET-LIDAR-PAYLOAD-0123456789:)" * 3, np.uint8)[:76].view(np.float32)  # 19 floats


class Tap:
    """A loopback TCP relay that records every byte it forwards, both ways, each read held `delay` s (a long link)."""

    def __init__(self, target_port: int, delay: float = 0.0):
        self.captured = bytearray()
        self.delay = delay
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._target = target_port
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._target))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src, dst):
        try:
            while data := src.recv(65536):
                with self._lock:
                    self.captured += data
                time.sleep(self.delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                s.close()

    def close(self):
        self._server.close()


def exchange_through_tap(cfg):
    """Weights one way and a chunk with a known pattern the other, through a tap; returns the bytes seen."""
    with running_broker(cfg) as (broker, client_cfg):
        tap = Tap(broker.port)
        tapped = client_cfg.replace({"PORT": tap.port})
        learner, actor = LearnerClient(tapped, SPEC), ActorClient(tapped, SPEC)
        try:
            assert learner.wait_connected(20) and actor.wait_connected(20), (learner.error, actor.error)
            chunk = numbered_chunk(SPEC, 0, 8)
            chunk["obs.lidar"][:] = PATTERN
            actor.send_samples(chunk)
            got, deadline = [], time.monotonic() + 20
            while not got and time.monotonic() < deadline:
                got = learner.poll_samples(timeout=0.2)
            np.testing.assert_array_equal(got[0][1]["obs.lidar"], chunk["obs.lidar"])
            arrays, meta = contract_weights(SPEC)
            arrays["mu/bias"] = PATTERN[:3]  # a known pattern in the weights too
            learner.publish_weights(3, arrays, meta)
            assert wait_for(lambda: actor.stats()["policy_version"] == 3, 20)
        finally:
            actor.close()
            learner.close()
            tap.close()
    return bytes(tap.captured)


def test_the_tap_sees_samples_in_clear_without_tls():
    captured = exchange_through_tap(CFG)
    assert PATTERN.tobytes() in captured  # the tap works: without TLS the samples are readable
    assert PASSWORD.encode() not in captured  # the password never travels, even in clear mode


@pytest.mark.slow
def test_tls_works_end_to_end_and_hides_password_and_samples():
    captured = exchange_through_tap(CFG.replace({"TLS": True}))
    assert len(captured) > 8 * PATTERN.nbytes  # traffic did go through the tap
    assert PATTERN.tobytes() not in captured and PATTERN.tobytes()[:16] not in captured
    assert PASSWORD.encode() not in captured


def test_tls_connects_over_a_link_where_connecting_outlasts_the_silence_limit():
    """With 0.5 s each way, connecting takes ~11 one-way trips (5.5 s: ZMTP greeting and CurveZMQ, 7 trips, then
    HELLO to WELCOME), more than a client with 1.5 s heartbeats stays silent (4.5 s), though no stage takes that long
    (~1 s, leaving 3.5 s for a busy machine): each new stage of connecting must restart the client's silence clock, or
    it gives up and retries for ever."""
    with running_broker(CFG.replace({"TLS": True})) as (broker, cfg):
        tap = Tap(broker.port, delay=0.5)
        actor = ActorClient(cfg.replace({"PORT": tap.port}), SPEC, heartbeat_s=1.5)
        try:
            assert actor.wait_connected(30), actor.stats()
            assert actor.stats()["reconnects"] == 0
        finally:
            actor.close()
            tap.close()


def test_tls_with_wrong_password_is_refused_on_both_sides():
    with running_broker(CFG.replace({"TLS": True})) as (broker, cfg):
        intruder = ActorClient(cfg.replace({"PASSWORD": "guess"}), SPEC)
        assert not intruder.wait_connected(15)
        assert "keys differ" in intruder.error and "PASSWORD" in intruder.error
        assert broker.stats()["refused"] >= 1
        intruder.close()
        plain = ActorClient(cfg.replace({"TLS": False}), SPEC)  # an unencrypted client gets nowhere either
        assert not plain.wait_connected(4)
        plain.close()
        actor = ActorClient(cfg, SPEC)
        assert actor.wait_connected(15)
        actor.close()


def test_tls_with_keys_from_a_credentials_folder(tmp_path):
    security.generate(tmp_path / "keys")
    with running_broker(CFG.replace({"TLS": True, "TLS_CREDENTIALS_DIRECTORY": str(tmp_path / "keys")})) as (broker, cfg):
        actor = ActorClient(cfg, SPEC)
        assert actor.wait_connected(15)
        actor.close()
        derived = ActorClient(cfg.replace({"TLS_CREDENTIALS_DIRECTORY": ""}), SPEC)  # password-derived keys differ
        assert not derived.wait_connected(15) and "keys differ" in derived.error
        derived.close()


def test_zap_refuses_a_client_key_missing_from_the_allow_list(tmp_path, caplog):
    """Right server key, own client key that the broker's folder does not list: CurveZMQ completes, ZAP says no."""
    security.generate(tmp_path / "keys")
    security.generate(tmp_path / "stranger")
    (tmp_path / "stranger" / "server.key").write_bytes((tmp_path / "keys" / "server.key").read_bytes())
    with running_broker(CFG.replace({"TLS": True, "TLS_CREDENTIALS_DIRECTORY": str(tmp_path / "keys")})) as (broker, cfg):
        stranger = ActorClient(cfg.replace({"TLS_CREDENTIALS_DIRECTORY": str(tmp_path / "stranger")}), SPEC)
        assert not stranger.wait_connected(15) and "keys differ" in stranger.error
        stranger.close()
        assert any("not allowed" in r.getMessage() for r in caplog.records if r.name == "tmrlx.broker")
        assert broker.stats()["refused"] >= 1 and broker.stats()["actors"] == 0
        listed = ActorClient(cfg, SPEC)  # the listed client still gets in
        assert listed.wait_connected(15)
        listed.close()
