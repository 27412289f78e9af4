"""The actor against a real broker and a learner stand-in: exactly-once rows, live weight swaps, broker restarts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from tmrlx.actor.envs import make_env
from tmrlx.actor.link import ActorClient
from tmrlx.actor.rollout import Rollout
from tmrlx.common.config import Config, load_config
from tmrlx.common.kinds import spec_from_config
from tmrlx.common.specs import ObsSpec
from tmrlx.learner.ingest import Ingest
from tmrlx.learner.link import LearnerClient

from tmrlx.testing import free_port, running_broker

ROOT = Path(__file__).resolve().parents[1]
PENDULUM = {"ENV": {"RTGYM_INTERFACE": "GYM:Pendulum-v1",
                    "RTGYM_CONFIG": {"time_step_duration": 0.05, "start_obs_capture": 0.05, "ep_max_length": 1000}},
            "RW_MAX_SAMPLES_PER_EPISODE": 30}


def learner_weights(spec: ObsSpec, seed: int) -> tuple[dict, dict]:
    """What the learner publishes: its Flax actor's exported weights and meta."""
    jax = pytest.importorskip("jax")
    from tmrlx.common import weights as contract
    from tmrlx.common.weights import Arch
    from tmrlx.learner.networks import Actor, dummy_inputs
    from tmrlx.learner.publish import actor_weights

    arch = Arch.for_spec(spec, hidden=(64, 64))
    params = Actor(spec, arch).init(jax.random.key(seed), dummy_inputs(spec))
    return actor_weights(params), contract.meta(spec, arch)


class Tee:
    """An ActorClient that also remembers every chunk handed to it (what the learner must get, once, in order)."""

    def __init__(self, client: ActorClient):
        self.client, self.sent = client, []

    def send_samples(self, arrays, policy_version=None):
        meta = self.client.send_samples(arrays, policy_version)
        self.sent.append((dict(meta), {k: np.array(v) for k, v in arrays.items()}))
        return meta

    def __getattr__(self, name):
        return getattr(self.client, name)


def received_rows(learner: LearnerClient, session: str, want: int, timeout: float = 30.0,
                  after_step0: int = -1) -> list[tuple[dict, dict]]:
    """Chunks of `session` until `want` rows arrived, the last one produced after row `after_step0` (or `timeout`)."""
    out: list[tuple[dict, dict]] = []
    rows, deadline = 0, time.monotonic() + timeout
    while (rows < want or not out or out[-1][0]["step0"] <= after_step0) and time.monotonic() < deadline:
        for meta, arrays in learner.poll_samples(timeout=0.2):
            if meta["session"] == session:
                out.append((meta, arrays))
                rows += len(arrays["reward"])
    return out


def assert_same_rows(sent: list[tuple[dict, dict]], got: list[tuple[dict, dict]]) -> None:
    """Every row the actor produced reached the learner exactly once and in order (step0 continuous)."""
    assert [m["step0"] for m, _ in got] == [m["step0"] for m, _ in sent]
    for field in sent[0][1]:
        np.testing.assert_array_equal(np.concatenate([a[field] for _, a in got]), np.concatenate([a[field] for _, a in sent]))


@pytest.mark.slow
def test_actor_with_a_real_broker_delivers_every_row_once_and_swaps_weights_in_real_time() -> None:
    cfg = Config.from_dict(PENDULUM)
    spec = spec_from_config(cfg)
    weights, meta = learner_weights(spec, seed=0)
    with running_broker(cfg.replace({"ENV": {"RTGYM_CONFIG": {"interface_kwargs": {"lockstep": False}}}})) as (_, ccfg):
        learner = LearnerClient(ccfg, spec)
        client = Tee(ActorClient(ccfg, spec, session="e2e-actor"))
        env = make_env(ccfg)
        try:
            assert learner.wait_connected(20) and client.wait_connected(20)
            rollout = Rollout(env, spec, client, max_steps=30, time_step=0.05, session="e2e-actor", chunk_seconds=0.25)
            done: list[dict] = []
            worker = threading.Thread(target=lambda: done.extend(rollout.run(episodes=2)))
            worker.start()
            first = received_rows(learner, "e2e-actor", 1)
            learner.publish_weights(17, weights, meta)  # while the actor is stepping
            worker.join(30)
            assert not worker.is_alive() and len(done) == 2
            assert client.flush(10)
            got = first + received_rows(learner, "e2e-actor", 62 - sum(len(a["reward"]) for _, a in first))
        finally:
            env.close()
            client.close()
        episodes = learner.poll_episodes()
        learner.close()
    assert_same_rows(client.sent, got)
    rows = np.concatenate([a["first"] for _, a in got])
    assert len(rows) == 62 and np.flatnonzero(rows).tolist() == [0, 31]
    versions = [m["policy_version"] for m, _ in got]
    assert versions[0] == -1 and versions[-1] == 17  # random actions until the weights, then the learner's policy
    assert [s["late_steps"] for s in done] == [0, 0], done
    assert all(0.04 < s["mean_step_s"] < 0.06 for s in done)
    assert [e["length"] for e in episodes] == [30, 30] and episodes[-1]["policy_version"] == 17


