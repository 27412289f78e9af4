"""The weights contract: what the learner writes is what the actors read, under the same names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from tmrlx.actor.policy import Policy, load_policy
from tmrlx.common import weights as contract
from tmrlx.common.config import Config
from tmrlx.common.errors import ConfigError
from tmrlx.common.kinds import spec_from_config
from tmrlx.common.specs import ObsSpec
from tmrlx.common.weights import Arch, WeightsError

ROOT = Path(__file__).resolve().parents[1]


def spec_of(interface: str) -> ObsSpec:
    return spec_from_config(Config.from_dict({"ENV": {"RTGYM_INTERFACE": interface}}))


def flax_params(spec: ObsSpec, arch: Arch, seed: int = 0) -> dict:
    """The learner's actor variables, random (the CNN's eager init is slow: shapes first, then NumPy)."""
    jax = pytest.importorskip("jax")
    from tmrlx.learner.networks import Actor, dummy_inputs

    shapes = jax.eval_shape(Actor(spec, arch).init, jax.random.key(seed), dummy_inputs(spec))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: rng.normal(0, 0.1, s.shape).astype(np.float32), shapes)


@pytest.mark.parametrize("interface,hidden", [("TM20LIDAR", (256, 256)), ("TM20LIDARPROGRESS", (32, 16, 8)),
                                              ("TM20FULL", (256, 256))])
def test_flax_actor_and_numpy_policy_use_the_contract_names(interface: str, hidden: tuple[int, ...]) -> None:
    from tmrlx.learner.publish import actor_weights

    spec = spec_of(interface)
    arch = Arch.for_spec(spec, hidden)
    arrays = actor_weights(flax_params(spec, arch))
    assert set(arrays) == contract.actor_names(arch)
    assert {k: v.shape for k, v in arrays.items()} == contract.actor_shapes(spec, arch)  # what the broker bounds
    policy = Policy(arrays, contract.meta(spec, arch), spec)  # takes each name it needs, refuses any other
    assert policy.arch == arch


def test_weights_the_learner_saves_load_back_unchanged_through_the_actor_path(tmp_path: Path, monkeypatch) -> None:
    from tmrlx.learner.publish import actor_weights
    from tmrlx.learner.train import Counters, Trainer

    monkeypatch.setenv("TMRLX_DATA", str(tmp_path))
    spec = spec_of("TM20FULL")
    arch = Arch.for_spec(spec, hidden=(32, 32))
    arrays = actor_weights(flax_params(spec, arch, seed=4))
    trainer = SimpleNamespace(spec=spec, arch=arch, counters=Counters(version=321))
    saved = Trainer.save_weights(trainer, arrays, "run_321")

    path = contract.find("run", tmp_path / "weights", None)
    assert path == saved
    version, loaded, meta = contract.load(path)
    assert version == 321 and meta == json.loads(json.dumps(contract.meta(spec, arch)))  # as JSON: tuples are lists
    assert contract.parse_meta(meta) == (arch, spec)
    assert set(loaded) == set(arrays)
    for name, a in arrays.items():
        assert loaded[name].dtype == np.float32
        np.testing.assert_array_equal(loaded[name], a)
    policy = load_policy(path, spec, threads=1)
    assert policy.version == 321 and policy.arch == arch


def test_load_policy_turns_bad_files_into_config_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="cannot read weights file"):
        load_policy(junk)
    spec = spec_of("TM20LIDAR")
    arch = Arch.for_spec(spec, hidden=(8, 8))
    wrong = tmp_path / "wrong.npz"
    contract.save(wrong, 1, {"mu/kernel": np.zeros((8, 3), np.float32)}, contract.meta(spec, arch))
    with pytest.raises(ConfigError, match="'hidden_0/kernel'"):
        load_policy(wrong, spec)


def test_arch_from_dict_fills_defaults_and_round_trips() -> None:
    assert Arch.from_dict({}) == Arch()
    assert Arch.from_dict({"type": "cnn", "hidden": [64]}) == Arch("cnn", (64,))
    arch = Arch("cnn", (32, 16), ((8, 4, 2), (16, 3, 1)), -5.0, 1.0)
    assert Arch.from_dict(arch.to_dict()) == arch


@pytest.mark.parametrize("arch,key", [
    ({"type": "transformer"}, "arch.type"),
    ({"hidden": [256, 0]}, "arch.hidden"),
    ({"hidden": "256"}, "arch.hidden"),
    ({"hidden": [2.5]}, "arch.hidden"),
    ({"convs": [[64, 8]]}, r"arch.convs\[0\]"),
    ({"convs": [[64, 8, 2], [64, "4", 2]]}, r"arch.convs\[1\]"),
    ({"convs": 3}, "arch.convs"),
    ({"log_std_min": "low"}, "arch.log_std_min"),
    ({"log_std_max": float("nan")}, "arch.log_std_max"),
    ({"log_std_min": 3.0}, "arch.log_std_max"),
    (["mlp"], "'arch'"),
])
def test_arch_from_dict_names_the_bad_key(arch, key: str) -> None:
    with pytest.raises(WeightsError, match=key):
        Arch.from_dict(arch)


def test_parse_meta_needs_arch_and_spec() -> None:
    spec = spec_of("TM20LIDAR")
    with pytest.raises(WeightsError, match="'arch' and 'spec'"):
        contract.parse_meta({"arch": Arch().to_dict()})
    with pytest.raises(WeightsError, match="'arch' and 'spec'"):
        contract.parse_meta({"arch": {}, "spec": {"components": "?"}})
    assert contract.parse_meta({"arch": {}, "spec": spec.to_dict()}) == (Arch(), spec)


def test_find_picks_the_given_file_the_newest_in_a_folder_or_the_runs_newest(tmp_path: Path) -> None:
    def touch(name: str, mtime: int) -> Path:
        p = tmp_path / name
        p.write_bytes(b"")
        os.utime(p, (mtime, mtime))
        return p

    old, new = touch("run.npz", 100), touch("run_250.npz", 200)
    for other in ("run2.npz", "other.npz", "run_x.npz"):  # not the run's: another run, a hand-named file
        touch(other, 300)
    assert contract.find("run", tmp_path, None) == new
    assert contract.find("run", tmp_path, old) == old
    newest = touch("hand-picked.npz", 600)
    assert contract.find("run", tmp_path, tmp_path) == newest  # a folder: its newest .npz, whatever its name
    assert contract.find("none", tmp_path, None) is None
    with pytest.raises(ConfigError, match="no such file"):
        contract.find("run", tmp_path, tmp_path / "missing.npz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no .npz"):
        contract.find("run", tmp_path, tmp_path / "empty")


def test_learner_imports_without_the_actor() -> None:
    """The learner reaches the weights format through `common.weights`, never through the actor's modules."""
    code = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.startswith("tmrlx.actor"):
                    raise ImportError(f"blocked: {name}")
        sys.meta_path.insert(0, Block())
        import tmrlx.learner.main, tmrlx.learner.train, tmrlx.learner.source
        print("ok")
    """)
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stderr
