"""One update's losses equal a small NumPy computation of TMRL's SAC / REDQ formulas."""

import jax
import numpy as np
import pytest
from tmrlx.common.config import load_config
from tmrlx.common.specs import Component, ObsSpec
from tmrlx.common.weights import Arch
from tmrlx.learner.update import SAC

SPEC = ObsSpec((Component("x", (3,)),), act_dim=2, act_buf_len=1)


def mlp(p, h, out):
    for name in ("hidden_0", "hidden_1"):
        h = np.maximum(h @ p[name]["kernel"] + p[name]["bias"], 0.0)
    return h @ p[out]["kernel"] + p[out]["bias"]


def squash(mu, log_std, eps):
    u = mu + np.exp(log_std) * eps
    logp = np.sum(-0.5 * eps**2 - log_std - 0.5 * np.log(2 * np.pi) - np.log(1 - np.tanh(u) ** 2), -1)
    return np.tanh(u), logp


def actor_np(p, o, eps):
    h = np.concatenate([o["x"], o["act_buf"].reshape(len(eps), -1)], -1)
    return squash(mlp(p, h, "mu"), np.clip(mlp(p, h, "log_std"), -20, 2), eps)


def critic_np(p, i, o, a):
    member = jax.tree.map(lambda v: np.asarray(v)[i], p)
    return mlp(member, np.concatenate([o["x"], o["act_buf"].reshape(len(a), -1), a], -1), "q")[:, 0]


