"""Keep the learner's freed memory for reuse instead of handing it back to the kernel after every call.

XLA on the CPU allocates each call's temporaries afresh. With glibc's defaults every block over 32 MiB
is mmapped and unmapped again, so each image-CNN update at batch 256 page-faulted ~1.2 GB back in
(~400k faults, ~0.8 s of kernel time per ~4.5 s update on a 2-core box). The tunables below keep freed
memory in one heap (no mmap, one arena) that is never trimmed: 0 faults per update. The price: the
learner's RSS stays at its peak. (`glibc.malloc.hugetlb=1` is left out: with it, glibc 2.36 mmaps
large blocks again.) glibc reads tunables only at start, so the learner re-executes itself once
(same PID, same arguments) before importing JAX. `TMRLX_DEFAULT_MALLOC=1` opts out.
"""

from __future__ import annotations

import os
import platform
import sys

TUNABLES = ("glibc.malloc.mmap_max=0", "glibc.malloc.trim_threshold=68719476736", "glibc.malloc.arena_max=1")
OPT_OUT = "TMRLX_DEFAULT_MALLOC"


def reexec_with_tuned_malloc() -> None:
    """Re-execute this process with `TUNABLES` unless they are set, opted out of, or this is not Linux + glibc."""
    current = os.environ.get("GLIBC_TUNABLES", "")
    if (sys.platform != "linux" or platform.libc_ver()[0] != "glibc" or os.environ.get(OPT_OUT)
            or "glibc.malloc.mmap_max" in current):
        return
    env = dict(os.environ, GLIBC_TUNABLES=":".join(filter(None, (current, *TUNABLES))))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
