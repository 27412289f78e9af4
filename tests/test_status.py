"""`tmrlx status`: a running broker's live state, asked by a client that is neither an actor nor the learner."""

import argparse
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tmrlx.actor.link import ActorClient
from tmrlx.broker.server import Broker, Peer
from tmrlx.common.config import load_config
from tmrlx.common.kinds import spec_from_config
from tmrlx.common.wire.liveness import Liveness
from tmrlx.common.wire.protocol import MAX_LISTED, MsgType, make, parse
from tmrlx.learner.link import LearnerClient

from tmrlx.cli import main
from tmrlx.status import StatusClient, render, run, with_rates
from tmrlx.testing import contract_weights, numbered_chunk, running_broker, wait_for

OVERRIDES = {"ENV": {"RTGYM_INTERFACE": "SIMLIDAR"}, "BUFFER_SIZE": 1 << 20, "PASSWORD": "correct horse battery staple",
             "NB_WORKERS": 1}
CFG = load_config(overrides=OVERRIDES)
SPEC = spec_from_config(CFG)
ROOT = Path(__file__).resolve().parents[1]


def status(cfg, **flags) -> tuple[int, str]:
    out = io.StringIO()
    code = run(cfg, argparse.Namespace(**{"json": False, "watch": False, "timeout": 10.0, **flags}), out=out)
    return code, out.getvalue()


@pytest.mark.parametrize("tls", [False, True])
def test_status_lists_the_actor_with_its_samples_and_is_neither_actor_nor_learner(tls):
    with running_broker(CFG.replace({"TLS": tls})) as (broker, cfg):
        actor = ActorClient(cfg, SPEC, session="actor-one")
        learner = LearnerClient(cfg, SPEC, window=1)  # takes one chunk: the rest stay buffered in the broker
        assert actor.wait_connected(10) and learner.wait_connected(10)
        for i in range(4):
            actor.send_samples(numbered_chunk(SPEC, i * 10, 10))
        assert actor.flush(10)
        watcher = StatusClient(cfg)  # at NB_WORKERS=1 with an actor in: not an actor, so let in
        learner.publish_weights(3, *contract_weights(SPEC))
        assert wait_for(lambda: actor.stats()["policy_version"] == 3)
        state = watcher.ask(10)
        assert state is not None, watcher.error
        code, text = status(cfg, json=True)
        assert code == 0
        shown = json.loads(text)
        for s in (state, shown):
            learners = [p for p in s["peers"] if p["role"] == "learner"]
            [one] = [p for p in s["peers"] if p["role"] == "actor"]
            assert [p["session"] for p in learners] == [learner.session]
            assert one["session"] == "actor-one" and one["samples"] == 40 and one["policy_version"] == 3
            assert one["address"] == "127.0.0.1" and 0 <= one["seen_s"] < 5
            assert s["counts"]["actors"] == 1 and s["counts"]["samples_in"] == 40 and s["weights_version"] == 3
            assert s["counts"]["buffered"] == broker.stats()["buffered"] > 0
        assert shown["peers"][1]["samples_per_s"] > 0
        assert broker.stats()["actors"] == 1 and broker.stats()["refused"] == 0
        [seen] = [p for p in list(broker.peers.values()) if p.session == watcher.session]  # still connected
        assert seen.role == "status"
        assert seen.policy_version == -1  # it was never given weights
        code, text = status(cfg)
        assert code == 0 and "actor-one" in text and "weights v3" in text and learner.session in text
        for client in (watcher, actor, learner):
            client.close()


def test_a_wrong_password_is_refused_and_the_refusal_shows_with_its_reason(caplog):
    with running_broker(CFG) as (broker, cfg):
        code, text = status(cfg.replace({"PASSWORD": "not the right one at all"}))
        assert code == 1 and text == ""
        assert any("refused" in r.getMessage() and "PASSWORD" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")
        code, text = status(cfg, json=True)
        state = json.loads(text)
        assert state["counts"]["refused"] == 1
        [problem] = state["problems"]
        assert problem["kind"] == "refuse" and "wrong PASSWORD" in problem["reason"]


def test_no_broker_is_a_clear_error(caplog):
    from tmrlx.testing import free_port

    code, _ = status(CFG.replace({"PORT": free_port()}), timeout=0.5)
    assert code == 1 and any("no answer from the broker" in r.getMessage() for r in caplog.records)


def test_json_from_the_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TMRLX_DATA", str(tmp_path))
    with running_broker(CFG) as (broker, cfg):
        assert main(["status", "--json", "--config", json.dumps({**OVERRIDES, "PORT": cfg.PORT})]) == 0
    state = json.loads(capsys.readouterr().out)
    assert state["peers"] == [] and state["weights_version"] == -1 and state["broker"].endswith(f":{cfg.PORT}")


def test_a_full_table_fits_one_message_and_passes_the_clients_checks():
    broker = Broker(CFG, host="127.0.0.1", port=0)
    try:
        for i in range(MAX_LISTED + 50):
            session = f"{i:04d}" + "s" * 60  # the longest identifiers
            broker.peers[session.encode()] = Peer("actor", session, "f" * 64, Liveness(), rows=2**40)
        broker._warn("refuse", "refused \x1b[2J" + "x" * 5000)  # bounded and printable
        mtype, msg = parse(make(MsgType.STATE, broker.state()), 1 << 20)
        assert mtype is MsgType.STATE and len(msg.header["peers"]) == MAX_LISTED
        assert msg.header["problems"][0]["reason"].startswith("refused ?[2J")
        assert "actors 250 (200 listed)" in render(msg.header, "tcp://x:1")
    finally:
        broker.close()


def test_rates_come_from_the_previous_state_or_since_connecting():
    peer = {"role": "actor", "session": "a", "samples": 300, "connected_s": 10.0}
    assert with_rates({"peers": [peer]}, None, 0.0)["peers"][0]["samples_per_s"] == 30.0
    before = {"peers": [{**peer, "samples": 100}]}
    assert with_rates({"peers": [peer]}, before, 2.0)["peers"][0]["samples_per_s"] == 100.0


@pytest.mark.slow
def test_watch_refreshes_until_ctrl_c(tmp_path):
    with running_broker(CFG) as (broker, cfg):
        env = {**os.environ, "TMRLX_DATA": str(tmp_path)}
        cmd = [sys.executable, "-m", "tmrlx", "status", "--watch", "--json", "--config",
               json.dumps({**OVERRIDES, "PORT": cfg.PORT})]
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        try:
            lines = [proc.stdout.readline(), proc.stdout.readline()]  # a second state: it refreshed
            assert all(json.loads(line)["counts"]["actors"] == 0 for line in lines)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(10) == 0
        finally:
            proc.kill()
