"""The NumPy policy equals the learner's Flax actor, rejects weights that do not fit, and never needs JAX."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from tmrlx.actor.policy import Policy
from tmrlx.common import weights as contract
from tmrlx.common.config import Config
from tmrlx.common.kinds import spec_from_config
from tmrlx.common.specs import ObsSpec
from tmrlx.common.weights import Arch, WeightsError

ROOT = Path(__file__).resolve().parents[1]
LAYOUTS = {
    "lidar-mlp": {"ENV": {"RTGYM_INTERFACE": "TM20LIDAR"}},
    "progress-mlp": {"ENV": {"RTGYM_INTERFACE": "SIMLIDARPROGRESS", "RTGYM_CONFIG": {"act_buf_len": 3}}},
    "gray-cnn": {"ENV": {"RTGYM_INTERFACE": "TM20FULL"}},
    "colour-cnn": {"ENV": {"RTGYM_INTERFACE": "SIMFULL", "IMG_GRAYSCALE": False, "IMG_HEIGHT": 56}},
    "one-frame-cnn": {"ENV": {"RTGYM_INTERFACE": "TM20FULL", "IMG_HIST_LEN": 1}},
}


def spec_of(name: str) -> ObsSpec:
    return spec_from_config(Config.from_dict(LAYOUTS[name]))


def random_parts(spec: ObsSpec, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Raw observations at their natural magnitudes (so the folded scales matter)."""
    parts = {}
    for c in spec.components:
        if c.dtype == "uint8":
            parts[c.name] = rng.integers(0, 256, (batch, *c.obs_shape), dtype=np.uint8)
        else:
            parts[c.name] = (rng.normal(0, 1, (batch, *c.obs_shape)) / c.scale).astype(np.float32)
    parts["act_buf"] = rng.uniform(-1, 1, (batch, spec.act_buf_len, spec.act_dim)).astype(np.float32)
    return parts


def flax_actor(spec: ObsSpec, seed: int):
    """The learner's actor with non-zero biases, its exported weights and meta."""
    jax = pytest.importorskip("jax")
    from tmrlx.learner.networks import Actor, dummy_inputs
    from tmrlx.learner.publish import actor_weights

    arch = Arch.for_spec(spec)
    actor = Actor(spec, arch)
    shapes = jax.eval_shape(actor.init, jax.random.key(seed), dummy_inputs(spec))  # eager CNN init is slow
    rng = np.random.default_rng(seed)
    params = jax.tree.map(lambda s: (rng.normal(0, 1, s.shape) / np.sqrt(np.prod(s.shape[:-1]) or 10)).astype(np.float32),
                          shapes)
    return jax.jit(actor.apply), params, actor_weights(params), contract.meta(spec, arch)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_numpy_policy_equals_flax_actor(layout: str) -> None:
    from tmrlx.learner.networks import deterministic_action, squashed_sample

    spec = spec_of(layout)
    actor, params, weights, meta = flax_actor(spec, seed=len(layout))
    policy = Policy(weights, meta, spec, version=7)
    rng = np.random.default_rng(0)
    parts = random_parts(spec, 5, rng)
    mu, log_std = actor(params, spec.normalise(parts))
    np_mu, np_log_std = policy.heads(parts)
    np.testing.assert_allclose(np_mu, mu, rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(np_log_std, log_std, rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(policy.actions(parts), deterministic_action(mu), atol=2e-5)
    eps = rng.standard_normal((5, spec.act_dim)).astype(np.float32)
    np.testing.assert_allclose(policy.actions(parts, eps), squashed_sample(mu, log_std, eps)[0], atol=2e-5)
    # the per-step path on one rtgym observation tuple gives the same as row 0 of the batch
    obs = tuple(parts[c.name][0] for c in spec.components) + tuple(parts["act_buf"][0])
    np.testing.assert_allclose(policy.act(obs), deterministic_action(mu)[0], atol=2e-5)
    np.testing.assert_allclose(policy.act(obs, eps[0]), squashed_sample(mu[:1], log_std[:1], eps[:1])[0][0], atol=2e-5)
    assert policy.version == 7 and np.all(np.abs(policy.actions(parts, 10 * eps)) <= 1.0)
    # batch 1 may split the big convs over two threads: the same numbers as on one
    split, serial = Policy(weights, meta, spec, threads=2), Policy(weights, meta, spec, threads=1)
    np.testing.assert_array_equal(split.act(obs, eps[0]), serial.act(obs, eps[0]))
    np.testing.assert_allclose(split.act(obs, eps[0]), squashed_sample(mu[:1], log_std[:1], eps[:1])[0][0], atol=2e-5)


def test_bad_weights_are_rejected_with_what_is_wrong() -> None:
    spec = spec_of("lidar-mlp")
    _, _, weights, meta = flax_actor(spec, seed=0)
    Policy(weights, meta, spec)  # the good ones load
    bad = {**weights, "hidden_1/kernel": weights["hidden_1/kernel"][:, :10]}
    with pytest.raises(WeightsError, match=r"hidden_1/kernel.*shape"):
        Policy(bad, meta, spec)
    with pytest.raises(WeightsError, match="'mu/bias'"):
        Policy({k: v for k, v in weights.items() if k != "mu/bias"}, meta, spec)
    with pytest.raises(WeightsError, match="does not use.*extra"):
        Policy({**weights, "extra/kernel": np.zeros(3, np.float32)}, meta, spec)
    with pytest.raises(WeightsError, match="arch.type"):
        Policy(weights, {**meta, "arch": {**meta["arch"], "type": "transformer"}}, spec)
    with pytest.raises(WeightsError, match="observation layout"):
        Policy(weights, meta, spec_of("progress-mlp"))
    with pytest.raises(WeightsError, match="'arch' and 'spec'"):
        Policy(weights, {"arch": meta["arch"]}, spec)
    with pytest.raises(WeightsError, match="dtype"):
        Policy({**weights, "mu/bias": np.zeros(3, np.int32)}, meta, spec)


def test_weights_file_round_trip_and_no_pickle(tmp_path: Path) -> None:
    spec = spec_of("lidar-mlp")
    _, _, weights, meta = flax_actor(spec, seed=1)
    path = tmp_path / "run.npz"
    contract.save(path, 42, weights, meta)
    version, arrays, meta2 = contract.load(path)
    assert version == 42 and meta2 == json.loads(json.dumps(meta)) and set(arrays) == set(weights)
    parts = random_parts(spec, 3, np.random.default_rng(1))
    np.testing.assert_array_equal(Policy(arrays, meta2, spec).actions(parts), Policy(weights, meta, spec).actions(parts))
    evil = tmp_path / "evil.npz"
    np.savez(evil, __meta__=np.array([{"arch": 1}], dtype=object))
    with pytest.raises(WeightsError, match="cannot read"):
        contract.load(evil)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(WeightsError, match="cannot read"):
        contract.load(tmp_path / "junk.npz")


def test_actor_imports_without_jax() -> None:
    """An actor machine needs no JAX: importing the actor with `jax` (and the learner) blocked works."""
    code = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("jax", "jaxlib", "flax", "optax", "orbax", "learner"):
                    raise ImportError(f"blocked: {name}")
        sys.meta_path.insert(0, Block())
        import tmrlx.actor.main, actor.rollout, actor.policy, actor.envs
        from tmrlx.cli import main
        import contextlib, io
        with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):
            main(["actor", "--help"])
        assert "--episodes" in out.getvalue()
        assert not any(m.split(".")[0] in ("jax", "flax", "learner") for m in sys.modules)
        print("ok")
    """)
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stderr
