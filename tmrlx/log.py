"""Logging for every command, configured once by the CLI: `tmrlx <command>: message` on stderr.

Each role logs to its own logger (`tmrlx.actor`, `tmrlx.broker`, `tmrlx.learner`; the wire logs to
the role it serves), so a user can raise or lower one of them; library code never configures logging.
"""

from __future__ import annotations

import logging
import sys


def setup(command: str, level: int = logging.INFO) -> None:
    """One handler on the `tmrlx` logger; on a terminal each record first clears a live status line."""
    handler = logging.StreamHandler(sys.stderr)
    clear = "\r\033[K" if sys.stderr.isatty() else ""
    handler.setFormatter(logging.Formatter(f"{clear}tmrlx {command}: %(message)s"))
    logger = logging.getLogger("tmrlx")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    # Libraries' warnings go through the root logger, and a library that logs there with no handler makes a plain one
    # (logging.basicConfig): every tmrlx line would show twice. Plain stderr handlers on the root skip ours.
    root = logging.getLogger()
    if not root.handlers:
        others = logging.StreamHandler(sys.stderr)
        others.setLevel(logging.WARNING)
        root.addHandler(others)
    for h in root.handlers:
        if type(h) is logging.StreamHandler:
            h.addFilter(_not_ours)


def _not_ours(record: logging.LogRecord) -> bool:
    return not record.name.startswith("tmrlx")