@pytest.mark.parametrize("algorithm", ["SAC", "REDQSAC"])
def test_losses_match_numpy_reference(algorithm):
    cfg = load_config(overrides={"ALG": {"ALGORITHM": algorithm, "REDQ_N": 4, "REDQ_M": 2, "GAMMA": 0.9, "ALPHA": 0.3}})
    sac = SAC(cfg, SPEC, Arch("mlp", (8, 8)))
    state = jax.jit(sac.init)(jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    b = 6
    obs = lambda: {"x": rng.normal(size=(b, 3)).astype(np.float32), "act_buf": rng.normal(size=(b, 1, 2)).astype(np.float32)}  # noqa: E731
    batch = {"o": obs(), "o2": obs(), "a": rng.uniform(-1, 1, (b, 2)).astype(np.float32),
             "r": rng.normal(size=b).astype(np.float32), "terminated": np.array([0, 1, 0, 0, 1, 0], bool)}
    w = np.array([1, 1, 1, 1, 1, 0], np.float32)  # the last draw is unusable: it must not count
    eps, eps2 = rng.normal(size=(b, 2)).astype(np.float32), rng.normal(size=(b, 2)).astype(np.float32)
    subset = np.array([3, 1]) if algorithm == "REDQSAC" else np.array([0, 1])
    # make the target critics differ from the online ones, as after some updates
    target = jax.tree.map(lambda v: v + 0.1 * rng.normal(size=v.shape).astype(np.float32), state.critic)
    actor, critic = jax.device_get(state.actor)["params"], jax.device_get(state.critic)["params"]
    tp = jax.device_get(target)["params"]

    loss_q, _ = sac.critic_loss(state.critic, target, state.actor, state.log_alpha, batch, w, eps2, subset)
    a2, logp2 = actor_np(actor, batch["o2"], eps2)
    q_targ = np.min([critic_np(tp, i, batch["o2"], a2) for i in subset], axis=0)
    backup = batch["r"] + 0.9 * (1 - batch["terminated"]) * (q_targ - 0.3 * logp2)
    qs = np.stack([critic_np(critic, i, batch["o"], batch["a"]) for i in range(sac.n)])
    ref_q = np.sum(w * np.mean((qs - backup) ** 2, 0)) / w.sum()
    np.testing.assert_allclose(loss_q, ref_q, rtol=1e-4)

    loss_pi, info = sac.actor_loss(state.actor, state.critic, state.log_alpha, batch, w, eps)
    pi, logp = actor_np(actor, batch["o"], eps)
    q_pi = np.stack([critic_np(critic, i, batch["o"], pi) for i in range(sac.n)])
    q_pi = q_pi.mean(0) if algorithm == "REDQSAC" else q_pi.min(0)
    np.testing.assert_allclose(loss_pi, np.sum(w * (0.3 * logp - q_pi)) / w.sum(), rtol=1e-4)
    np.testing.assert_allclose(info["logp"], np.sum(w * logp) / w.sum(), rtol=1e-4)



def test_null_target_entropy_is_minus_the_action_dimension():
    """TMRL's default target entropy (TARGET_ENTROPY null): -act_dim, -3 for TrackMania."""
    from tmrlx.common.kinds import spec_from_config

    cfg = load_config(overrides={"ALG": {"TARGET_ENTROPY": None, "LEARN_ENTROPY_COEF": True}})
    assert SAC(cfg, SPEC, Arch("mlp", (8, 8))).target_entropy == -2.0
    assert SAC(cfg, spec_from_config(cfg), Arch()).target_entropy == -3.0
    assert SAC(cfg.replace({"ALG": {"TARGET_ENTROPY": -0.5}}), SPEC, Arch("mlp", (8, 8))).target_entropy == -0.5


@pytest.mark.parametrize("algorithm", ["SAC", "REDQSAC"])
def test_a_fused_block_equals_its_units_one_call_each(algorithm):
    """K units fused in one call draw the same noise and reach the same state as K calls of one unit."""
    from bench.learner import filled_replay

    spec = ObsSpec((Component("x", (3,), history=2),), act_dim=2, act_buf_len=2)
    cfg = load_config(overrides={"BATCH_SIZE": 16, "CUDA_TRAINING": False,
                                 "ALG": {"ALGORITHM": algorithm, "REDQ_N": 4, "REDQ_Q_UPDATES_PER_POLICY_UPDATE": 3,
                                         "LEARN_ENTROPY_COEF": True}})
    fused, single = SAC(cfg, spec, Arch("mlp", (8, 8)), 3), SAC(cfg, spec, Arch("mlp", (8, 8)), 1)
    replay = filled_replay(spec, 600)
    start = jax.device_get(jax.jit(single.init)(jax.random.PRNGKey(0)))
    state_f, _ = fused.run(jax.device_put(start), replay)
    state_s = jax.device_put(start)
    for _ in range(3):
        state_s, _ = single.run(state_s, replay)
    assert int(state_f.updates) == int(state_s.updates) == 3 * fused.g
    for a, b in zip(jax.tree.leaves(state_f), jax.tree.leaves(state_s)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_critic_layer_norm_normalises_each_hidden_layer_and_bounds_q_far_from_the_data():
    """ALG.CRITIC_LAYER_NORM: each critic's hidden layers are LayerNorm'd before the ReLU (checked against NumPy), so Q
    of an action far outside [-1, 1] stays within the head's reach, where a plain critic's grows with the input."""
    cfg = load_config(overrides={"ALG": {"CRITIC_LAYER_NORM": True}})
    arch = Arch("mlp", (8, 8))
    plain, normed = SAC(cfg.replace({"ALG": {"CRITIC_LAYER_NORM": False}}), SPEC, arch), SAC(cfg, SPEC, arch)
    state = normed.init(jax.random.key(0))
    p = jax.tree.map(np.asarray, state.critic["params"])
    assert set(p) == {"hidden_0", "norm_0", "hidden_1", "norm_1", "q"} and p["norm_0"]["scale"].shape == (2, 8)
    rng = np.random.default_rng(0)
    o = {"x": rng.normal(size=(4, 3)).astype(np.float32), "act_buf": rng.normal(size=(4, 1, 2)).astype(np.float32)}
    a = rng.uniform(-1, 1, (4, 2)).astype(np.float32)

    def ln(h, q):
        h = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + 1e-6)
        return h * q["scale"] + q["bias"]

    member = jax.tree.map(lambda v: v[1], p)
    h = np.concatenate([o["x"], o["act_buf"].reshape(4, -1), a], -1)
    for i in range(2):
        h = np.maximum(ln(h @ member[f"hidden_{i}"]["kernel"] + member[f"hidden_{i}"]["bias"], member[f"norm_{i}"]), 0)
    expected = (h @ member["q"]["kernel"] + member["q"]["bias"])[:, 0]
    np.testing.assert_allclose(np.asarray(normed.q(normed.critics, state.critic, o, a))[1], expected, rtol=1e-4, atol=1e-5)

    reach = np.abs(member["q"]["kernel"]).sum() * np.sqrt(8) + np.abs(member["q"]["bias"]).sum()
    far = a * 1e4
    assert np.all(np.abs(np.asarray(normed.q(normed.critics, state.critic, o, far))) <= reach)
    plain_state = plain.init(jax.random.key(0))
    assert np.abs(np.asarray(plain.q(plain.critics, plain_state.critic, o, far))).max() > 100 * reach
