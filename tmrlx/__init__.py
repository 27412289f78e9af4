"""tmrlx: distributed real-time reinforcement learning (TMRL rebuilt on JAX/Flax and ZeroMQ).

The application layer (command line, demo, plot) lives here; the library and the roles are
installed beneath it as `tmrlx.common`, `tmrlx.actor`, `tmrlx.broker` and `tmrlx.learner`.
"""

from pathlib import Path

__version__ = "0.1.0"

# Imported from a source tree (the repository root first on sys.path, as `python -m bench.NAME` there does), this
# folder shadows the installed package: the roles are then its sibling folders, found as pyproject's package-dir
# maps them. An installed package has no such siblings and is left as it is.
_ROOT = Path(__file__).resolve().parent.parent
if (_ROOT / "pyproject.toml").is_file() and (_ROOT / "common" / "chunks.py").is_file():
    __path__.append(str(_ROOT))  # noqa: F821 (a package's __path__)
