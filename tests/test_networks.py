"""The Flax networks honour the weights contract and compute what TMRL's do."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tmrlx.common import weights as contract
from tmrlx.common.config import load_config
from tmrlx.common.kinds import spec_from_config
from tmrlx.common.weights import Arch
from tmrlx.learner.networks import (
    Actor,
    conv,
    critic_ensemble,
    deterministic_action,
    dummy_inputs,
    patches,
    squashed_sample,
)
from tmrlx.learner.publish import actor_weights, params_from_weights


def actor_weights_shapes(params):
    return {"/".join(str(k.key) for k in path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(params["params"])}


def _spec(interface: str):
    return spec_from_config(load_config(overrides={"ENV": {"RTGYM_INTERFACE": interface}}))


@pytest.mark.parametrize("shape,k,s", [((2, 13, 13, 5), 4, 2), ((2, 64, 64, 4), 8, 2), ((2, 29, 29, 64), 4, 2),
                                       ((2, 13, 13, 64), 4, 2), ((2, 5, 5, 128), 4, 2), ((2, 9, 9, 64), 3, 2)])
def test_conv_and_its_gradients_match_xla_convolution(shape, k, s):
    """`conv` (with its patch-matmul kernel gradient on few input channels) against XLA's own convolution."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=shape).astype(np.float32))
    w = jnp.asarray(rng.normal(size=(k, k, shape[-1], 7)).astype(np.float32))
    ref = lambda x, w: jax.lax.conv_general_dilated(x, w, (s, s), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))  # noqa: E731
    got = conv(x, w, s)
    np.testing.assert_allclose(got, ref(x, w), rtol=1e-4, atol=1e-3)
    probe = jnp.asarray(rng.normal(size=got.shape).astype(np.float32))
    grads = jax.grad(lambda x, w: jnp.sum(conv(x, w, s) * probe), argnums=(0, 1))(x, w)
    ref_grads = jax.grad(lambda x, w: jnp.sum(ref(x, w) * probe), argnums=(0, 1))(x, w)
    for g, r in zip(grads, ref_grads):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-3)


def test_patches_are_kernel_ordered_windows():
    x = np.arange(2 * 7 * 7 * 3, dtype=np.float32).reshape(2, 7, 7, 3)
    p = np.asarray(patches(jnp.asarray(x), 3, 2))
    assert p.shape == (2, 3, 3, 27)
    np.testing.assert_array_equal(p[1, 2, 1], x[1, 4:7, 2:5].reshape(-1))


@pytest.mark.parametrize("interface,n_params", [("TM20LIDAR", 83), ("TM20FULL", 137)])
def test_actor_parameter_names_and_tmrl_sizes(interface, n_params):
    spec = _spec(interface)
    arch = Arch.for_spec(spec)
    params = jax.eval_shape(Actor(spec, arch).init, jax.random.key(0), dummy_inputs(spec, 2))
    w = {name: np.zeros(v.shape, v.dtype) for name, v in actor_weights_shapes(params).items()}
    convs = [f"conv_{i}/{p}" for i in range(4) for p in ("kernel", "bias")] if arch.type == "cnn" else []
    assert set(w) == set(convs + [f"{m}/{p}" for m in ("hidden_0", "hidden_1", "mu", "log_std") for p in ("kernel", "bias")])
    assert w["hidden_0/kernel"].shape == (n_params, 256)
    assert w["mu/kernel"].shape == (256, 3)
    if convs:
        assert w["conv_0/kernel"].shape == (8, 8, 4, 64) and w["conv_3/kernel"].shape == (4, 4, 128, 128)
    assert all(v.dtype == np.float32 for v in w.values())
    assert Arch.from_dict(contract.meta(spec, arch)["arch"]) == arch


def test_weights_round_trip_gives_the_same_actor():
    spec = _spec("TM20LIDAR")
    arch = Arch.for_spec(spec, hidden=(32, 32))
    actor = Actor(spec, arch)
    params = jax.jit(actor.init)(jax.random.key(1), dummy_inputs(spec))
    x = dummy_inputs(spec, 3)
    x["lidar"] = np.random.default_rng(0).random(x["lidar"].shape, dtype=np.float32)
    apply = jax.jit(actor.apply)
    mu, log_std = apply(params, x)
    mu2, log_std2 = apply(params_from_weights(actor_weights(params)), x)
    np.testing.assert_array_equal(mu, mu2)
    np.testing.assert_array_equal(log_std, log_std2)
    assert np.all(log_std >= arch.log_std_min) and np.all(log_std <= arch.log_std_max)


def test_squashed_sample_log_prob_matches_change_of_variables():
    rng = np.random.default_rng(0)
    mu, log_std, eps = (rng.normal(size=(5, 2)).astype(np.float32) for _ in range(3))
    a, logp = squashed_sample(mu, log_std, eps)
    u = mu + np.exp(log_std) * eps
    normal = np.sum(-0.5 * eps**2 - log_std - 0.5 * np.log(2 * np.pi), -1)
    ref = normal - np.sum(np.log(1 - np.tanh(u) ** 2), -1)
    np.testing.assert_allclose(logp, ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(a, np.tanh(u), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(deterministic_action(mu), np.tanh(mu), rtol=1e-5, atol=1e-6)


def test_critic_ensemble_members_differ_and_stack():
    spec = _spec("TM20LIDAR")
    ens = critic_ensemble(spec, Arch.for_spec(spec, hidden=(16, 16)), 5)
    x = dummy_inputs(spec, 4)
    x["lidar"] += 1.0
    params = ens.init(jax.random.key(0), x, jnp.zeros((4, 3)))
    q = ens.apply(params, x, jnp.zeros((4, 3)))
    assert q.shape == (5, 4)
    assert len(np.unique(np.round(np.asarray(q[:, 0]), 6))) == 5


def test_cnn_critics_run_one_by_one_and_give_the_vmapped_values():
    """CNN critics are evaluated member by member (no grouped convolutions), with the stacked parameters of MLP ones."""
    spec = _spec("TM20FULL")
    ens = critic_ensemble(spec, Arch.for_spec(spec, hidden=(16, 16)), 3)
    assert ens.unrolled
    rng = np.random.default_rng(0)
    x = {k: rng.uniform(0, 1, v.shape).astype(np.float32) for k, v in dummy_inputs(spec, 2).items()}
    a = rng.uniform(-1, 1, (2, 3)).astype(np.float32)
    params = ens.init(jax.random.key(0), x, a)
    np.testing.assert_allclose(ens.apply(params, x, a), ens.stacked.apply(params, x, a), rtol=1e-4, atol=1e-5)
