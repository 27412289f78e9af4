"""SIGKILL the broker, the learner and an actor, one at a time, mid-training (every role a process): training resumes
each time, the checkpoint is intact, and every row is accounted for: in the replay memory, or counted in a gap, dropped
by its actor or lost with the killed learner (docs/reliability.md, "Faults")."""

from __future__ import annotations

import re
import secrets
import signal
from pathlib import Path

import pytest
from tmrlx.common import paths
from tmrlx.common.config import load_config
from tmrlx.common.metrics import read_jsonl
from tmrlx.learner.checkpoint import Checkpoints

from tmrlx.demo import Child, role_argv, spawn, stop_in_order
from tmrlx.testing import free_port, wait_for

RUN = "faults"
SMALL = {"ENV": {"RTGYM_INTERFACE": "GYM:Pendulum-v1", "RTGYM_CONFIG": {"act_buf_len": 0}}, "CUDA_TRAINING": False,
         "MEMORY_SIZE": 20000, "BATCH_SIZE": 32, "ENVIRONMENT_STEPS_BEFORE_TRAINING": 100, "TRAINING_STEPS_PER_ROUND": 20,
         "ROUNDS_PER_EPOCH": 2, "MAX_EPOCHS": 100_000, "UPDATE_BUFFER_INTERVAL": 10, "UPDATE_MODEL_INTERVAL": 10,
         "MAX_TRAINING_STEPS_PER_ENVIRONMENT_STEP": 1.0, "RW_MAX_SAMPLES_PER_EPISODE": 50, "RUN_NAME": RUN,
         "TENSORBOARD": False, "SAVE_MODEL_EVERY": 0}


class Run:
    def __init__(self, tmp: Path):
        self.dir = tmp / "logs" / RUN
        self.dir.mkdir(parents=True)
        cfg = load_config(overrides={**SMALL, "PORT": free_port(), "PASSWORD": secrets.token_urlsafe(18)})
        self.cfg_file = self.dir / "config.json"
        self.cfg_file.write_text(cfg.to_json())
        self.children: dict[str, Child] = {}

    def start(self, name: str) -> None:
        self.children[name] = spawn(name, role_argv([name.rstrip("0123456789")], self.cfg_file), self.dir)

    def kill(self, name: str) -> None:
        child = self.children.pop(name)
        child.proc.send_signal(signal.SIGKILL)
        child.proc.wait()
        child.log.close()

    def rounds(self) -> list[dict]:
        return read_jsonl(self.dir / "metrics.jsonl")

    def episode_sessions(self) -> set[str]:
        """The actor streams the learner has logged an episode of."""
        log = self.dir / "episodes.jsonl"
        return {str(e["session"]) for e in read_jsonl(log) if "session" in e} if log.exists() else set()

    def trained_on(self, updates: int, after: int) -> bool:
        """A round logged after the first `after` rounds has at least `updates` updates (and every role is alive)."""
        dead = [n for n, c in self.children.items() if c.proc.poll() is not None]
        assert not dead, {n: self.children[n].tail() for n in dead}
        return any(r["updates"] >= updates for r in self.rounds()[after:])


@pytest.mark.slow
def test_sigkill_of_each_role_mid_training_loses_nothing_uncounted(tmp_path, monkeypatch):
    monkeypatch.setenv("TMRLX_DATA", str(tmp_path))
    run = Run(tmp_path)
    try:
        for name in ("broker", "learner", "actor0", "actor1"):
            run.start(name)
        assert wait_for(lambda: run.trained_on(100, 0), 180)

        # the broker: actors and the learner reconnect to a new one on the same port; actors send what was unacknowledged
        run.kill("broker")
        before = run.rounds()
        run.start("broker")
        assert wait_for(lambda: run.trained_on(before[-1]["updates"] + 100, len(before)), 120)
        assert run.rounds()[-1]["lost_rows"] == 0  # the broker's FIFO died with it: every chunk came again

        # the learner: a new one resumes from the last checkpoint; rows it had ingested since are lost, and counted
        run.kill("learner")
        before = run.rounds()
        run.start("learner")
        assert wait_for(lambda: "resuming from checkpoint" in (run.dir / "learner.log").read_text(), 120)
        assert wait_for(lambda: run.trained_on(before[-1]["updates"] + 100, len(before)), 180)
        lost_by_learner = run.rounds()[-1]["lost_rows"]  # what it had acknowledged since its checkpoint

        # an actor: the others go on and a new one joins; what the dead one held unacknowledged died with it
        run.kill("actor0")
        before, streams = run.rounds(), run.episode_sessions()
        run.start("actor2")
        assert wait_for(lambda: run.trained_on(before[-1]["updates"] + 100, len(before))
                        and run.episode_sessions() - streams, 120)  # the new actor's rows reached the learner
    finally:
        stop_in_order(list(run.children.values()))
    final = run.rounds()[-1]
    assert final["lost_rows"] == lost_by_learner  # the broker's and the actor's deaths lost nothing the learner saw

    checkpoints = Checkpoints(paths.checkpoints_dir() / RUN)
    meta = checkpoints.read_meta(checkpoints.steps()[0])  # the learner saved on SIGINT: the newest is complete
    sessions, ingest = meta["ingest"]["sessions"], meta["ingest"]
    checkpoints.close()
    assert sum(s[0] for s in sessions.values()) == ingest["rows"] + ingest["counts"]["gap_rows"]
    assert ingest["rows"] == meta["counters"]["samples"]
    for name in ("actor1", "actor2"):  # stopped cleanly: each row they produced is in the replay memory or a counted gap
        text = (run.dir / f"{name}.log").read_text()
        session, produced, unacked = re.search(r"stream (\w+): rows produced (\d+),.* not acknowledged (\d+)", text).groups()
        assert int(unacked) == 0, text[-2000:]
        assert sessions.get(session, [0])[0] == int(produced)  # a stream that produced nothing has no entry
    assert len(sessions) >= 3 and final["updates"] > 300
    print(f"\nrows ingested {final['ingested_rows']}, duplicates dropped {final['duplicate_rows']}, dropped by actors "
          f"{final['actor_dropped_rows']}, lost with the killed learner {final['lost_rows']}; streams {len(sessions)}")
