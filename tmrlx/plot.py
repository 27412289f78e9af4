"""`tmrlx plot RUN_NAME [RUN_NAME...]`: the learning curves of runs (their JSONL metrics logs) as one PNG."""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

from tmrlx.common import paths
from tmrlx.common.config import Config
from tmrlx.common.metrics import read_jsonl

logger = logging.getLogger("tmrlx")
# a panel per entry; "a+b" draws both metrics in one panel (training beside test episodes)
DEFAULT_KEYS = ("return+return_test", "episode_length+length_test", "lap_test", "loss_critic", "loss_actor", "q", "alpha",
                "entropy", "updates_per_s", "samples_per_s", "updates_per_sample")


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN_NAME", help="runs to draw (their logs/RUN_NAME/metrics.jsonl)")
    parser.add_argument("--out", type=Path, default=None, help="PNG to write (default: logs/<first run>.png)")
    parser.add_argument("--x", default="samples", choices=("samples", "updates", "t"), help="horizontal axis")
    parser.add_argument("--keys", nargs="+", default=list(DEFAULT_KEYS),
                        help="metrics to draw, one panel each; a+b draws a and b in one panel")


def plot(runs: dict[str, list[dict]], keys: list[str], x: str, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logged = {k for recs in runs.values() for r in recs for k in r}
    panels = [[k for k in panel.split("+") if k in logged] for panel in keys]
    panels = [p for p in panels if p]
    if not panels:
        raise ValueError("none of the requested metrics appear in these logs")
    cols = min(len(panels), 2)
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        for name, recs in runs.items():
            for key in panel:
                pts = [(r[x], r[key]) for r in recs if r.get(key) is not None and r.get(x) is not None]
                if pts:
                    ax.plot(*zip(*pts), label=name if len(panel) == 1 else f"{name} {key}")
        ax.set_title(" / ".join(panel))
        ax.set_xlabel(x)
        ax.legend(fontsize="small")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def run(cfg: Config, args: argparse.Namespace) -> int:
    runs = {}
    for name in args.runs:
        log = paths.logs_dir() / name / "metrics.jsonl"
        if not log.exists():
            logger.error("no metrics for run %r (expected %s)", name, log)
            return 1
        runs[name] = read_jsonl(log)
    out = args.out or paths.logs_dir() / f"{args.runs[0]}.png"
    try:
        plot(runs, args.keys, args.x, out)
    except ValueError as e:
        logger.error("%s", e)
        return 1
    print(f"tmrlx plot: wrote {out}")
    return 0
