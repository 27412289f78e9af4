"""Learner benchmark: fused SAC / REDQ updates/s vs the plain way and vs the FLOP ceiling (`just bench learner`).

The FLOP ceiling is the update's FLOPs (XLA cost analysis) against the jitted matmul GFLOP/s measured in the same run;
`*_overhead_ms` is the measured time per update minus that FLOP-bound time, the figure that boxes of different speeds
can compare; `*_dots_alone_ms` is the time of the update's own matmuls (their shapes after autodiff and vmap) run as a
program of nothing else, what an update with free non-matmul work would take. "Plain" is one jitted step per Python
call on a batch sampled on the host. With several devices visible, `sac_mlp_updates_per_s_devices_{n}` is the fused
SAC block data parallel on n of them. "tmrl_*" is TMRL itself re-created in PyTorch (`bench.tmrl_reference`), timed in
the same run when torch is installed: as users run it, in a child process with glibc's default malloc, while tmrlx
runs as `tmrlx learner` does (with `learner.allocator`'s malloc tunables); `tmrl_sac_cnn_same_malloc_updates_per_s`
times TMRL's CNN update in this process, with the same tunables, for a like-for-like figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jcore
from tmrlx.common.chunks import MAX_ROWS, StreamCounter
from tmrlx.common.config import load_config
from tmrlx.common.kinds import spec_from_config
from tmrlx.common.weights import Arch
from tmrlx.learner.allocator import OPT_OUT, TUNABLES, reexec_with_tuned_malloc
from tmrlx.learner.devices import Devices
from tmrlx.learner.ingest import Ingest, concat_rows
from tmrlx.learner.replay import init_replay, insert
from tmrlx.learner.update import SAC

from bench import tmrl_reference as tmrl


def timed(fn, repeats: int, warmup: int = 3) -> float:
    """Median seconds of `fn()` (which must block), after `warmup` calls: XLA's CPU heap grows over the first calls
    of a CNN update (~0.8 GB more at batch 256; 160-200k page faults, 2.5x the time of a later call)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def matmul_gflops(n: int = 1024, readings: int = 5) -> float:
    """A jitted n x n matmul's GFLOP/s: the best of `readings` medians of 10 calls (one median swings by a third on a
    shared box, and a ceiling is the best rate the box sustains)."""
    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    return max(2 * n**3 / timed(lambda: f(a).block_until_ready(), 10) / 1e9 for _ in range(readings))


def flops(compiled) -> float:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost["flops"])


def loop_free(sac: SAC, state, replay):
    """(critic, full, noise): one critic update and one critic + actor update as loop-free functions of (state, replay,
    noise), with the last update's noise given: XLA counts a scan body once, and the random draws' integer arithmetic is
    not the update's maths."""
    noise = {k: v if k == "eps" else v[-1] for k, v in jax.jit(sac.noise)(state.key, replay).items()}

    def critic(st, rep, n):
        batch, w = sac.sample(rep, n["rows"])
        return sac.critic_step(st, batch, w, n["eps2"], n.get("subset"))[0]

    def full(st, rep, n):
        return sac.actor_step(critic(st, rep, n), *sac.sample(rep, n["rows"]), n["eps"])[0]

    return critic, full, noise


def update_flops(sac: SAC, state, replay, parts) -> float:
    """FLOPs per critic update (a unit's G - 1 critic updates and its last, with the actor's, averaged) of `loop_free`'s
    `parts`."""
    critic, full, noise = parts
    f_critic, f_full = (flops(jax.jit(f).lower(state, replay, noise).compile()) for f in (critic, full))
    return ((sac.g - 1) * f_critic + f_full) / sac.g


