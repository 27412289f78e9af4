"""The learner's actor network evaluated with NumPy alone, so an actor machine never needs JAX.

Weights arrive as the flat `name -> float32 array` map and `meta` of the weights contract
(`common.weights`, docs/architecture.md). At load time the weights are re-laid out for batch-1 speed:
each component's `scale` is folded into the first layer that reads it (so raw observations go
straight in), convolution kernels become `(k*k*C_in, C_out)` matrices for im2col + one matmul
(patches are strided views copied once into a reused buffer), and the `mu`/`log_std` heads are
fused into one matmul. The result equals the Flax actor to float32 rounding.

NumPy runs on the CPU: `CUDA_INFERENCE` is accepted and ignored (a batch-1 policy is faster on the
CPU than a round trip to a GPU). The real-time loop keeps BLAS to one thread (see `actor.rollout`).
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided
from threadpoolctl import threadpool_limits
from tmrlx.common import weights
from tmrlx.common.errors import ConfigError
from tmrlx.common.specs import Component, ObsSpec
from tmrlx.common.weights import BIAS, KERNEL, LOG_STD, MU, Arch, WeightsError, conv_name, hidden_name, param_name

SPLIT_MIN_ROWS = 4  # at batch 1, convs with at least this many output rows are split across two threads
SPLIT_MIN_CPUS = 4  # ...by default only with this many cores: on a busy 2-core box the split measured slower


_primed = False


def prime_blas() -> None:
    """Run one multi-threaded GEMM, once per process, before BLAS is pinned to one thread.

    Measured with numpy 2.4's OpenBLAS 0.3.31 on the 2-core AMD EPYC box: in a process whose BLAS
    never ran threaded, the CNN's single-thread GEMMs with K=1024 take 2x longer (and the first ones
    3.5x) than after a single threaded 256x256 product; a quirk of OpenBLAS's buffer set-up, cheap to avoid.
    """
    global _primed
    if not _primed:
        a = np.ones((256, 256), np.float32)
        with threadpool_limits(2, user_api="blas"):
            a @ a
        _primed = True


@dataclass(frozen=True)
class _Conv:
    """One VALID convolution as im2col + matmul: `kernel` is `(k*k*C_in, C_out)`, HWIO order."""

    kernel: np.ndarray
    bias: np.ndarray
    k: int
    stride: int
    out_hw: tuple[int, int]


def _conv_out(size: int, k: int, stride: int) -> int:
    return (size - k) // stride + 1


def _image_layout(c: Component) -> tuple[int, int, int, int]:
    """(history, height, width, colour channels) of an image component."""
    h, w = c.shape[:2]
    return c.history, h, w, (c.shape[2] if len(c.shape) == 3 else 1)


class Policy:
    """Squashed-Gaussian actor: `act(obs)` for one rtgym observation, `actions(parts)` for a batch."""

    def __init__(self, arrays: Mapping[str, Any], meta: Mapping[str, Any], spec: ObsSpec | None = None,
                 version: int = -1, threads: int | None = None):
        arch, wspec = weights.parse_meta(meta)
        if spec is not None and wspec.hash() != spec.hash():
            raise WeightsError(f"weights were trained for observation layout {wspec.hash()} "
                               f"({_describe(wspec)}), this actor produces {spec.hash()} ({_describe(spec)})")
        self.spec, self.arch, self.version = wspec, arch, int(version)
        self.log_std_min = np.float32(arch.log_std_min)  # float32 scalars keep the ufuncs in float32
        self.log_std_max = np.float32(arch.log_std_max)
        images = [c for c in wspec.components if c.is_image]
        if (arch.type == "cnn") != bool(images) or len(images) > 1:
            raise WeightsError(f"arch {arch.type!r} needs {'exactly one' if arch.type == 'cnn' else 'no'} image component, "
                               f"the layout has {len(images)}")
        self.image = images[0] if images else None
        self.flat = [c for c in wspec.components if not c.is_image]
        w = _Arrays(arrays)
        self.convs = self._load_convs(w, arch) if self.image is not None else []
        self.conv_dim = int(np.prod(self.convs[-1].out_hw)) * self.convs[-1].kernel.shape[1] if self.convs else 0
        self.hidden = self._load_hidden(w, arch)
        act = wspec.act_dim
        mu_k, mu_b = w.take(MU, (self.hidden[-1].shape[1], act))
        ls_k, ls_b = w.take(LOG_STD, mu_k.shape)
        self.head = _with_bias(np.concatenate([mu_k, ls_k], axis=1), np.concatenate([mu_b, ls_b]))
        w.check_no_extra(weights.actor_names(arch))
        self._workspaces: dict[int, _Workspace] = {}
        # batch 1: the big convs are split in two row halves, one on a helper thread (BLAS stays single-threaded)
        if threads is None:
            threads = 2 if (os.cpu_count() or 1) >= SPLIT_MIN_CPUS else 1
        self._helper = _helper() if threads >= 2 and self.convs else None

    # ---- loading -------------------------------------------------------------------------------------

    def _load_convs(self, w: _Arrays, arch: Arch) -> list[_Conv]:
        assert self.image is not None
        hist, h, wd, col = _image_layout(self.image)
        c_in = hist * col
        convs = []
        for i, (out, k, stride) in enumerate(arch.convs):
            h, wd = _conv_out(h, k, stride), _conv_out(wd, k, stride)
            if h < 1 or wd < 1:
                raise WeightsError(f"{conv_name(i)} (kernel {k}, stride {stride}) leaves no output on this image size")
            kernel, bias = w.take(conv_name(i), (k, k, c_in, out))
            if i == 0:
                kernel = kernel * np.float32(self.image.scale)
            convs.append(_Conv(np.ascontiguousarray(kernel.reshape(k * k * c_in, out)), bias, k, stride, (h, wd)))
            c_in = out
        if not convs:
            raise WeightsError("arch 'cnn' has no 'convs'")
        return convs

    def _load_hidden(self, w: _Arrays, arch: Arch) -> list[np.ndarray]:
        scales = [np.full(self.conv_dim, 1.0, np.float32)]
        scales += [np.full(_size(c), c.scale, np.float32) for c in self.flat]
        scales.append(np.ones(self.spec.act_buf_len * self.spec.act_dim, np.float32))
        row_scale = np.concatenate(scales)
        layers, fan_in = [], row_scale.size
        for i, size in enumerate(arch.hidden):
            kernel, bias = w.take(hidden_name(i), (fan_in, size))
            if i == 0:
                kernel = kernel * row_scale[:, None]
            layers.append(_with_bias(kernel, bias))
            fan_in = size
        if not layers:
            raise WeightsError("arch 'hidden' is empty: the actor needs at least one hidden layer")
        return layers

    # ---- evaluation ----------------------------------------------------------------------------------

    def act(self, obs: Sequence[Any], eps: np.ndarray | None = None) -> np.ndarray:
        """Action for one rtgym observation tuple: `tanh(mu)` without `eps`, else `tanh(mu + std * eps)`."""
        ws = self._workspace(1)
        n = len(self.spec.components)
        if len(obs) != n + self.spec.act_buf_len:
            raise ValueError(f"observation has {len(obs)} parts, the spec expects {n} + {self.spec.act_buf_len} actions")
        for view, part in zip(ws.obs_views, obs):
            view[...] = part
        return self._run(ws, eps).copy()

    def heads(self, parts: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """(mu, log_std) for a batch of raw (un-normalised) parts shaped like `spec.split`'s with a batch axis."""
        ws = self._fill(parts)
        self._trunk(ws)
        log_std = np.clip(ws.log_std, self.log_std_min, self.log_std_max)
        return ws.mu.reshape(ws.batch, -1).copy(), log_std.reshape(ws.batch, -1)

    def actions(self, parts: Mapping[str, Any], eps: np.ndarray | None = None) -> np.ndarray:
        """Batched actions in [-1, 1]: deterministic without `eps`, else `tanh(mu + exp(log_std) * eps)`."""
        ws = self._fill(parts)
        eps = None if eps is None else np.asarray(eps, np.float32).reshape(ws.u.shape)
        return self._run(ws, eps).reshape(ws.batch, -1).copy()

    def _fill(self, parts: Mapping[str, Any]) -> _Workspace:
        batch = int(np.shape(parts["act_buf"])[0])
        ws = self._workspace(batch)
        for c, view in zip(self.spec.components, ws.part_views):
            view[...] = np.reshape(parts[c.name], view.shape)
        ws.act_view[...] = np.reshape(parts["act_buf"], ws.act_view.shape)
        return ws

    def _run(self, ws: _Workspace, eps: np.ndarray | None) -> np.ndarray:
        """The action into the reused `ws.u` (np.clip is avoided: its Python wrapper costs more than the maths)."""
        self._trunk(ws)
        u = ws.u
        if eps is None:
            return np.tanh(ws.mu, out=u)
        np.maximum(ws.log_std, self.log_std_min, out=u)
        np.minimum(u, self.log_std_max, out=u)
        np.exp(u, out=u)
        np.multiply(u, eps, out=u)
        np.add(u, ws.mu, out=u)
        return np.tanh(u, out=u)

    def _trunk(self, ws: _Workspace) -> None:
        """Everything up to the fused head output `ws.z` = [mu, raw log_std]."""
        if self.convs:
            for conv, parts in zip(self.convs, ws.conv_parts):
                if self._helper is not None and len(parts) == 2:
                    self._helper.both(_conv, (conv, *parts[0]), (conv, *parts[1]))
                else:
                    for part in parts:
                        _conv(conv, *part)
            np.copyto(ws.x[:, :self.conv_dim], ws.conv_out[-1].reshape(ws.batch, -1))
        mm, h = ws.matmul, ws.x_in
        for kernel, buf, out in zip(self.hidden, ws.hidden_in, ws.hidden_out):
            mm(h, kernel, out=out)
            np.maximum(buf, 0.0, out=buf)  # the trailing 1 (bias input) survives the ReLU
            h = buf
        mm(h, self.head, out=ws.z)

    def _workspace(self, batch: int) -> _Workspace:
        ws = self._workspaces.get(batch)
        if ws is None:
            if len(self._workspaces) >= 4:
                self._workspaces.clear()
            ws = self._workspaces[batch] = _Workspace(self, batch)
        return ws


