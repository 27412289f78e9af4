"""The benchmarks run without torch: TMRL's figures are left out with the install hint, tmrlx's are measured."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK_TORCH = """
import runpy, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
sys.argv = [{module!r}, *{args!r}]
runpy.run_module({module!r}, run_name="__main__")
"""


def _run_without_torch(module: str, *args: str) -> subprocess.CompletedProcess:
    code = textwrap.dedent(BLOCK_TORCH.format(module=module, args=list(args)))
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_every_bench_module_imports_without_torch():
    block = textwrap.dedent(BLOCK_TORCH.split("sys.argv")[0])
    code = block + "import bench.actor, bench.learner, bench.broker, bench.sim, bench.ratio"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr


@pytest.mark.slow
def test_the_actor_bench_runs_without_torch_and_omits_tmrl():
    r = _run_without_torch("bench.actor", "--rounds", "1", "--calls", "20")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "torch is not installed" in r.stdout
    figures = json.loads(r.stdout.strip().splitlines()[-1])
    assert figures["mlp_p50_us"] > 0 and not any(k.startswith("tmrl_") for k in figures)


def test_the_learner_bench_fills_its_replay_memory_through_legal_chunks():
    from tmrlx.common.chunks import MAX_ROWS
    from tmrlx.common.config import load_config
    from tmrlx.common.kinds import spec_from_config
    from tmrlx.learner.replay import size

    from bench.learner import filled_replay

    spec = spec_from_config(load_config(overrides={"ENV": {"RTGYM_INTERFACE": "TM20LIDAR"}}))
    assert size(filled_replay(spec, 2 * MAX_ROWS + 5)) == 2 * MAX_ROWS + 5


def test_the_profile_counts_the_flops_of_dots_and_convolutions_as_xla_does():
    import jax
    import jax.numpy as jnp

    from bench.profile import hlo_ops

    x, k, w = jnp.ones((8, 16, 16, 4)), jnp.ones((4, 4, 4, 6)), jnp.ones((6 * 7 * 7, 5))

    def f(x, k, w):
        h = jax.lax.conv_general_dilated(x, k, (2, 2), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return h.reshape(8, -1) @ w

    compiled = jax.jit(f).lower(x, k, w).compile()
    expected = 2 * 8 * 7 * 7 * 6 * (4 * 4 * 4) + 2 * 8 * 5 * (6 * 7 * 7)
    assert sum(flops for flops, _ in hlo_ops(compiled.as_text()).values()) == expected
