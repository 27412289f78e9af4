"""Metric sinks shared by every role: a progress bar per epoch, a JSONL log that `tmrlx plot` reads, wandb.

A record is a flat dict of numbers (plus `epoch`/`round` counters). Sinks never raise on a
non-finite value: they write it as null (JSONL) so one bad loss does not stop training.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol


class Sink(Protocol):
    def start_epoch(self, epoch: int, rounds: int) -> None: ...
    def write(self, record: Mapping[str, Any]) -> None: ...
    def close(self) -> None: ...


def _clean(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class JsonlSink:
    """Appends one JSON object per record (with wall time `t`), so a resumed run continues the same file."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = self.path.open("a", buffering=1)

    def start_epoch(self, epoch: int, rounds: int) -> None:
        pass

    def write(self, record: Mapping[str, Any]) -> None:
        self._f.write(json.dumps({"t": time.time(), **{k: _clean(v) for k, v in record.items()}}) + "\n")

    def close(self) -> None:
        self._f.close()


class TerminalSink:
    """A tqdm bar per epoch, its postfix showing the `keys` of the latest record."""

    def __init__(self, keys: Iterable[str] = ("return", "return_test", "loss_critic", "updates_per_s", "samples_per_s",
                                              "updates_per_sample"),
                 file=sys.stderr):
        self.keys, self.file, self.bar = tuple(keys), file, None

    def start_epoch(self, epoch: int, rounds: int) -> None:
        from tqdm import tqdm

        self.close()
        self.bar = tqdm(total=rounds, desc=f"epoch {epoch}", file=self.file, leave=True, dynamic_ncols=True)

    def write(self, record: Mapping[str, Any]) -> None:
        if self.bar is None:
            return
        shown = {k: _clean(record[k]) for k in self.keys if k in record}
        shown = {k: v for k, v in shown.items() if v is not None}  # NaN: nothing to show (no test episode this round)
        self.bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in shown.items()}, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class WandbSink:
    """wandb with the config's WANDB_* keys; the run id is the RUN_NAME, so a resumed run continues its curves."""

    def __init__(self, project: str, entity: str, key: str, run_name: str, config: Mapping[str, Any]):
        try:
            import wandb
        except ImportError:
            raise RuntimeError("--wandb needs the wandb package: pip install 'tmrlx[wandb]'") from None
        if key and key != "YourWandbApiKey":
            wandb.login(key=key)
        self.run = wandb.init(project=project, entity=entity, name=run_name, id=run_name, resume="allow", config=dict(config))

    def start_epoch(self, epoch: int, rounds: int) -> None:
        pass

    def write(self, record: Mapping[str, Any]) -> None:
        self.run.log({k: _clean(v) for k, v in record.items()})

    def close(self) -> None:
        self.run.finish()


class Metrics:
    """Fans records out to several sinks."""

    def __init__(self, sinks: Iterable[Sink]):
        self.sinks = list(sinks)

    def start_epoch(self, epoch: int, rounds: int) -> None:
        for s in self.sinks:
            s.start_epoch(epoch, rounds)

    def write(self, record: Mapping[str, Any]) -> None:
        for s in self.sinks:
            s.write(record)

    def close(self) -> None:
        for s in self.sinks:
            s.close()


def read_jsonl(path: Path) -> list[dict]:
    """The records of a JSONL log; a torn last line (the process was killed mid-write) is skipped."""
    return follow_jsonl(path, 0)[0]


def follow_jsonl(path: Path, offset: int) -> tuple[list[dict], int]:
    """Complete records written since byte `offset`, and the new offset (a half-written last line waits)."""
    if not Path(path).exists():
        return [], offset
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    end = data.rfind(b"\n") + 1
    records = []
    for line in data[:end].splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records, offset + end
