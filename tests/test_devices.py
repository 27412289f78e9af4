"""Data parallel training: 2 and 4 devices give one device's losses and parameters, and the learner runs on them.

JAX reads `--xla_force_host_platform_device_count` when it starts, so the multi-device checks run this file as a
child process with 4 CPU devices (`python tests/test_devices.py OUT MODE [ALG]`), which saves what it computed in OUT
for the test to compare.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from tmrlx.common.config import load_config
from tmrlx.common.errors import ConfigError
from tmrlx.common.specs import Component, ObsSpec
from tmrlx.common.weights import Arch
from tmrlx.learner.devices import Devices
from tmrlx.learner.replay import init_replay
from tmrlx.learner.update import SAC

ROOT = Path(__file__).resolve().parents[1]
SPEC = ObsSpec((Component("x", (3,), history=2),), act_dim=2, act_buf_len=2)
ARCH = Arch("mlp", (8, 8))
ALGS = {"SAC": 2, "REDQSAC": 1}  # algorithm -> units per block (SAC's block is a scan, REDQ's one unit of G = 3)
COUNTS = (1, 2, 4)
BATCH = 16


def _config(alg: str, **overrides):
    return load_config(overrides={"BATCH_SIZE": BATCH, "CUDA_TRAINING": False, **overrides,
                                  "ALG": {"ALGORITHM": alg, "REDQ_N": 4, "REDQ_Q_UPDATES_PER_POLICY_UPDATE": 3,
                                          "LEARN_ENTROPY_COEF": True}})


def _flat(tree) -> dict[str, np.ndarray]:
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _blocks(out: Path, alg: str) -> None:
    """Child: one update block of `alg` per device count from the same state, replay contents and key."""
    from bench.learner import filled_replay

    facts: dict = {}
    host = jax.device_get(filled_replay(SPEC, 600))
    cfg, units = _config(alg), ALGS[alg]
    start = jax.device_get(jax.jit(SAC(cfg, SPEC, ARCH, units).init)(jax.random.PRNGKey(0)))
    for n in COUNTS:
        devices = Devices(jax.devices()[:n])
        sac = SAC(cfg, SPEC, ARCH, units, devices)
        state, replay = devices.put(start), devices.put(host)
        batch, _ = jax.jit(lambda r, k, sac=sac: sac.sample(r, sac.noise(k, r)["rows"][0]))(replay, jax.random.PRNGKey(1))
        state, info = sac.run(state, replay)
        np.savez(out / f"{n}.npz", **_flat({"state": state, "info": info}))
        leaves = jax.tree.leaves(state)
        facts[n] = {"state_devices": sorted({len(x.sharding.device_set) for x in leaves}),
                    "state_replicated": all(x.sharding.is_fully_replicated for x in leaves),
                    "batch_rows_per_device": sorted({s.data.shape[0] for s in batch["a"].addressable_shards})}
    try:
        SAC(_config(alg, BATCH_SIZE=6), SPEC, ARCH, units, Devices(jax.devices()[:4]))
    except ConfigError as e:
        facts["batch_error"] = str(e)
    (out / "facts.json").write_text(json.dumps(facts))


def _trainer(out: Path) -> None:
    """Child: the learner trains on 2 devices and checkpoints; the checkpoint resumes onto 2 devices and onto 1."""
    from tmrlx.common.kinds import spec_from_config
    from tmrlx.learner.checkpoint import Checkpoints
    from tmrlx.learner.source import GymSource
    from tmrlx.learner.train import Trainer

    os.environ["TMRLX_DATA"] = str(out)
    cfg = load_config(overrides={"ENV": {"RTGYM_INTERFACE": "GYM:Pendulum-v1", "RTGYM_CONFIG": {"act_buf_len": 0}},
                                 "CUDA_TRAINING": False, "TRAINING_DEVICES": 2, "MEMORY_SIZE": 1000, "BATCH_SIZE": 32,
                                 "ENVIRONMENT_STEPS_BEFORE_TRAINING": 100, "TRAINING_STEPS_PER_ROUND": 20,
                                 "ROUNDS_PER_EPOCH": 2, "MAX_EPOCHS": 1, "UPDATE_BUFFER_INTERVAL": 20,
                                 "UPDATE_MODEL_INTERVAL": 20, "RUN_NAME": "dp"})
    spec = spec_from_config(cfg)

    def trainer(devices: int, resume: bool = True) -> Trainer:
        t = Trainer(cfg.replace({"TRAINING_DEVICES": devices}), spec, GymSource("Pendulum-v1", spec, steps_per_poll=20),
                    arch=Arch.for_spec(spec, hidden=(16, 16)), checkpoints=Checkpoints(out / "ck"))
        if resume:
            assert t.resume() is not None
        return t

    first = trainer(2, resume=False)
    first.run()
    first.checkpoints.close()
    trained = jax.device_get({"state": first.state, "replay": first.replay})
    facts: dict = {"updates": first.counters.updates}
    for name, t in (("trained", first), ("resumed_on_2", trainer(2)), ("resumed_on_1", trainer(1))):
        leaves = jax.tree.leaves({"state": t.state, "replay": t.replay})
        facts[name] = {"where": sorted({(len(x.sharding.device_set), x.sharding.is_fully_replicated) for x in leaves}),
                       "same": all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(trained), jax.device_get(leaves)))}
        t.checkpoints.close()
    (out / "facts.json").write_text(json.dumps(facts))


def _run_child(out: Path, mode: str, *args: str) -> dict:
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, __file__, str(out), mode, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads((out / "facts.json").read_text())


@pytest.fixture(scope="module")
def blocks(tmp_path_factory):
    """alg -> (folder, facts) of the child that ran its blocks (each algorithm's child runs once per module)."""
    done: dict[str, tuple[Path, dict]] = {}

    def get(alg: str) -> tuple[Path, dict]:
        if alg not in done:
            out = tmp_path_factory.mktemp(alg)
            done[alg] = out, _run_child(out, "blocks", alg)
        return done[alg]

    return get


@pytest.mark.parametrize("alg", ["SAC", pytest.param("REDQSAC", marks=pytest.mark.slow)])
def test_two_and_four_devices_give_one_devices_losses_and_parameters(blocks, alg):
    out, facts = blocks(alg)
    one = np.load(out / "1.npz")
    assert any("loss_critic" in k for k in one.files) and any("critic_opt" in k for k in one.files)
    for n in COUNTS[1:]:
        several = np.load(out / f"{n}.npz")
        assert sorted(several.files) == sorted(one.files)
        for name in one.files:
            np.testing.assert_allclose(several[name], one[name], rtol=1e-4, atol=1e-5, err_msg=f"{n} devices: {name}")
        # really data parallel: each device drew its share of the batch, and the updated state is on every device
        assert facts[str(n)] == {"state_devices": [n], "state_replicated": True, "batch_rows_per_device": [BATCH // n]}


def test_a_batch_that_does_not_divide_among_the_devices_is_refused(blocks):
    assert "'BATCH_SIZE' has value 6: expected a multiple of the 4 training devices" in blocks("SAC")[1]["batch_error"]


def test_one_device_compiles_the_single_device_program():
    """No mesh, no sharding annotation: one device runs the program it ran before several were supported."""
    sac = SAC(_config("SAC"), SPEC, ARCH, 2, Devices(jax.devices()[:1]))
    state = jax.jit(sac.init)(jax.random.PRNGKey(0))
    text = sac.run.lower(state, init_replay(SPEC, 100)).as_text()
    assert text == SAC(_config("SAC"), SPEC, ARCH, 2).run.lower(state, init_replay(SPEC, 100)).as_text()
    assert "shard" not in text.lower()


def test_training_devices_key():
    cpu = len(jax.devices("cpu"))
    assert Devices.from_config(_config("SAC")).count == 1  # auto: one device on the CPU
    assert Devices.from_config(_config("SAC", TRAINING_DEVICES=1)).devices == (jax.devices("cpu")[0],)
    with pytest.raises(ConfigError, match=f"'TRAINING_DEVICES' has value {cpu + 1}: JAX sees {cpu} cpu device"):
        Devices.from_config(_config("SAC", TRAINING_DEVICES=cpu + 1))
    for bad in (0, "all", 1.5, True):
        with pytest.raises(ConfigError, match="TRAINING_DEVICES"):
            _config("SAC", TRAINING_DEVICES=bad)


def test_training_devices_flag(capsys, monkeypatch, tmp_path):
    from tmrlx.cli import main

    monkeypatch.setenv("TMRLX_DATA", str(tmp_path))
    for value, parsed in (("2", 2), ("auto", "auto")):
        assert main(["config", "show", "--training-devices", value]) == 0
        assert json.loads(capsys.readouterr().out)["TRAINING_DEVICES"] == parsed


@pytest.mark.slow
def test_the_learner_trains_on_two_devices_and_its_checkpoint_resumes_on_two_or_one(tmp_path):
    facts = _run_child(tmp_path, "trainer")
    assert facts["updates"] == 40
    assert facts["trained"]["where"] == facts["resumed_on_2"]["where"] == [[2, True]]
    assert facts["resumed_on_1"]["where"] == [[1, True]]
    assert facts["resumed_on_2"]["same"] and facts["resumed_on_1"]["same"]


if __name__ == "__main__":
    assert jax.device_count() == 4, "run by the tests with XLA_FLAGS=--xla_force_host_platform_device_count=4"
    {"blocks": _blocks, "trainer": _trainer}[sys.argv[2]](Path(sys.argv[1]), *sys.argv[3:])
