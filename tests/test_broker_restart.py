"""A broker killed mid-run comes back on the same port: actors and the learner reconnect by themselves."""

import os
import signal
import subprocess
import sys
import time

import pytest
from tmrlx.actor.link import ActorClient
from tmrlx.common.config import load_config
from tmrlx.common.kinds import spec_from_config
from tmrlx.learner.link import LearnerClient

from tmrlx.testing import contract_weights, free_port, numbered_chunk, rows_of, wait_for


def start_broker(port, data_dir, **popen):
    env = {**os.environ, "TMRLX_DATA": str(data_dir)}
    return subprocess.Popen([sys.executable, "-m", "tmrlx", "broker", "--port", str(port),
                             "--env.rtgym-interface", "SIMLIDAR"], env=env, stderr=subprocess.PIPE, text=True, **popen)


def test_a_broker_started_in_the_background_still_stops_on_sigint(tmp_path):
    """A shell starts background jobs with SIGINT ignored (`tmrlx demo &`): the broker must not inherit that, or the
    demo's Ctrl+C-style stop waits for its timeout and kills it."""
    proc = start_broker(free_port(), tmp_path, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        line = proc.stderr.readline()
        while "listening on" not in line:
            assert line, "the broker exited before listening"
            line = proc.stderr.readline()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        proc.kill()


def collect_rows(learner, session, want, timeout=30.0):
    rows, deadline = [], time.monotonic() + timeout
    while len(rows) < want and time.monotonic() < deadline:
        rows += rows_of(learner.poll_samples(timeout=0.2)).get(session, [])
    return rows


@pytest.mark.slow
def test_everyone_reconnects_after_a_broker_restart_and_queued_samples_arrive(tmp_path):
    port = free_port()
    cfg = load_config(overrides={"ENV": {"RTGYM_INTERFACE": "SIMLIDAR"}, "PORT": port})
    spec = spec_from_config(cfg)
    broker = start_broker(port, tmp_path)
    actor = ActorClient(cfg, spec, backoff=(0.2, 1.0), max_queue=8)
    learner = LearnerClient(cfg, spec, backoff=(0.2, 1.0))
    try:
        assert actor.wait_connected(20) and learner.wait_connected(20)
        learner.publish_weights(1, *contract_weights(spec, 1.0))
        for i in range(5):
            actor.send_samples(numbered_chunk(spec, 10 * i, 10))
        assert collect_rows(learner, actor.session, 50) == list(range(50))
        learner.poll_samples()  # what the last poll returned is ingested: the learner acknowledges it
        assert wait_for(lambda: actor.stats()["held"] == 0, 10)  # all acked: nothing of before is sent again

        broker.send_signal(signal.SIGKILL)
        broker.wait()
        for i in range(5, 25):  # the real-time loop goes on: 20 chunks for a queue of 8 (those sent into the dead
            actor.send_samples(numbered_chunk(spec, 10 * i, 10))  # connection come back to it unacked)
        broker = start_broker(port, tmp_path)

        assert collect_rows(learner, actor.session, 80) == list(range(170, 250))  # the newest 8 chunks
        assert actor.stats()["dropped"] == 12  # the 12 oldest, each counted
        assert actor.connected and learner.connected
        assert actor.stats()["reconnects"] >= 1 and learner.stats()["reconnects"] >= 1
        learner.publish_weights(2, *contract_weights(spec, 0.0))  # weights flow again too
        assert wait_for(lambda: actor.stats()["policy_version"] == 2, 10)
    finally:
        actor.close()
        learner.close()
        broker.terminate()
        _, err = broker.communicate(timeout=10)
    assert "Traceback" not in err