def dots_of(jaxpr, out: list) -> list:
    """Every `dot_general` of `jaxpr` and the jaxprs it calls: (lhs shape, rhs shape, dimension numbers)."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            out.append((eqn.invars[0].aval.shape, eqn.invars[1].aval.shape, eqn.params["dimension_numbers"]))
        for sub in jcore.jaxprs_in_params(eqn.params):
            dots_of(sub, out)
    return out


def dots_alone_ms(sac: SAC, state, replay, parts, repeats: int) -> float:
    """ms per critic update of the matmuls of `loop_free`'s `parts` (the same shapes and dimension numbers, after
    autodiff and vmap) run as one program of nothing else: what the update would cost if every other operation were
    free."""
    critic, full, noise = parts
    rng = np.random.default_rng(0)

    def program(fn):
        dots = dots_of(jax.make_jaxpr(fn)(state, replay, noise).jaxpr, [])
        operands = [(jnp.asarray(rng.standard_normal(a, np.float32)), jnp.asarray(rng.standard_normal(b, np.float32)))
                    for a, b, _ in dots]
        run = jax.jit(lambda ops: [jax.lax.dot_general(x, y, dn) for (x, y), (_, _, dn) in zip(ops, dots, strict=True)])
        return lambda: jax.block_until_ready(run(operands))

    t_critic, t_full = (timed(program(fn), repeats) for fn in (critic, full))
    return 1e3 * ((sac.g - 1) * t_critic + t_full) / sac.g


def overhead_ms(updates_per_s: float, flops_per_update: float, gflops: float) -> float:
    """Measured ms per update minus its FLOP-bound ms: what boxes of different speeds can compare."""
    return 1e3 / updates_per_s - 1e3 * flops_per_update / (gflops * 1e9)


def dots_line(updates_per_s: float, flops_per_update: float, dots_ms: float, gflops: float) -> str:
    return (f"its matmuls alone {dots_ms:.2f} ms ({flops_per_update / gflops / 1e6 / dots_ms:.0%} of the ceiling), "
            f"the update {1e3 / updates_per_s / dots_ms:.0%} of that")


def filled_replay(spec, rows: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    arrays = {f"obs.{c.name}": (rng.integers(0, 255, (rows, *c.shape), dtype=np.uint8) if c.dtype == "uint8"
                                else rng.random((rows, *c.shape), dtype=np.float32)) for c in spec.components}
    arrays.update(action=rng.uniform(-1, 1, (rows, spec.act_dim)).astype(np.float32), reward=rng.random(rows, dtype=np.float32),
                  terminated=rng.random(rows) < 0.01, truncated=np.zeros(rows, bool), first=np.arange(rows) % 500 == 0)
    ingest, stream = Ingest(spec), StreamCounter("bench")
    chunks = ({k: v[start:start + MAX_ROWS] for k, v in arrays.items()} for start in range(0, rows, MAX_ROWS))
    parts = [ingest.rows_of(stream.stamp(len(c["reward"]), 0), c) for c in chunks]  # as chunks arrive: MAX_ROWS rows at most
    return insert(init_replay(spec, rows), concat_rows(parts))


def host_sample(host: dict, spec, rng, batch: int) -> tuple[dict, np.ndarray]:
    """TMRL-style sampling on the host (vectorised NumPy, still a host->device copy per step)."""
    n = len(host["reward"])
    idx = rng.integers(0, n, batch)
    idx = np.where(host["first"][idx], (idx + 1) % n, idx)
    depth = max([c.history for c in spec.components] + [spec.act_buf_len, 1])
    chain = [idx]
    for _ in range(depth):
        chain.append(host["prev"][chain[-1]])
    chain = np.stack(chain)

    def obs(off):
        out = {c.name: (np.moveaxis(host[f"obs.{c.name}"][chain[off:off + c.history][::-1]], 0, 1) if c.history > 1
                        else host[f"obs.{c.name}"][chain[off]]) for c in spec.components}
        out["act_buf"] = np.moveaxis(host["action"][chain[off:off + spec.act_buf_len][::-1]], 0, 1)
        return out

    b = {"o": obs(1), "o2": obs(0), "a": host["action"][idx], "r": host["reward"][idx], "terminated": host["terminated"][idx]}
    return b, np.ones(batch, np.float32)


def fused(cfg, spec, arch, units: int, repeats: int, dots: bool = False) -> tuple[float, float, float]:
    """(updates/s, FLOPs per update, ms per update of its matmuls alone when `dots`, else nan) of the fused,
    device-sampled block on one device."""
    sac, state, replay = fused_setup(cfg, spec, arch, units, Devices(jax.devices()[:1]))
    parts = loop_free(sac, state, replay)
    per_update = update_flops(sac, state, replay, parts)
    dots_ms = dots_alone_ms(sac, state, replay, parts, 5 * repeats) if dots else float("nan")
    return updates_per_s(sac, state, replay, repeats), per_update, dots_ms


def fused_setup(cfg, spec, arch, units: int, devices: Devices):
    """The fused block on `devices`, its initial state and a filled replay memory placed there."""
    sac = SAC(cfg, spec, arch, units, devices)
    replay = devices.put(filled_replay(spec, 20_000 if arch.type == "mlp" else 2_000))
    return sac, devices.put(jax.jit(sac.init)(jax.random.PRNGKey(0))), replay


def updates_per_s(sac: SAC, state, replay, repeats: int) -> float:
    box = [state]

    def call():
        box[0], info = sac.run(box[0], replay)
        jax.block_until_ready(box[0])

    return sac.updates_per_call / timed(call, repeats)


def device_counts(visible: int, batch: int) -> list[int]:
    """1, 2, 4, ... and all of the visible devices, those the batch divides among."""
    return [n for n in sorted({*(1 << i for i in range(visible.bit_length())), visible}) if batch % n == 0]


def data_parallel(cfg, spec, arch, units: int, repeats: int) -> dict[str, float]:
    """SAC lidar MLP updates/s on 2, 4, ... of the visible devices, the same global batch split across them."""
    out = {}
    for n in device_counts(len(jax.devices()), cfg.BATCH_SIZE)[1:]:
        ups = updates_per_s(*fused_setup(cfg, spec, arch, units, Devices(jax.devices()[:n])), repeats)
        out[f"sac_mlp_updates_per_s_devices_{n}"] = ups
        print(f"SAC lidar MLP fused x{units} on {n} devices (data parallel, batch {cfg.BATCH_SIZE}): {ups:.1f} updates/s")
    return out


def plain(cfg, spec, arch, repeats: int) -> float:
    sac = SAC(cfg, spec, arch)
    host = jax.device_get(filled_replay(spec, 20_000).data)
    rng = np.random.default_rng(0)

    @jax.jit
    def step(state, batch, w):
        key, k1, k2 = jax.random.split(state.key, 3)
        eps2, eps = (jax.random.normal(k, (cfg.BATCH_SIZE, spec.act_dim)) for k in (k1, k2))
        state, _ = sac.critic_step(state.replace(key=key), batch, w, eps2)
        return sac.actor_step(state, batch, w, eps)[0]

    box = [jax.jit(sac.init)(jax.random.PRNGKey(0))]

    def call():
        batch, w = host_sample(host, spec, rng, cfg.BATCH_SIZE)
        box[0] = step(box[0], batch, w)
        jax.block_until_ready(box[0])

    return 1.0 / timed(call, repeats)


def tmrl_figures(cnn: bool, batch: int) -> dict[str, float]:
    """TMRL's own train() calls per second on this machine (PyTorch), the reference of the figures above."""
    out = {"tmrl_sac_mlp_updates_per_s": 1.0 / timed(tmrl.train_call(False, batch), 30),
           "tmrl_sac_mlp_with_sampling_updates_per_s": 1.0 / timed(tmrl.train_call(False, batch, with_sampling=True), 30)}
    redq = tmrl.train_call(False, batch, redq=True)
    out["tmrl_redq_mlp_critic_updates_per_s"] = 20 / timed(lambda: [redq() for _ in range(20)], 3)
    if cnn:
        out["tmrl_sac_cnn_updates_per_s"] = 1.0 / timed(tmrl.train_call(True, batch), 3)
    print(f"TMRL (PyTorch {tmrl.torch.__version__}, {tmrl.threads()} threads): SAC MLP {out['tmrl_sac_mlp_updates_per_s']:.1f} "
          f"updates/s, {out['tmrl_sac_mlp_with_sampling_updates_per_s']:.1f} with its replay sampling; REDQ "
          f"{out['tmrl_redq_mlp_critic_updates_per_s']:.1f} critic updates/s"
          + (f"; SAC CNN {out['tmrl_sac_cnn_updates_per_s']:.2f} updates/s" if cnn else ""))
    return out


