"""`tmrlx test`, `tmrlx expert` and `tmrlx actor` as a user runs them (subprocesses, a real broker)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tmrlx.common import weights as contract
from tmrlx.common.config import Config
from tmrlx.common.kinds import spec_from_config
from tmrlx.learner.link import LearnerClient

from tmrlx.testing import running_broker

ROOT = Path(__file__).resolve().parents[1]
PENDULUM = {"ENV": {"RTGYM_INTERFACE": "GYM:Pendulum-v1"}, "RW_MAX_SAMPLES_PER_EPISODE": 20}
FLAGS = ["--env.rtgym-interface", "GYM:Pendulum-v1", "--rw-max-samples-per-episode", "20"]


def tmrlx(args: list[str], data: Path, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "TMRLX_DATA": str(data)}
    return subprocess.Popen([sys.executable, "-m", "tmrlx", *args, *FLAGS], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory) -> Path:
    """A policy the learner would publish, saved the way `tmrlx expert`/`test` read it."""
    jax = pytest.importorskip("jax")
    from tmrlx.common.weights import Arch
    from tmrlx.learner.networks import Actor, dummy_inputs
    from tmrlx.learner.publish import actor_weights

    spec = spec_from_config(Config.from_dict(PENDULUM))
    arch = Arch.for_spec(spec, hidden=(32, 32))
    params = Actor(spec, arch).init(jax.random.key(0), dummy_inputs(spec))
    path = tmp_path_factory.mktemp("weights") / "pendulum.npz"
    contract.save(path, 5, actor_weights(params), contract.meta(spec, arch))
    return path


def test_test_mode_prints_deterministic_returns_and_needs_no_broker(weights_file: Path, tmp_path: Path) -> None:
    outs = []
    for seed in ("1", "1"):
        proc = tmrlx(["test", "--weights", str(weights_file), "--episodes", "2", "--seed", seed, "--port", "1"], tmp_path)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
        lines = [line for line in out.splitlines() if "episode return" in line]
        assert len(lines) == 2 and all("length 20" in line and "policy v5" in line for line in lines)
        outs.append([line.split(",")[0] for line in lines])
    assert outs[0] == outs[1]  # same seed, deterministic policy: the same returns


def test_expert_mode_without_weights_says_what_to_do(tmp_path: Path) -> None:
    proc = tmrlx(["expert", "--episodes", "1"], tmp_path)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "expert mode needs weights" in err and "--weights" in err
    assert "Traceback" not in err
    proc = tmrlx(["test", "--weights", str(tmp_path / "nope.npz")], tmp_path)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "no such file" in err


@pytest.mark.slow
def test_expert_sends_its_fixed_policy_samples_and_two_actors_share_the_machine_and_stop_on_sigterm(weights_file: Path,
                                                                                       tmp_path: Path) -> None:
    cfg = Config.from_dict(PENDULUM)
    spec = spec_from_config(cfg)
    with running_broker(cfg) as (_, ccfg):
        learner = LearnerClient(ccfg, spec)
        try:
            assert learner.wait_connected(20)
            _, arrays, meta = contract.load(weights_file)
            learner.publish_weights(99, arrays, meta)  # the expert ignores them, the actor follows them
            port = ["--port", str(ccfg.PORT)]
            expert = tmrlx(["expert", "--weights", str(weights_file), "--episodes", "2", *port], tmp_path)
            _, err = expert.communicate(timeout=120)
            assert expert.returncode == 0 and "Traceback" not in err, err
            chunks = learner.poll_samples(timeout=5.0)
            chunks += learner.poll_samples(timeout=1.0)
            rows = sum(len(a["reward"]) for _, a in chunks)
            assert rows == 42 and {m["policy_version"] for m, _ in chunks} == {5}
            assert [e["policy_version"] for e in learner.poll_episodes()] == [5, 5]

            tester = tmrlx(["test", "--episodes", "1", *port], tmp_path)  # no weights file: the broker's
            out, err = tester.communicate(timeout=120)
            assert tester.returncode == 0 and "waiting for the learner's weights" in err and "policy v99" in out, err

            actors = [tmrlx(["actor", *port], tmp_path) for _ in range(2)]  # two on one machine, until told to stop
            deadline = time.monotonic() + 60
            got: dict[str, list] = {}
            def fed(chunks: list) -> bool:  # 100 rows and the broker's weights in use (an event, not a row count alone)
                return sum(len(a["reward"]) for _, a in chunks) >= 100 and chunks[-1][0]["policy_version"] == 99

            while len(got) < 2 or not all(fed(c) for c in got.values()):
                assert time.monotonic() < deadline, {k: len(v) for k, v in got.items()}
                for meta, arrays in learner.poll_samples(timeout=0.5):
                    got.setdefault(meta["session"], []).append((meta, arrays))
            for actor in actors:
                actor.send_signal(signal.SIGTERM)
            for actor in actors:
                _, err = actor.communicate(timeout=60)
                assert actor.returncode == 0 and "stopped by a signal" in err and "Traceback" not in err, err
            for meta, arrays in learner.poll_samples(timeout=1.0):
                got[meta["session"]].append((meta, arrays))
            for chunks in got.values():
                step0 = [m["step0"] for m, _ in chunks]
                assert step0 == sorted(set(step0)) and chunks[-1][0]["policy_version"] == 99  # followed the broker's weights
        finally:
            learner.close()


def test_weights_the_learner_saves_are_what_tmrlx_test_runs(tmp_path: Path, monkeypatch) -> None:
    """`SAVE_MODEL_EVERY`/checkpoint weights in the data folder's weights/ drive `tmrlx test` with no --weights."""
    from types import SimpleNamespace

    jax = pytest.importorskip("jax")
    from tmrlx.common.weights import Arch
    from tmrlx.learner.networks import Actor, dummy_inputs
    from tmrlx.learner.publish import actor_weights
    from tmrlx.learner.train import Counters, Trainer

    spec = spec_from_config(Config.from_dict(PENDULUM))
    arch = Arch.for_spec(spec, hidden=(16, 16))
    params = Actor(spec, arch).init(jax.random.key(3), dummy_inputs(spec))
    monkeypatch.setenv("TMRLX_DATA", str(tmp_path))
    trainer = SimpleNamespace(spec=spec, arch=arch, counters=Counters(version=1234))  # the version of the last weights published
    Trainer.save_weights(trainer, actor_weights(params), "myrun")
    proc = tmrlx(["test", "--episodes", "1", "--run-name", "myrun"], tmp_path)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "policy v1234" in out and "weights/myrun.npz" in err


def test_only_actors_take_a_test_episode_interval(capsys) -> None:
    from tmrlx.cli import ALIASES, build_parser

    def parse(command: str, *args: str):
        return build_parser(ALIASES.get(command, command)).parse_args([command, *args])

    assert parse("actor").test_episode_interval == 0  # TMRL's default: no test episodes
    assert parse("worker", "--test-episode-interval", "4").test_episode_interval == 4
    with pytest.raises(SystemExit):
        parse("actor", "--test-episode-interval", "-1")
    assert "-1 is negative: expected an integer >= 0" in capsys.readouterr().err
    assert not hasattr(parse("expert"), "test_episode_interval") and not hasattr(parse("test"), "test_episode_interval")
