"""SAC and REDQ-SAC as pure functions over one state pytree, fused into jitted blocks.

One *unit* is TMRL's schedule for one policy update: `G = REDQ_Q_UPDATES_PER_POLICY_UPDATE` critic
updates (G = 1 for SAC), the last of which also updates the actor and the entropy coefficient on
the same batch, exactly like one TMRL `train()` call with a policy update. A jitted call runs
`units` units back to back with `lax.scan` (a plain call when units == 1, for the CNN whose
scan compiles slowly), samples its batches from the device replay, and donates the state.
A unit's random draws all come from one key, `fold_in(state.key, unit number)`, and are drawn for every
unit of a call at once before the scan (`SAC.noise`): each random-bits computation is a loop of its own
on the CPU, so per-draw calls cost more than the sampling they served. A fused call therefore draws
exactly what as many calls of one unit draw. On several
devices (`learner.devices`) each sampled batch is split across them and everything else is replicated.
SAC is REDQ with N = M = 2 critics, G = 1, min over both targets and a min (not mean) in the
policy loss. The critics are one stacked parameter set evaluated with `vmap`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from typing import Any, cast

import jax
import jax.numpy as jnp
import optax
from flax import struct
from tmrlx.common.config import Config
from tmrlx.common.specs import ObsSpec
from tmrlx.common.weights import Arch
from tmrlx.learner.devices import Devices
from tmrlx.learner.networks import Actor, CriticEnsemble, compiler_options, critic_ensemble, dummy_inputs, squashed_sample
from tmrlx.learner.replay import RESAMPLE_ROUNDS, Replay, draw_rows, sample_rows

Params = Any  # flax variables: {"params": {...}} as dicts (or FrozenDicts)


@struct.dataclass
class TrainState:
    actor: Params
    critic: Params
    target: Params
    actor_opt: optax.OptState
    critic_opt: optax.OptState
    alpha_opt: optax.OptState
    log_alpha: jax.Array
    key: jax.Array  # unit u's random draws come from fold_in(key, u)
    updates: jax.Array  # critic updates done (TMRL's training steps)


def make_optimizer(name: str, lr: float, betas: tuple[float, float], l2: float) -> optax.GradientTransformation:
    """torch semantics: Adam/SGD weight decay is an L2 term added to the gradient, AdamW's is decoupled."""
    if name == "adamw":
        return optax.adamw(lr, b1=betas[0], b2=betas[1], weight_decay=l2)
    base = optax.sgd(lr) if name == "sgd" else optax.adam(lr, b1=betas[0], b2=betas[1])
    return optax.chain(optax.add_decayed_weights(l2), base) if l2 > 0 else base


