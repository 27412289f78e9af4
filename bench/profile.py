"""Where the learner's fused update spends its time: a trace summed per XLA operation (`just bench profile`).

Runs the fused block of `bench.learner` (SAC or REDQ on the lidar MLP, or SAC on the image CNN) under
`jax.profiler`, sums each XLA operation's time over the trace's threads, and maps it to the compiled HLO: the
FLOPs of its dots and convolutions, and its place in the update from the op name (`jax.named_scope`s of
`learner.update`: sample, critic_opt, actor_opt, polyak; autodiff's jvp/transpose for forward and backward). The
profiler costs ~1 us per operation, which inflates small ones: compare the trace's ms per update with the
untraced one printed first. Run it as the bench runs (`reexec_with_tuned_malloc`), pinned with `taskset` to
compare variants.
"""

from __future__ import annotations

import argparse
import collections
import glob
import re
import tempfile
import time

import jax
import numpy as np
from jax.profiler import ProfileData
from tmrlx.common.config import load_config
from tmrlx.common.kinds import spec_from_config
from tmrlx.common.weights import Arch
from tmrlx.learner.allocator import reexec_with_tuned_malloc
from tmrlx.learner.devices import Devices

from bench.learner import fused_setup

CASES = {"sac": ("SAC", "TM20LIDAR", 10), "redq": ("REDQSAC", "TM20LIDAR", 1), "cnn": ("SAC", "TM20FULL", 1)}
SCOPES = ("sample", "critic_opt", "actor_opt", "polyak")
INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = (\w+)\[([\d,]*)\]\S* (\w[\w\-]*)\((.*)$", re.M)
COMPUTATION = re.compile(r"^(?:ENTRY )?%([\w.\-]+) [^\n]*\{\n(.*?)\n\}", re.M | re.S)


def op_flops(opcode: str, dims: list[int], rest: str, shapes: dict[str, list[int]]) -> float:
    """FLOPs of one dot or convolution instruction: 2 x output elements x contracted size."""
    out = float(np.prod(dims)) if dims else 1.0
    if opcode == "dot":
        lhs = shapes.get(re.match(r"%([\w.\-]+)", rest).group(1), [])
        contracting = [int(d) for d in re.search(r"lhs_contracting_dims=\{([\d,]*)\}", rest).group(1).split(",") if d]
        return 2 * out * float(np.prod([lhs[d] for d in contracting])) if lhs else 0.0
    if opcode == "convolution":
        operands = re.findall(r"%([\w.\-]+)", rest.split(")")[0])
        kernel = shapes.get(operands[1], []) if len(operands) > 1 else []
        labels = re.search(r"dim_labels=\w+_(\w+)->", rest)
        if not kernel or not labels:
            return 0.0
        per_output = np.prod([n for n, label in zip(kernel, labels.group(1)) if label != "o"])
        groups = re.search(r"feature_group_count=(\d+)", rest)
        return 2 * out * float(per_output) / (int(groups.group(1)) if groups else 1)
    return 0.0


def hlo_ops(text: str) -> dict[str, tuple[float, str]]:
    """Each executed instruction's (FLOPs, op name), a fusion's FLOPs summed over the computation it calls."""
    shapes = {m.group(1): [int(d) for d in m.group(3).split(",") if d] for m in INSTRUCTION.finditer(text)}
    computations = {m.group(1): m.group(2) for m in COMPUTATION.finditer(text)}
    flops_of = {name: sum(op_flops(m.group(4), [int(d) for d in m.group(3).split(",") if d], m.group(5), shapes)
                          for m in INSTRUCTION.finditer(body)) for name, body in computations.items()}
    fused = set(re.findall(r" fusion\(.*?calls=%([\w.\-]+)", text))
    out = {}
    for body in (body for name, body in computations.items() if name not in fused):
        for m in INSTRUCTION.finditer(body):
            name, opcode, rest = m.group(1), m.group(4), m.group(5)
            called = re.search(r"calls=%([\w.\-]+)", rest)
            flops = flops_of.get(called.group(1), 0.0) if called and opcode == "fusion" else op_flops(
                opcode, [int(d) for d in m.group(3).split(",") if d], rest, shapes)
            meta = re.search(r'op_name="([^"]+)"', rest)
            out[name] = (flops, meta.group(1) if meta else "")
    return out


def category(flops: float, op_name: str) -> str:
    if flops:
        return "matmul/conv"
    for scope in SCOPES:
        if f"/{scope}/" in op_name or op_name.endswith(f"/{scope}"):
            return scope
    if any(s in op_name for s in ("random", "_randint", "_normal", "_uniform", "threefry", "fold_in")):
        return "rng"
    return ("backward" if "transpose(" in op_name else "forward" if "jvp(" in op_name
            else "other" if op_name else "no op name (copies, loops)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", nargs="?", choices=sorted(CASES), default="sac")
    parser.add_argument("--calls", type=int, default=0, help="traced calls (default: 5, 2 for the CNN)")
    parser.add_argument("--top", type=int, default=25, help="operations listed")
    args = parser.parse_args()
    reexec_with_tuned_malloc()
    algorithm, interface, units = CASES[args.case]
    cfg = load_config(overrides={"BATCH_SIZE": 256, "CUDA_TRAINING": False, "ENV": {"RTGYM_INTERFACE": interface},
                                 "ALG": {"ALGORITHM": algorithm}})
    spec = spec_from_config(cfg)
    sac, state, replay = fused_setup(cfg, spec, Arch.for_spec(spec), units, Devices(jax.devices()[:1]))
    box = [state]

    def call() -> None:
        box[0], _ = sac.run(box[0], replay)
        jax.block_until_ready(box[0])

    calls = args.calls or (2 if args.case == "cnn" else 5)
    call()
    t = time.perf_counter()
    for _ in range(calls):
        call()
    per_update = calls * sac.updates_per_call
    print(f"{args.case}: {(time.perf_counter() - t) * 1e3 / per_update:.3f} ms per update untraced")
    where = tempfile.mkdtemp(prefix="tmrlx-profile-")
    jax.profiler.start_trace(where)
    for _ in range(calls):
        call()
    jax.profiler.stop_trace()
    times: collections.Counter[str] = collections.Counter()
    for plane in ProfileData.from_file(glob.glob(f"{where}/**/*.xplane.pb", recursive=True)[0]).planes:
        for line in plane.lines:
            if line.name != "python":  # XLA's threads: the client's and the intra-op pool's
                for event in line.events:
                    times[event.name] += event.duration_ns
    ops = hlo_ops(sac.run.lower(box[0], replay).compile().as_text())
    mine = {name: ns / 1e6 / per_update for name, ns in times.items() if name in ops}
    print(f"traced: {sum(mine.values()):.3f} ms of XLA operations per update; trace files in {where}")
    by_category: collections.Counter[str] = collections.Counter()
    for name, ms in mine.items():
        by_category[category(*ops[name])] += ms
    for cat, ms in by_category.most_common():
        print(f"  {ms:9.3f} ms  {cat}")
    print(f"top {args.top} operations (ms per update; GFLOP/s of dots and convolutions; op name):")
    for name, ms in sorted(mine.items(), key=lambda kv: -kv[1])[:args.top]:
        flops, op_name = ops[name]
        rate = f"{flops / ms / 1e6:6.0f}" if flops else "      "
        print(f"  {ms:9.3f} {rate}  {name:30s} {op_name[-90:]}")


if __name__ == "__main__":
    main()
