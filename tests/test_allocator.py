"""The learner's malloc tunables: re-executed once, same PID, and large freed blocks are reused without page faults."""

import json
import os
import subprocess
import sys

import pytest
from tmrlx.learner.allocator import OPT_OUT

PROBE = r"""
import ctypes, json, os, resource, sys
from tmrlx.learner.allocator import reexec_with_tuned_malloc
print(json.dumps({"pid": os.getpid()}), flush=True)
reexec_with_tuned_malloc()
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def block():  # what XLA does with a call's temporaries: a 64 MiB block, written, freed
    p = libc.malloc(64 << 20)
    ctypes.memset(p, 1, 64 << 20)
    libc.free(p)
block()
before = faults()
for _ in range(3):
    block()
print(json.dumps({"pid": os.getpid(), "tunables": os.environ.get("GLIBC_TUNABLES", ""), "faults": faults() - before}))
"""


def probe(**env: str) -> list[dict]:
    out = subprocess.run([sys.executable, "-c", PROBE], env={**os.environ, **env}, check=True, capture_output=True, text=True)
    return [json.loads(line) for line in out.stdout.splitlines()]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc tunables")
def test_reexec_keeps_the_pid_and_large_blocks_stop_faulting():
    env = {"GLIBC_TUNABLES": ""}
    first, again, after = probe(**env)  # the first line twice: before and after the re-exec
    assert first["pid"] == again["pid"] == after["pid"]
    assert "glibc.malloc.mmap_max=0" in after["tunables"]
    assert after["faults"] < 500  # three 64 MiB blocks reused: no fresh pages

    started, plain = probe(**env, **{OPT_OUT: "1"})  # opted out: no re-exec, every block faults in afresh
    assert plain["tunables"] == "" and plain["faults"] > 3 * 16384 * 0.9  # 4 KiB pages
