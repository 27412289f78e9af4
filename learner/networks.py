"""Flax actor and critics on the shared observation layout (docs/architecture.md, "Weights on the wire").

The actor's parameter names and maths are a contract with the NumPy policy in `actor/policy.py`; both
take the names from `common.weights`: top-level modules `conv_i` (kernel HWIO, bias), `hidden_i`, `mu`,
`log_std`. Convolutions are XLA's own (YNNPACK's on the CPU), but for the kernel gradient of a layer on a few input
channels (`conv`); the kernels are stored HWIO.

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
import logging
import math
from collections.abc import Mapping
from typing import cast

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from tmrlx.common.specs import Component, ObsSpec
from tmrlx.common.weights import BIAS, KERNEL, LOG_STD, MU, Arch, conv_name, hidden_name

log = logging.getLogger("tmrlx.learner")


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


# XLA's CPU backend hands YNNPACK single dots, single convolutions and reductions (its defaults, found by comparing
# compiled programs); with elementwise operations as well it fuses a CNN trunk (convolutions, biases, ReLUs, the dense
# layer after) into one YNNPACK graph that runs in cache-sized tiles: a trunk's forward at batch 256 on one core
# 175 -> 43 ms, the whole SAC CNN update ~2.9 -> ~1.7 s. The MLP updates run slower with it, so only CNNs get it.
YNN_FUSION_TYPES = ("INDIVIDUAL_DOT", "INDIVIDUAL_CONVOLUTION", "REDUCE", "ELTWISE")
CNN_CPU_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ",".join(f"LIBRARY_FUSION_TYPE_{t}"
                                                                             for t in YNN_FUSION_TYPES)}


def compiler_options(arch: Arch, platform: str) -> dict[str, str] | None:
    """XLA options for jitting `arch`'s update on `platform`: `CNN_CPU_COMPILER_OPTIONS` for a CNN on the CPU, when
    this jaxlib knows them."""
    return CNN_CPU_COMPILER_OPTIONS if arch.type == "cnn" and platform == "cpu" and _cpu_accepts_cnn_options() else None


@functools.cache
def _cpu_accepts_cnn_options() -> bool:
    x = jax.device_put(np.zeros(1, np.float32), jax.devices("cpu")[0])
    try:
        jax.jit(lambda v: v + 1, compiler_options=CNN_CPU_COMPILER_OPTIONS).lower(x).compile()
    except Exception as e:  # a jaxlib without these options: XLA's defaults
        log.warning("XLA refused %s (%s): the CNN update compiles with XLA's defaults", CNN_CPU_COMPILER_OPTIONS, e)
        return False
    return True


def xla_conv(x: jnp.ndarray, kernel: jnp.ndarray, s: int) -> jnp.ndarray:
    """XLA's VALID convolution of NHWC `x` by an HWIO `kernel` with stride `s`."""
    return jax.lax.conv_general_dilated(x, kernel, (s, s), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def conv(x: jnp.ndarray, kernel: jnp.ndarray, s: int) -> jnp.ndarray:
    """VALID convolution of NHWC `x` by an HWIO `kernel` with stride `s`: `xla_conv`, whose forward and gradients
    YNNPACK runs on the CPU at 3-6x the speed of the patches and shifted-window matmuls used before (batch 256, one
    core, TMRL's CNN: a trunk's forward 166 -> 47 ms, with its kernel gradients 1276 -> 458 ms). Two gradients go
    another way: a layer on a few input channels (the first: 4 frames) gets its kernel gradient as a matmul of the
    patches (`_few_channel_conv`: 168 -> 88 ms for TMRL's first layer), and a strided layer its input gradient
    through `space_to_depth_conv` (`_strided_conv`: a stride-1 convolution's, not XLA's dilated one: a trunk's
    gradient 344 -> 313 ms)."""
    if s * s * x.shape[-1] < 128:
        return _few_channel_conv(x, kernel, s)
    if s > 1 and kernel.shape[0] % s == 0:
        return _strided_conv(x, kernel, s)
    return xla_conv(x, kernel, s)


def space_to_depth_conv(x: jnp.ndarray, kernel: jnp.ndarray, s: int) -> jnp.ndarray:
    """`xla_conv(x, kernel, s)` computed with stride 1: x's s x s blocks moved to channels turn a k = m*s kernel into
    an m x m one on s*s*c channels."""
    k, _, c, out = kernel.shape
    b, h, w, _ = x.shape
    m, hb, wb = k // s, (h - k) // s + k // s, (w - k) // s + k // s  # kernel and input in blocks
    y = x[:, :hb * s, :wb * s].reshape(b, hb, s, wb, s, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, hb, wb, s * s * c)
    blocks = kernel.reshape(m, s, m, s, c, out).transpose(0, 2, 1, 3, 4, 5).reshape(m, m, s * s * c, out)
    return xla_conv(y, blocks, 1)


def _xla_conv_with_backward(bwd):
    """XLA's convolution forward, `bwd(s, (x, kernel), g)` for its gradients."""
    conv = jax.custom_vjp(lambda x, kernel, s: xla_conv(x, kernel, s), nondiff_argnums=(2,))
    conv.defvjp(lambda x, kernel, s: (xla_conv(x, kernel, s), (x, kernel)), bwd)
    return conv


def _strided_conv_bwd(s: int, res: tuple[jnp.ndarray, jnp.ndarray], g: jnp.ndarray):
    x, kernel = res
    return jax.vjp(lambda v: space_to_depth_conv(v, kernel, s), x)[1](g)[0], jax.vjp(lambda v: xla_conv(x, v, s), kernel)[1](g)[0]


_strided_conv = _xla_conv_with_backward(_strided_conv_bwd)


def _few_channel_conv_bwd(s: int, res: tuple[jnp.ndarray, jnp.ndarray], g: jnp.ndarray):
    """The kernel gradient as (g^T P)^T over the patches P, both operands row-major so that it is one YNNPACK
    matmul (the transposes behind barriers, or XLA folds them back into the dot); the input gradient, which the
    networks never use (observations), is XLA's and is dropped as dead code."""
    x, kernel = res
    k, _, c, out = kernel.shape
    barrier = jax.lax.optimization_barrier
    p = patches(x, k, s).reshape(-1, k * k * c)
    dk = barrier(barrier(g.reshape(-1, out).T) @ p).T.reshape(kernel.shape)
    return jax.vjp(lambda v: xla_conv(v, kernel, s), x)[1](g)[0], dk


_few_channel_conv = _xla_conv_with_backward(_few_channel_conv_bwd)


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
    """Q(o, a) with its own trunk (TMRL: actor and critics share no conv). `layer_norm`: each hidden layer normalised
    before its ReLU, which bounds how far Q can extrapolate to actions the replay memory never saw (RLPD's critics)."""

    spec: ObsSpec
    arch: Arch
    layer_norm: bool = False

    @nn.compact
    def __call__(self, x: Mapping[str, jnp.ndarray], a: jnp.ndarray) -> jnp.ndarray:
        h = jnp.concatenate([features(self.spec, self.arch, x), a], axis=-1)
        for i, width in enumerate(self.arch.hidden):
            h = dense(width, hidden_name(i))(h)
            if self.layer_norm:
                h = nn.LayerNorm(name=f"norm_{i}")(h)
            h = nn.relu(h)
        return dense(1, "q")(h)[..., 0]


class CriticEnsemble:
    """`n` critics as one stacked parameter set (`nn.vmap` of `Critic`): `init` like a module, apply(p, x, a) -> (n, B).

    MLP critics are evaluated vmapped (batched matmuls). CNN critics run one after another on their slices of the
    parameters: vmapped, each convolution after the first becomes one grouped convolution, which XLA's CPU backend
    runs ~4.5x slower than the n plain ones (two TMRL trunks' gradients at batch 256, one core: 4.2 s vs 0.9 s).
    """

    def __init__(self, spec: ObsSpec, arch: Arch, n: int, layer_norm: bool = False):
        self.n, self.unrolled = n, arch.type == "cnn"
        self.member = Critic(spec, arch, layer_norm)
        self.stacked = nn.vmap(Critic, variable_axes={"params": 0}, split_rngs={"params": True},
                               in_axes=None, out_axes=0, axis_size=n)(spec, arch, layer_norm)

    def init(self, key: jax.Array, x: Mapping[str, jnp.ndarray | np.ndarray], a: jnp.ndarray):
        return self.stacked.init(key, x, a)

    def apply(self, params, x: Mapping[str, jnp.ndarray], a: jnp.ndarray) -> jnp.ndarray:
        if not self.unrolled:
            return cast(jnp.ndarray, self.stacked.apply(params, x, a))
        return jnp.stack([cast(jnp.ndarray, self.member.apply(jax.tree.map(lambda p: p[i], params), x, a))  # noqa: B023
                          for i in range(self.n)])


def critic_ensemble(spec: ObsSpec, arch: Arch, n: int, layer_norm: bool = False) -> CriticEnsemble:
    """`n` critics as one stacked parameter set: apply(p, x, a) -> (n, B)."""
    return CriticEnsemble(spec, arch, n, layer_norm)


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
