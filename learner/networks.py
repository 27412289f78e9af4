"""Flax actor and critics on the shared observation layout (docs/architecture.md, "Weights on the wire").

The actor's parameter names and maths are a contract with the NumPy policy in `actor/policy.py`; both
take the names from `common.weights`: top-level modules `conv_i` (kernel HWIO, bias), `hidden_i`, `mu`,
`log_std`. Convolutions are computed as matmuls (see `conv`), because XLA's CPU convolution backward is ~4x slower than a
matmul of the same size; the kernels are still stored HWIO so exporting them needs no transpose.

Building and running the actor::

    from tmrlx.common.kinds import spec_from_config
    from tmrlx.common.weights import Arch
    from tmrlx.learner.networks import Actor, deterministic_action, dummy_inputs, squashed_sample
    from tmrlx.common.kinds import spec_from_config
    from tmrlx.common.weights import Arch
    from tmrlx.learner.networks import Actor, deterministic_action, dummy_inputs, squashed_sample

    spec = spec_from_config(cfg)
    arch = Arch.for_spec(spec)                     # or Arch.from_dict(meta["arch"])
    actor = Actor(spec, arch)
    params = actor.init(jax.random.key(0), dummy_inputs(spec, batch=1))
    x = spec.normalise(parts)                      # parts batched: {component: (B, ...), "act_buf": (B, L, A)}
    mu, log_std = actor.apply(params, x)
    a_det = deterministic_action(mu)               # tanh(mu)
    a, logp = squashed_sample(mu, log_std, eps)    # tanh(mu + exp(log_std) * eps), eps ~ N(0, 1) given
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from tmrlx.common.specs import Component, ObsSpec
from tmrlx.common.weights import BIAS, KERNEL, LOG_STD, MU, Arch, conv_name, hidden_name


def image_to_nhwc(v: jnp.ndarray, comp: Component) -> jnp.ndarray:
    """(B, H, h, w[, 3]) history-major -> (B, h, w, channels); no history axis when `history == 1`."""
    if comp.history == 1:
        v = v[:, None]
    if len(comp.shape) == 3:  # colour: history-major channels H*3
        b, hist, h, w, c = v.shape
        return jnp.transpose(v, (0, 2, 3, 1, 4)).reshape(b, h, w, hist * c)
    return jnp.transpose(v, (0, 2, 3, 1))


def patches(x: jnp.ndarray, k: int, s: int) -> jnp.ndarray:
    """VALID k x k patches with stride s of NHWC `x`, features ordered (kh, kw, c) like an HWIO kernel.

    One gather with a constant index: XLA runs it ~3x faster than a concatenation of k*k strided slices.
    """
    b, h, w, c = x.shape
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    rows = np.arange(oh)[:, None] * s + np.arange(k)  # (oh, kh)
    cols = np.arange(ow)[:, None] * s + np.arange(k)  # (ow, kw)
    flat = (rows[:, None, :, None] * w + cols[None, :, None, :]).reshape(-1)  # (oh, ow, kh, kw) pixel numbers
    return x.reshape(b, h * w, c)[:, flat].reshape(b, oh, ow, k * k * c)


def conv(x: jnp.ndarray, kernel: jnp.ndarray, s: int) -> jnp.ndarray:
    """VALID convolution of NHWC `x` by an HWIO `kernel` with stride `s`, as matmuls.

    When the kernel size k is a multiple m of the stride and the input has enough channels, the input
    goes space-to-depth (s x s blocks -> channels) and the convolution becomes the sum of m*m matmuls
    of shifted windows with K = s*s*c: no patch tensor, the exact FLOPs, and a backward that is slices
    and pads. Otherwise (a first layer on a few image channels) it is patches @ kernel.
    """
    k, _, c, out = kernel.shape
    b, h, w, _ = x.shape
    oh, ow, m = (h - k) // s + 1, (w - k) // s + 1, k // s
    if k % s or s * s * c < 128:
        return patches(x, k, s) @ kernel.reshape(-1, out)
    hb, wb = oh - 1 + m, ow - 1 + m  # blocks used
    y = x[:, :hb * s, :wb * s].reshape(b, hb, s, wb, s, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, hb, wb, s * s * c)
    blocks = kernel.reshape(m, s, m, s, c, out).transpose(0, 2, 1, 3, 4, 5).reshape(m, m, s * s * c, out)
    return functools.reduce(operator.add, (y[:, i:i + oh, j:j + ow] @ blocks[i, j] for i in range(m) for j in range(m)))


NARROW = 16  # a Dense layer with fewer outputs than this computes its kernel gradient as (g^T x)^T (`narrow_dot_general`)


@jax.custom_vjp
def _narrow_matmul(x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
    return x @ kernel


def _narrow_matmul_fwd(x: jnp.ndarray, kernel: jnp.ndarray) -> tuple[jnp.ndarray, tuple[jnp.ndarray, jnp.ndarray]]:
    return x @ kernel, (x, kernel)


def _narrow_matmul_bwd(res: tuple[jnp.ndarray, jnp.ndarray], g: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    x, kernel = res
    barrier = jax.lax.optimization_barrier  # keeps XLA from folding the transposes back into the dot
    return g @ kernel.T, barrier(barrier(g.T) @ x).T


_narrow_matmul.defvjp(_narrow_matmul_fwd, _narrow_matmul_bwd)


def narrow_dot_general(lhs: jnp.ndarray, rhs: jnp.ndarray, dimension_numbers, precision=None,
                       preferred_element_type=None) -> jnp.ndarray:
    """`lax.dot_general` for a narrow `nn.Dense` (the heads), whose kernel gradient autodiff writes as x^T g.

    That dot contracts the batch, the major axis of both operands, and XLA's CPU backend runs it on its own dot
    emitter at ~5 GFLOP/s for a 256 x 3 head (~75 us, twice per actor update) or a 256 x 1 critic head. With the
    small g transposed in memory first it is a row-major product that YNNPACK takes (~15 us). Same maths.
    (Wide layers gain nothing from this: the x^T they would need is fused with the previous layer's ReLU into a
    transposing loop that costs what YNNPACK saves.)
    """
    if lhs.ndim != 2 or dimension_numbers != (((1,), (0,)), ((), ())) or precision or preferred_element_type:
        return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision, preferred_element_type)
    return _narrow_matmul(lhs, rhs)


def dense(features: int, name: str) -> nn.Dense:
    """`nn.Dense`, with `narrow_dot_general` when it has fewer than `NARROW` outputs (same parameters either way)."""
    return nn.Dense(features, name=name, dot_general=narrow_dot_general if features < NARROW else None)


class MatmulConv(nn.Module):
    """A VALID, strided 2-D convolution computed by `conv` (HWIO parameters, like `nn.Conv`)."""

    features: int
    kernel: int
    stride: int

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        cin = x.shape[-1]
        kernel = self.param(KERNEL, nn.initializers.lecun_normal(), (self.kernel, self.kernel, cin, self.features))
        bias = self.param(BIAS, nn.initializers.zeros_init(), (self.features,))
        return conv(x, kernel, self.stride) + bias


def features(spec: ObsSpec, arch: Arch, x: Mapping[str, jnp.ndarray]) -> jnp.ndarray:
    """Concat(conv features, non-image components flattened in spec order, act_buf); call inside a compact module."""
    conv_feats: list[jnp.ndarray] = []
    flat: list[jnp.ndarray] = []
    for comp in spec.components:
        v = x[comp.name]
        b = v.shape[0]
        if comp.is_image:
            if conv_feats:
                raise ValueError("the networks support one image component per observation")
            h = image_to_nhwc(v, comp)
            for i, (out, k, s) in enumerate(arch.convs):
                h = nn.relu(MatmulConv(out, k, s, name=conv_name(i))(h))
            conv_feats.append(h.reshape(b, -1))
        else:
            flat.append(v.reshape(b, -1))
    act_buf = x["act_buf"]
    flat.append(act_buf.reshape(act_buf.shape[0], -1))
    return jnp.concatenate(conv_feats + flat, axis=-1)


class Actor(nn.Module):
    """Squashed-Gaussian policy head: returns (mu, log_std clipped to [log_std_min, log_std_max])."""

    spec: ObsSpec
    arch: Arch

    @nn.compact
    def __call__(self, x: Mapping[str, jnp.ndarray]) -> tuple[jnp.ndarray, jnp.ndarray]:
        h = features(self.spec, self.arch, x)
        for i, width in enumerate(self.arch.hidden):
            h = nn.relu(dense(width, hidden_name(i))(h))
        mu = dense(self.spec.act_dim, MU)(h)  # nn.Dense's own parameters are KERNEL and BIAS
        log_std = dense(self.spec.act_dim, LOG_STD)(h)
        return mu, jnp.clip(log_std, self.arch.log_std_min, self.arch.log_std_max)


class Critic(nn.Module):
    """Q(o, a) with its own trunk (TMRL: actor and critics share no conv)."""

    spec: ObsSpec
    arch: Arch

    @nn.compact
    def __call__(self, x: Mapping[str, jnp.ndarray], a: jnp.ndarray) -> jnp.ndarray:
        h = jnp.concatenate([features(self.spec, self.arch, x), a], axis=-1)
        for i, width in enumerate(self.arch.hidden):
            h = nn.relu(dense(width, hidden_name(i))(h))
        return dense(1, "q")(h)[..., 0]


def critic_ensemble(spec: ObsSpec, arch: Arch, n: int) -> nn.Module:
    """`n` critics as one stacked parameter set, evaluated with `vmap`: apply(p, x, a) -> (n, B)."""
    ensemble = nn.vmap(Critic, variable_axes={"params": 0}, split_rngs={"params": True},
                       in_axes=None, out_axes=0, axis_size=n)
    return ensemble(spec, arch)


def deterministic_action(mu: jnp.ndarray) -> jnp.ndarray:
    return jnp.tanh(mu)


def squashed_sample(mu: jnp.ndarray, log_std: jnp.ndarray, eps: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """tanh(mu + std * eps) and its log-probability (TMRL's numerically stable tanh correction)."""
    u = mu + jnp.exp(log_std) * eps
    logp = jnp.sum(-0.5 * eps**2 - log_std - 0.5 * math.log(2 * math.pi), axis=-1)
    logp -= jnp.sum(2.0 * (math.log(2.0) - u - jax.nn.softplus(-2.0 * u)), axis=-1)
    return jnp.tanh(u), logp


def dummy_inputs(spec: ObsSpec, batch: int = 1) -> dict[str, np.ndarray]:
    """Zero network inputs of the right shapes (for `init`)."""
    x = {c.name: np.zeros((batch, *c.obs_shape), np.float32) for c in spec.components}
    x["act_buf"] = np.zeros((batch, spec.act_buf_len, spec.act_dim), np.float32)
    return x
