"""Metric sinks shared by every role: a progress bar per epoch, a JSONL log that `tmrlx plot` reads, TensorBoard, wandb.

A record is a flat dict of numbers (plus `epoch`/`round` counters). Sinks never raise on a
non-finite value: they write it as null (JSONL) or leave a gap (TensorBoard) so one bad loss does not
stop training. The TensorBoard and wandb libraries are imported only when their sink is made: an actor
machine needs neither.
"""

from __future__ import annotations

import importlib.util
import json
import math
import secrets
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
    """A tqdm bar per epoch, its postfix showing the `keys` of the latest record. Where the output is not a terminal
    (a log file, a pipe), one line per epoch instead: a bar's redraws would fill the file."""

    def __init__(self, keys: Iterable[str] = ("return", "return_test", "loss_critic", "updates_per_s", "samples_per_s",
                                              "updates_per_sample"),
                 file=sys.stderr):
        self.keys, self.file, self.bar = tuple(keys), file, None
        self.plain = not getattr(file, "isatty", lambda: False)()
        self.epoch, self.rounds = 0, 0
        self.shown: dict[str, Any] = {}

    def start_epoch(self, epoch: int, rounds: int) -> None:
        self.close()
        self.epoch = epoch
        if not self.plain:
            from tqdm import tqdm

            self.bar = tqdm(total=rounds, desc=f"epoch {epoch}", file=self.file, leave=True, dynamic_ncols=True)

    def write(self, record: Mapping[str, Any]) -> None:
        shown = {k: _clean(record[k]) for k in self.keys if k in record}
        shown = {k: v for k, v in shown.items() if v is not None}  # NaN: nothing to show (no test episode this round)
        text = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in shown.items()}
        if self.plain:
            self.rounds += 1
            self.shown.update(text)  # a figure missing from the last round (return_test) keeps its latest value
        elif self.bar is not None:
            self.bar.set_postfix(text, refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.rounds:
            figures = ", ".join(f"{k}={v}" for k, v in self.shown.items())
            self.file.write(f"epoch {self.epoch}: {self.rounds} rounds, {figures}\n")
            self.file.flush()
            self.rounds, self.shown = 0, {}


class TensorBoardSink:
    """TensorBoard event files in `folder` (`tensorboard --logdir` on it or a parent): every number of a record is a
    scalar at step `record[step_key]`.

    `purge_step`: the step a resumed run goes on from; TensorBoard hides what an earlier process logged at that
    step or later (rounds trained after the last checkpoint, then lost to a kill), so the curves do not fold back.
    """

    def __init__(self, folder: Path, step_key: str = "updates", purge_step: int | None = None, flush_s: int = 5):
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise RuntimeError("TensorBoard logs need the tensorboardX package: pip install tensorboardX "
                               "(or set TENSORBOARD false)") from None
        Path(folder).mkdir(parents=True, exist_ok=True)
        # the file is named after the second it was opened in: a nanosecond suffix keeps two processes of one second
        # apart (the later would overwrite the earlier) and in the order TensorBoard reads them (by name)
        self.writer = SummaryWriter(logdir=str(folder), purge_step=purge_step, flush_secs=flush_s,
                                    filename_suffix=f".{time.time_ns()}")
        self.step_key, self._written = step_key, 0

    def start_epoch(self, epoch: int, rounds: int) -> None:
        pass

    def write(self, record: Mapping[str, Any]) -> None:
        step = _clean(record.get(self.step_key))
        step = step if isinstance(step, int) else self._written
        self._written += 1
        for key, value in record.items():
            value = _clean(value)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        self.writer.close()


def new_run_id() -> str:
    """A fresh wandb run id (wandb allows letters, digits, '-' and '_')."""
    return secrets.token_hex(8)


def has_wandb() -> bool:
    """Whether the wandb package is installed (checked before a learner spends time starting up)."""
    return importlib.util.find_spec("wandb") is not None


class WandbSink:
    """A wandb run with the config's WANDB_* keys. `run_id` names the run: the same id continues a run (resume="allow"),
    so the learner keeps it in its checkpoints. `config` must come without secrets (`Config.without_secrets()`); the
    API key goes to wandb's settings for this process, never into the run's files or ~/.netrc."""

    def __init__(self, project: str, entity: str, key: str, run_name: str, run_id: str, config: Mapping[str, Any]):
        if not has_wandb():
            raise RuntimeError("--wandb needs the wandb package: pip install 'tmrlx[wandb]'")
        import wandb

        settings = wandb.Settings(api_key=key) if key and key != "YourWandbApiKey" else None
        self.run = wandb.init(project=project, entity=entity, name=run_name, id=run_id, resume="allow",
                              config=dict(config), settings=settings)

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