def start_broker(port: int, data_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "TMRLX_DATA": str(data_dir)}
    return subprocess.Popen([sys.executable, "-m", "tmrlx", "broker", "--port", str(port),
                             "--env.rtgym-interface", "GYM:Pendulum-v1"], env=env, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_actor_keeps_stepping_through_a_broker_restart_and_loses_only_what_its_bounded_queue_dropped(tmp_path: Path) -> None:
    port = free_port()
    cfg = load_config(overrides={**PENDULUM, "PORT": port, "RW_MAX_SAMPLES_PER_EPISODE": 50})
    spec = spec_from_config(cfg)
    broker = start_broker(port, tmp_path)
    learner = LearnerClient(cfg, spec, backoff=(0.2, 1.0))
    client = Tee(ActorClient(cfg, spec, session="restart-actor", max_queue=64, backoff=(0.2, 1.0)))
    env = make_env(cfg)  # lockstep: as fast as the CPU allows, so the outage piles up chunks
    stop = threading.Event()
    rollout = Rollout(env, spec, client, max_steps=50, time_step=0.05, session="restart-actor", chunk_seconds=0.05)
    worker = threading.Thread(target=rollout.run, kwargs={"stop": stop})
    try:
        assert learner.wait_connected(20) and client.wait_connected(20)
        worker.start()
        before = received_rows(learner, "restart-actor", 200)
        broker.send_signal(signal.SIGKILL)
        broker.wait()
        episodes_at_kill = rollout.episodes
        time.sleep(1.0)
        assert rollout.episodes > episodes_at_kill  # stepping goes on without a broker
        # the queue stays bounded (oldest chunks dropped and counted; +1: a chunk whose send failed goes back)
        assert client.stats()["queued"] <= 64 + 1
        restarted_at = client.sent[-1][0]["step0"]  # the newest chunk when the broker comes back
        broker = start_broker(port, tmp_path)
        after = received_rows(learner, "restart-actor", 1, after_step0=restarted_at)
        # the link came back: a chunk produced after the restart reached the learner. A row count is no such event:
        # the learner's inbox may still hold rows the old broker delivered before the kill, enough to return before
        # the actor reconnected (then `reconnects` was 0)
        assert after and after[-1][0]["step0"] > restarted_at, client.stats()
    finally:
        stop.set()
        worker.join(10)
        env.close()
        client.close()
        learner.close()
        broker.terminate()
        _, err = broker.communicate(timeout=10)
    assert "Traceback" not in err
    got = before + after  # chunks the broker held at the kill come again from the actor: the learner drops them
    ingest = Ingest(spec)
    ingested = [rows for m, a in got if (rows := ingest.rows_of(m, a))]
    unique = sorted({m["step0"] for m, _ in got})
    sent = {m["step0"]: a for m, a in client.sent}
    np.testing.assert_array_equal(np.concatenate([r["obs.obs"] for r in ingested]),  # each produced row once, in order
                                  np.concatenate([sent[s]["obs.obs"] for s in unique]))
    # every gap is rows the actor's bounded queue dropped (the chunks' headers tell the learner so, a queue late)
    assert 0 < ingest.counts["gap_rows"] <= client.stats()["dropped_rows"]