class SAC:
    """Builds the state and the fused update of SAC / REDQ-SAC for one config, spec and architecture."""

    def __init__(self, cfg: Config, spec: ObsSpec, arch: Arch, units_per_call: int = 1, devices: Devices | None = None):
        alg = cfg.ALG
        self.devices = devices or Devices(jax.devices()[:1])
        self.devices.check_batch(cfg.BATCH_SIZE)
        self.spec, self.arch, self.batch_size = spec, arch, cfg.BATCH_SIZE
        self.redq = alg.ALGORITHM == "REDQSAC"
        self.n = alg.REDQ_N if self.redq else 2
        self.m = min(alg.REDQ_M, self.n) if self.redq else 2
        self.g = alg.REDQ_Q_UPDATES_PER_POLICY_UPDATE if self.redq else 1
        self.gamma, self.polyak = float(alg.GAMMA), float(alg.POLYAK)
        self.learn_alpha, self.alpha0 = bool(alg.LEARN_ENTROPY_COEF), float(alg.ALPHA)
        # null is TMRL's default target entropy: minus the action dimension
        self.target_entropy = float(-spec.act_dim if alg.TARGET_ENTROPY is None else alg.TARGET_ENTROPY)
        self.actor_net = Actor(spec, arch)
        self.critics = critic_ensemble(spec, arch, self.n, alg.CRITIC_LAYER_NORM)
        self.subset_critics = critic_ensemble(spec, arch, self.m, alg.CRITIC_LAYER_NORM)
        self.actor_tx = make_optimizer(alg.OPTIMIZER_ACTOR, alg.LR_ACTOR, alg.BETAS_ACTOR, alg.L2_ACTOR)
        self.critic_tx = make_optimizer(alg.OPTIMIZER_CRITIC, alg.LR_CRITIC, alg.BETAS_CRITIC, alg.L2_CRITIC)
        self.alpha_tx = optax.adam(alg.LR_ENTROPY)
        self.units_per_call = units_per_call
        self.run = self.devices.jit(functools.partial(self.block, units=units_per_call), donate_argnums=0,
                                    compiler_options=compiler_options(arch, self.devices.platform))

    @property
    def updates_per_call(self) -> int:
        return self.units_per_call * self.g

    def init(self, key: jax.Array) -> TrainState:
        ka, kc, key = jax.random.split(key, 3)
        x = dummy_inputs(self.spec)
        actor = self.actor_net.init(ka, x)
        critic = self.critics.init(kc, x, jnp.zeros((1, self.spec.act_dim)))
        log_alpha = jnp.asarray(math.log(self.alpha0), jnp.float32)
        return TrainState(actor, critic, jax.tree.map(jnp.copy, critic), self.actor_tx.init(actor), self.critic_tx.init(critic),
                          self.alpha_tx.init(log_alpha), log_alpha, key, jnp.zeros((), jnp.int32))

    # ---- networks (flax's `apply` is typed for mutable collections too: these say what comes back) ----
    def pi(self, actor: Params, o: Mapping[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
        """(mu, log_std) of the actor."""
        return cast(tuple[jax.Array, jax.Array], self.actor_net.apply(actor, o))

    @staticmethod
    def q(critics: CriticEnsemble, params: Params, o: Mapping[str, jax.Array], a: jax.Array) -> jax.Array:
        """(critics, B) Q values of a stacked critic ensemble."""
        return critics.apply(params, o, a)

    # ---- losses (pure; noise and target subset given, so tests can recompute them) ----
    def critic_loss(self, critic, target, actor, log_alpha, batch, w, eps2, subset=None):
        """TMRL's critic loss; `subset` is the target critics' indices (None: all of them)."""
        o, o2 = self.spec.normalise(batch["o"]), self.spec.normalise(batch["o2"])
        mu2, log_std2 = self.pi(actor, o2)
        a2, logp2 = squashed_sample(mu2, log_std2, eps2)
        sub = target if subset is None else jax.tree.map(lambda p: p[subset], target)
        q_targ = self.q(self.subset_critics, sub, o2, a2).min(axis=0)
        alpha = jnp.exp(log_alpha)
        backup = batch["r"] + self.gamma * (1.0 - batch["terminated"].astype(jnp.float32)) * (q_targ - alpha * logp2)
        backup = jax.lax.stop_gradient(backup)
        q = self.q(self.critics, critic, o, batch["a"])
        per_sample = jnp.mean((q - backup) ** 2, axis=0)
        loss = jnp.sum(w * per_sample) / jnp.maximum(jnp.sum(w), 1.0)
        return loss, {"loss_critic": loss, "q": jnp.mean(q), "backup": jnp.mean(backup)}

    def actor_loss(self, actor, critic, log_alpha, batch, w, eps):
        o = self.spec.normalise(batch["o"])
        mu, log_std = self.pi(actor, o)
        pi, logp = squashed_sample(mu, log_std, eps)
        q_pi = self.q(self.critics, critic, o, pi)
        q_pi = q_pi.mean(axis=0) if self.redq else q_pi.min(axis=0)
        alpha = jnp.exp(log_alpha)
        wsum = jnp.maximum(jnp.sum(w), 1.0)
        loss = jnp.sum(w * (alpha * logp - q_pi)) / wsum
        return loss, {"loss_actor": loss, "logp": jnp.sum(w * logp) / wsum}

    def alpha_loss(self, log_alpha, logp):
        return -log_alpha * (logp + self.target_entropy)

    # ---- steps (noise given, drawn by `noise`) ----
    def noise(self, key: jax.Array, replay: Replay) -> dict[str, jax.Array]:
        """Every random draw of one unit: its G batches' candidate rows (`replay.draw_rows`), the action noise of its
        G critic updates and of its actor update, and REDQ's G target subsets (none when all critics are used)."""
        k_rows, k_eps2, k_eps, k_sub = jax.random.split(key, 4)
        b, a = self.batch_size, self.spec.act_dim
        out = {"rows": draw_rows(replay, k_rows, (self.g, RESAMPLE_ROUNDS + 1, b)),
               "eps2": jax.random.normal(k_eps2, (self.g, b, a)), "eps": jax.random.normal(k_eps, (b, a))}
        if self.m < self.n:
            pick = lambda k: jax.random.choice(k, self.n, (self.m,), replace=False)  # noqa: E731
            out["subset"] = jax.vmap(pick)(jax.random.split(k_sub, self.g))
        return out

    def critic_step(self, state: TrainState, batch, w, eps2, subset=None):
        """One critic update; `subset` is the target critics' indices (None: all of them)."""
        grad_fn = jax.grad(self.critic_loss, has_aux=True)
        grads, info = grad_fn(state.critic, state.target, state.actor, state.log_alpha, batch, w, eps2, subset)
        with jax.named_scope("critic_opt"):
            upd, critic_opt = self.critic_tx.update(grads, state.critic_opt, state.critic)
            critic = optax.apply_updates(state.critic, upd)
        with jax.named_scope("polyak"):
            target = jax.tree.map(lambda t, c: self.polyak * t + (1.0 - self.polyak) * c, state.target, critic)
        return dataclasses.replace(state, critic=critic, target=target, critic_opt=critic_opt, updates=state.updates + 1), info

    def actor_step(self, state: TrainState, batch, w, eps):
        critic = jax.lax.stop_gradient(state.critic)
        grads, info = jax.grad(self.actor_loss, has_aux=True)(state.actor, critic, state.log_alpha, batch, w, eps)
        with jax.named_scope("actor_opt"):
            upd, actor_opt = self.actor_tx.update(grads, state.actor_opt, state.actor)
            state = dataclasses.replace(state, actor=optax.apply_updates(state.actor, upd), actor_opt=actor_opt)
        info["alpha"] = jnp.exp(state.log_alpha)
        if self.learn_alpha:
            logp = jax.lax.stop_gradient(info["logp"])
            loss_a, g = jax.value_and_grad(self.alpha_loss)(state.log_alpha, logp)
            upd, alpha_opt = self.alpha_tx.update(g, state.alpha_opt, state.log_alpha)
            state = dataclasses.replace(state, log_alpha=optax.apply_updates(state.log_alpha, upd), alpha_opt=alpha_opt)
            info["loss_alpha"] = loss_a
        return state, info

    def sample(self, replay: Replay, rows: jax.Array) -> tuple[dict, jax.Array]:
        """The batch at `rows` (one batch's `noise`) from the replay memory, split across the training devices."""
        with jax.named_scope("sample"):
            return self.devices.split(sample_rows(replay, self.spec, rows))

    def unit(self, state: TrainState, replay: Replay, noise: dict[str, jax.Array]):
        """G critic updates, the last one on the batch that also updates the actor (and alpha)."""
        per_update = {k: v for k, v in noise.items() if k != "eps"}  # one row of each per critic update

        def critic_update(s, n):
            batch, w = self.sample(replay, n["rows"])
            return self.critic_step(s, batch, w, n["eps2"], n.get("subset"))

        if self.g > 1:
            state, _ = jax.lax.scan(lambda s, n: (critic_update(s, n)[0], None), state,
                                    jax.tree.map(lambda v: v[:-1], per_update))
        last = jax.tree.map(lambda v: v[-1], per_update)
        batch, w = self.sample(replay, last["rows"])
        state, info_c = self.critic_step(state, batch, w, last["eps2"], last.get("subset"))
        state, info_a = self.actor_step(state, batch, w, noise["eps"])
        return state, {**info_c, **info_a, "valid_fraction": jnp.mean(w)}

    def block(self, state: TrainState, replay: Replay, units: int):
        """`units` units in one call; returns the new state and the metrics averaged over the block."""
        first = state.updates // self.g  # units done
        keys = jax.vmap(jax.random.fold_in, (None, 0))(state.key, first + jnp.arange(units))
        noise = jax.vmap(self.noise, (0, None))(keys, replay)
        if units == 1:
            return self.unit(state, replay, jax.tree.map(lambda v: v[0], noise))
        state, infos = jax.lax.scan(lambda s, n: self.unit(s, replay, n), state, noise)
        return state, jax.tree.map(lambda v: jnp.mean(v, axis=0), infos)