def tmrl_as_users_run_it(cnn: bool, torch_threads: int) -> dict[str, float]:
    """`tmrl_figures` in a child process with glibc's default malloc (our tunables stripped from its environment)."""
    tunables = ":".join(t for t in os.environ.get("GLIBC_TUNABLES", "").split(":") if t and t not in TUNABLES)
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"} | {OPT_OUT: "1"}
    if tunables:
        env["GLIBC_TUNABLES"] = tunables
    cmd = [sys.executable, "-m", "bench.learner", "--tmrl-only", "--torch-threads", str(torch_threads)]
    cmd += [] if cnn else ["--skip-cnn"]
    out = subprocess.run(cmd, env=env, check=True, stdout=subprocess.PIPE, text=True).stdout
    print(out.strip().splitlines()[0])
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--skip-cnn", action="store_true", help="skip the image CNN (slow to compile on CPU)")
    parser.add_argument("--skip-tmrl", action="store_true", help="skip TMRL's PyTorch reference")
    parser.add_argument("--torch-threads", type=int, default=0, help="torch threads for TMRL's reference (0: torch's default)")
    parser.add_argument("--tmrl-only", action="store_true", help=argparse.SUPPRESS)  # the child of tmrl_as_users_run_it
    args = parser.parse_args()
    if args.torch_threads and tmrl.available():
        tmrl.torch.set_num_threads(args.torch_threads)
    if args.tmrl_only:
        print(json.dumps(tmrl_figures(not args.skip_cnn, 256)))
        return
    reexec_with_tuned_malloc()  # as `tmrlx learner` runs
    device = jax.devices()[0]
    gpu = device.platform == "gpu"
    base = {"BATCH_SIZE": 256, "CUDA_TRAINING": gpu}
    lidar = load_config(overrides={**base, "ENV": {"RTGYM_INTERFACE": "TM20LIDAR"}})
    spec = spec_from_config(lidar)
    arch = Arch.for_spec(spec)
    gflops = matmul_gflops(2048 if gpu else 1024)
    print(f"device: {device.device_kind} ({device.platform}); jitted matmul {gflops:.1f} GFLOP/s")
    out: dict = {"device": f"{device.device_kind} ({device.platform})", "matmul_gflops": round(gflops, 1)}

    units = 50 if gpu else 10
    ups, f, dots = fused(lidar, spec, arch, units, 10 if gpu else 5, dots=True)
    out.update(sac_mlp_updates_per_s=ups, sac_mlp_flop_bound_updates_per_s=gflops * 1e9 / f, sac_mlp_gflop_per_update=f / 1e9,
               sac_mlp_overhead_ms=overhead_ms(ups, f, gflops), sac_mlp_dots_alone_ms=dots)
    print(f"SAC lidar MLP fused x{units}: {ups:.1f} updates/s (ceiling {gflops * 1e9 / f:.1f}, {ups * f / gflops / 1e7:.0f}%; "
          f"{f / 1e9:.3f} GFLOP/update; overhead {out['sac_mlp_overhead_ms']:.2f} ms/update); {dots_line(ups, f, dots, gflops)}")
    if len(jax.devices()) > 1:
        out.update(sac_mlp_updates_per_s_devices_1=ups, **data_parallel(lidar, spec, arch, units, 10 if gpu else 5))
    out["sac_mlp_plain_updates_per_s"] = plain(lidar, spec, arch, 30)
    print(f"SAC lidar MLP plain (host sampling, one step per call): {out['sac_mlp_plain_updates_per_s']:.1f} updates/s")

    redq = lidar.replace({"ALG": {"ALGORITHM": "REDQSAC"}})
    ups, f, dots = fused(redq, spec, arch, 1, 5, dots=True)
    out.update(redq_mlp_critic_updates_per_s=ups, redq_mlp_flop_bound_critic_updates_per_s=gflops * 1e9 / f,
               redq_mlp_overhead_ms=overhead_ms(ups, f, gflops), redq_mlp_dots_alone_ms=dots)
    print(f"REDQ lidar MLP (N10 M2 G20): {ups:.1f} critic updates/s (ceiling {gflops * 1e9 / f:.1f}, "
          f"{ups * f / gflops / 1e7:.0f}%; overhead {out['redq_mlp_overhead_ms']:.2f} ms/critic update); "
          f"{dots_line(ups, f, dots, gflops)}")

    if not args.skip_cnn:
        full = load_config(overrides={**base, "ENV": {"RTGYM_INTERFACE": "TM20FULL"}})
        cspec = spec_from_config(full)
        t = time.perf_counter()
        ups, f, _ = fused(full, cspec, Arch.for_spec(cspec), 1, 10 if gpu else 3)
        out.update(sac_cnn_updates_per_s=ups, sac_cnn_flop_bound_updates_per_s=gflops * 1e9 / f, sac_cnn_gflop_per_update=f / 1e9,
                   sac_cnn_overhead_ms=overhead_ms(ups, f, gflops))
        print(f"SAC image CNN: {ups:.2f} updates/s (ceiling {gflops * 1e9 / f:.2f}, {ups * f / gflops / 1e7:.0f}%; "
              f"{f / 1e9:.1f} GFLOP/update; overhead {out['sac_cnn_overhead_ms']:.0f} ms/update; "
              f"{time.perf_counter() - t:.0f} s with compile)")
    if not args.skip_tmrl and not tmrl.available():
        print(tmrl.INSTALL_HINT)
    elif not args.skip_tmrl:
        out["tmrl_torch_threads"] = tmrl.threads()
        out.update(tmrl_as_users_run_it(not args.skip_cnn, args.torch_threads))
        if not args.skip_cnn:
            out["tmrl_sac_cnn_same_malloc_updates_per_s"] = 1.0 / timed(tmrl.train_call(True, 256), 3)
            print(f"TMRL SAC CNN with tmrlx's malloc tunables: {out['tmrl_sac_cnn_same_malloc_updates_per_s']:.2f} updates/s")
    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in out.items()}))


if __name__ == "__main__":
    main()