class _Workspace:
    """Buffers reused across calls for one batch size: no allocation on the per-step path."""

    def __init__(self, p: Policy, batch: int):
        spec = p.spec
        self.batch = batch
        feat = p.conv_dim + sum(_size(c) for c in p.flat) + spec.act_buf_len * spec.act_dim
        # each layer's input ends with a constant 1 that multiplies the bias row of the next kernel
        self.x = np.ones((batch, feat + 1), np.float32)
        hidden = [np.ones((batch, k.shape[1] + 1), np.float32) for k in p.hidden]
        z = np.empty((batch, p.head.shape[1]), np.float32)
        # batch 1 runs on 1-D views with np.dot (half the call overhead of a (1, n) matmul)
        one = (lambda a: a[0]) if batch == 1 else (lambda a: a)
        self.matmul = np.dot if batch == 1 else np.matmul
        self.x_in = one(self.x)
        self.hidden_in = [one(h) for h in hidden]
        self.hidden_out = [one(h[:, :-1]) for h in hidden]
        self.z = one(z)
        self.mu, self.log_std = one(z[:, :spec.act_dim]), one(z[:, spec.act_dim:])
        self.u = one(np.empty((batch, spec.act_dim), np.float32))
        views: dict[str, np.ndarray] = {}
        col = p.conv_dim
        for c in p.flat:
            views[c.name] = self.x[:, col:col + _size(c)]
            col += _size(c)
        self.act_view = self.x[:, col:-1].reshape(batch, spec.act_buf_len, spec.act_dim)
        if p.image is not None:
            hist, h, w, colour = _image_layout(p.image)
            self.image = np.zeros((batch, h, w, hist, colour), np.uint8)  # NHWC, channels history-major
            view = self.image.transpose(0, 3, 1, 2, 4)  # the observation's (B, history, h, w, colour)
            view = view[..., 0] if len(p.image.shape) == 2 else view
            views[p.image.name] = view[:, 0] if p.image.history == 1 else view
            self.patches = [np.empty((batch * c.out_hw[0] * c.out_hw[1], c.kernel.shape[0]), np.float32) for c in p.convs]
            self.conv_out = [np.empty((batch * c.out_hw[0] * c.out_hw[1], c.kernel.shape[1]), np.float32) for c in p.convs]
            self.conv_parts = self._conv_parts(p.convs)
        self.part_views = [views[c.name] for c in spec.components]
        per_sample = [v[0].reshape(c.obs_shape) for v, c in zip(self.part_views, spec.components)]
        acts = [self.act_view[0, i] for i in range(spec.act_buf_len)]
        self.obs_views = per_sample + acts

    def _conv_parts(self, convs: list[_Conv]) -> list[list[tuple[np.ndarray, ...]]]:
        """Per conv, its work as (strided patch view of the input, that shape over the patch buffer, patch rows,
        output rows): im2col is one copy. At batch 1 a conv with enough output rows comes as two row halves."""
        out: list[list[tuple[np.ndarray, ...]]] = []
        src: np.ndarray = self.image
        for i, (conv, patches, result) in enumerate(zip(convs, self.patches, self.conv_out)):
            if i > 0:  # the previous conv's output, (B*oh*ow, C) rows, seen as NHWC
                src = self.conv_out[i - 1].reshape(self.batch, *convs[i - 1].out_hw, -1)
            sb, sy, sx, *inner = src.strides
            oh, ow = conv.out_hw
            shape = (self.batch, oh, ow, conv.k, conv.k, *src.shape[3:])
            view = as_strided(src, shape, (sb, conv.stride * sy, conv.stride * sx, sy, sx, *inner), writeable=False)
            dst = patches.reshape(shape)
            if self.batch == 1 and oh >= SPLIT_MIN_ROWS:
                cuts = ((0, oh // 2), (oh // 2, oh))
                out.append([(view[:, a:b], dst[:, a:b], patches[a * ow:b * ow], result[a * ow:b * ow]) for a, b in cuts])
            else:
                out.append([(view, dst, patches, result)])
        return out


class _Arrays:
    """The published weight map, checked name by name and shape by shape as layers take it."""

    def __init__(self, arrays: Mapping[str, Any]):
        self.arrays = dict(arrays)

    def take(self, layer: str, kernel_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        kernel = self._get(param_name(layer, KERNEL), kernel_shape)
        return kernel, self._get(param_name(layer, BIAS), (kernel_shape[-1],))

    def _get(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        if name not in self.arrays:
            raise WeightsError(f"weights have no {name!r} (they hold {sorted(self.arrays)})")
        a = np.asarray(self.arrays[name])
        if a.shape != tuple(shape):
            raise WeightsError(f"weight {name!r} has shape {a.shape}, the architecture and layout need {tuple(shape)}")
        if not np.issubdtype(a.dtype, np.floating):
            raise WeightsError(f"weight {name!r} has dtype {a.dtype}: expected float32")
        return np.ascontiguousarray(a, dtype=np.float32)

    def check_no_extra(self, names: set[str]) -> None:
        extra = sorted(set(self.arrays) - names)
        if extra:
            raise WeightsError(f"weights hold arrays the architecture does not use: {extra}")


def _conv(conv: _Conv, view: np.ndarray, dst: np.ndarray, patches: np.ndarray, out: np.ndarray) -> None:
    """im2col copy, one matmul, bias, ReLU (NumPy releases the GIL in each, so two halves run in parallel)."""
    np.copyto(dst, view)
    np.matmul(patches, conv.kernel, out=out)
    np.add(out, conv.bias, out=out)
    np.maximum(out, 0.0, out=out)


class _Helper:
    """One helper thread that runs the second half of a split conv while the caller runs the first.

    Waiting is a blocking queue get, not a spin: on a loaded machine the half simply runs later, where
    a multi-threaded OpenBLAS spin-waits (measured 20x slower CNN under load at 2 BLAS threads).
    """

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.done: queue.SimpleQueue = queue.SimpleQueue()
        self.lock = threading.Lock()
        threading.Thread(target=self._loop, name="tmrlx-policy-helper", daemon=True).start()

    def _loop(self) -> None:
        while True:
            fn, args = self.jobs.get()
            try:
                fn(*args)
                self.done.put(None)
            except Exception as e:  # handed to the caller, who raises it
                self.done.put(e)

    def both(self, fn: Callable[..., None], first: tuple, second: tuple) -> None:
        with self.lock:
            self.jobs.put((fn, second))
            try:
                fn(*first)
            finally:
                error = self.done.get()
        if error is not None:
            raise error


_helper_lock = threading.Lock()
_the_helper: _Helper | None = None


def _helper() -> _Helper:
    """The process's helper thread, started on first use."""
    global _the_helper
    with _helper_lock:
        if _the_helper is None:
            _the_helper = _Helper()
        return _the_helper


def _with_bias(kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """`[kernel; bias]`: with a constant 1 appended to the input, one matmul also adds the bias."""
    return np.ascontiguousarray(np.concatenate([kernel, bias[None]], axis=0), dtype=np.float32)


def _size(c: Component) -> int:
    return int(np.prod(c.obs_shape))


def _describe(spec: ObsSpec) -> str:
    parts = [f"{c.name}{list(c.obs_shape)}" for c in spec.components]
    return ", ".join(parts) + f", {spec.act_buf_len}x{spec.act_dim} actions"


def load_policy(path: Path, spec: ObsSpec | None = None, threads: int | None = None) -> Policy:
    """The policy in a weights file, for the command line: anything wrong with the file is a ConfigError that says what."""
    try:
        version, arrays, meta = weights.load(path)
        return Policy(arrays, meta, spec, version, threads)
    except WeightsError as e:
        raise ConfigError(str(e)) from None
    except (ValueError, TypeError, KeyError) as e:
        raise ConfigError(f"weights file {path} is malformed ({type(e).__name__}: {e})") from None
