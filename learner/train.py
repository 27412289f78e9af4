"""TMRL's training schedule around the fused update: epochs x rounds x steps, ratio control, publish, checkpoint.

Updates run in blocks of `SAC.updates_per_call` (sized to divide the round and the intervals
when possible); the ratio check, sample pulls, weight publication and the stop flag are looked at
between blocks. Metrics stay on the device until the end of a round.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tmrlx.common import paths, weights
from tmrlx.common.chunks import ChunkError
from tmrlx.common.config import Config
from tmrlx.common.errors import ConfigError
from tmrlx.common.metrics import JsonlSink, Metrics
from tmrlx.common.specs import ObsSpec
from tmrlx.common.weights import Arch
from tmrlx.learner.checkpoint import Checkpoints, fits
from tmrlx.learner.devices import Devices
from tmrlx.learner.ingest import Ingest, concat_rows
from tmrlx.learner.limiter import RateLimiter
from tmrlx.learner.publish import actor_weights
from tmrlx.learner.replay import init_replay, insert, size
from tmrlx.learner.source import Source
from tmrlx.learner.update import SAC

log = logging.getLogger("tmrlx.learner")


@dataclass
class Counters:
    epoch: int = 0
    round: int = 0
    round_updates: int = 0
    updates: int = 0
    samples: int = 0
    episodes: int = 0
    publications: int = 0
    saves: int = 0
    version: int = 0  # of the last weights published: counts publications over the run's life, never reset


@dataclass(frozen=True)
class Schedule:
    """TMRL's schedule keys, resolved once: the loop reads them between blocks, never the config."""

    max_epochs: int
    rounds_per_epoch: int
    steps_per_round: int
    buffer_interval: int  # pull samples every this many updates
    model_interval: int  # publish weights every this many updates
    max_ratio: float  # updates per sample, at most
    start_samples: int  # samples before the first update
    save_every: int  # publications between kept weight copies (0: none)
    run_name: str
    reset: bool  # RESET_TRAINING: resume only the replay memory

    @classmethod
    def from_config(cls, cfg: Config) -> Schedule:
        return cls(cfg.MAX_EPOCHS, cfg.ROUNDS_PER_EPOCH, cfg.TRAINING_STEPS_PER_ROUND, cfg.UPDATE_BUFFER_INTERVAL,
                   cfg.UPDATE_MODEL_INTERVAL, float(cfg.MAX_TRAINING_STEPS_PER_ENVIRONMENT_STEP),
                   max(cfg.ENVIRONMENT_STEPS_BEFORE_TRAINING, 2), cfg.SAVE_MODEL_EVERY, cfg.RUN_NAME, cfg.RESET_TRAINING)


def units_per_call(schedule: Schedule, arch: Arch, g: int, platform: str) -> int:
    """Largest block (in units of `g` updates) that divides the round and both intervals, capped by model and device."""
    if arch.type == "cnn":
        return 1
    step = math.gcd(schedule.steps_per_round, schedule.buffer_interval, schedule.model_interval)
    cap = 50 if platform == "gpu" else 10
    return next((u for u in range(cap, 0, -1) if step % (u * g) == 0), 1)


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def episode_figures(episodes: list[dict]) -> dict[str, float]:
    """A round's episode figures: training episodes (`return`, `episode_length`) apart from test episodes
    (`mode` "test": `return_test`, `length_test`, and on tracks `lap_test`, the mean length of the finished
    ones); means, NaN when the round had none."""
    train = [e for e in episodes if e.get("mode") != "test"]
    test = [e for e in episodes if e.get("mode") == "test"]
    rec = {"episodes": len(train), "return": _mean([e["return"] for e in train]),
           "episode_length": _mean([e["length"] for e in train]), "episodes_test": len(test),
           "return_test": _mean([e["return"] for e in test]), "length_test": _mean([e["length"] for e in test])}
    if any("finished" in e for e in episodes):
        rec["lap_test"] = _mean([e["length"] for e in test if e.get("finished")])
    return rec


class Trainer:
    """The learner: owns the state, the replay memory and the counters; `run()` trains until done or stopped."""

    def __init__(self, cfg: Config, spec: ObsSpec, source: Source, arch: Arch | None = None,
                 metrics: Metrics | None = None, checkpoints: Checkpoints | None = None, seed: int = 0,
                 episode_log: JsonlSink | None = None):
        self.cfg, self.spec, self.source = cfg, spec, source
        self.schedule = Schedule.from_config(cfg)
        self.arch = arch or Arch.for_spec(spec)
        self.metrics = metrics or Metrics([])
        self.checkpoints = checkpoints
        self.episode_log = episode_log  # every episode's statistics, as they arrive (the demo follows it)
        self.devices = Devices.from_config(cfg)
        g = cfg.ALG.REDQ_Q_UPDATES_PER_POLICY_UPDATE if cfg.ALG.ALGORITHM == "REDQSAC" else 1
        self.sac = SAC(cfg, spec, self.arch, units_per_call(self.schedule, self.arch, g, self.devices.platform), self.devices)
        s = self.schedule
        self.limiter = RateLimiter.ahead(s.max_ratio, s.start_samples, max(s.buffer_interval, self.sac.updates_per_call))
        self.seed = seed
        self.state = self._fresh_state()
        self.replay = init_replay(spec, cfg.MEMORY_SIZE, self.devices.home)
        self.ingest = Ingest(spec)
        self.counters = Counters()
        self.stopping = False
        self.model_restarted: str | None = None  # why `resume` kept only the replay memory (None: it resumed the model)
        self.run_ids: dict[str, str] = {}  # this run's ids elsewhere (wandb): checkpointed, so a resumed model continues them
        self._episodes: list[dict] = []
        self._infos: list = []
        self._last_pull = 0

    def _fresh_state(self):
        return self.devices.put(jax.jit(self.sac.init)(jax.random.PRNGKey(self.seed)))

    # ---- samples and weights ----
    def pull(self, timeout: float = 0.0) -> int:
        """Ingest whatever the source has (waiting up to `timeout` for the first chunk); bad chunks are reported and skipped."""
        rows = []
        for meta, arrays in self.source.poll_samples(timeout=timeout):
            try:
                rows.append(self.ingest.rows_of(meta, arrays))
            except ChunkError as e:
                log.warning("rejected %s", e)
        batch = concat_rows(rows)
        n = len(batch.get("reward", ()))
        if n:
            self.replay = insert(self.replay, batch)
            self.counters.samples += n
        self.source.demand(self.limiter.wanted(self.counters.updates, self.counters.samples))
        episodes = self.source.poll_episodes()
        if self.episode_log is not None:
            for ep in episodes:
                self.episode_log.write({**ep, "samples": self.counters.samples, "updates": self.counters.updates})
        self._episodes += episodes
        self._last_pull = self.counters.updates
        return n

    def publish(self) -> None:
        """Send the actor's weights (and keep a copy every SAVE_MODEL_EVERY); non-finite ones are never published.

        The broker and the actors tell weights apart by version, so a version must never repeat: it counts
        publications over the run's life (RESET_TRAINING or a changed ALG do not reset it) and is recorded
        beside the checkpoints before it leaves, so that a kill between two saves cannot repeat it either.
        """
        c = self.counters
        arrays = actor_weights(self.state.actor)
        if not all(np.isfinite(a).all() for a in arrays.values()):
            log.error("the updates up to %d produced non-finite actor weights: actors keep version %d, the last good one "
                      "(lower the learning rates, or check the rewards)", c.updates, c.version)
            return
        c.version += 1
        if self.checkpoints is not None:
            self.checkpoints.record_published(c.version, self.ingest.rows)
        self.source.publish_weights(c.version, arrays, weights.meta(self.spec, self.arch))
        c.publications += 1
        every = self.schedule.save_every
        if every and c.publications % every == 0:
            self.save_weights(arrays, f"{self.schedule.run_name}_{c.version}")

    def save_weights(self, arrays: dict, name: str) -> Path:
        """The actor's weights in the data folder's weights/, the file `tmrlx test` / `tmrlx expert` read."""
        out = paths.weights_dir() / f"{name}.npz"
        out.parent.mkdir(parents=True, exist_ok=True)
        weights.save(out, self.counters.version, arrays, weights.meta(self.spec, self.arch))
        return out

    # ---- the schedule ----
    def ready(self) -> bool:
        """TMRL's ratio control: enough samples to start, and not too many updates per sample."""
        return self.limiter.can_update(self.counters.updates, self.counters.samples, self.sac.updates_per_call)

    def run_round(self) -> bool:
        """Train one round (resuming a partial one); False when stopped before its end."""
        s, c = self.schedule, self.counters
        t0, idle = time.perf_counter(), 0.0
        start_updates, start_samples = c.round_updates, c.samples
        while c.round_updates < s.steps_per_round:
            if self.stopping:
                return False
            if c.updates - self._last_pull >= s.buffer_interval:
                self.pull()
            if not self.ready():
                t = time.perf_counter()
                self.pull(timeout=0.05)
                idle += time.perf_counter() - t
                continue
            before = c.updates
            self.state, info = self.sac.run(self.state, self.replay)
            self._infos.append(info)
            c.updates += self.sac.updates_per_call
            c.round_updates += self.sac.updates_per_call
            if c.updates // s.model_interval > before // s.model_interval:
                self.publish()
        self.pull()
        jax.block_until_ready(self.state)
        elapsed = time.perf_counter() - t0
        self.metrics.write(self._round_record(c.round_updates - start_updates, c.samples - start_samples, elapsed, idle))
        c.round += 1
        c.round_updates = 0
        return True

    def _round_record(self, updates: int, samples: int, elapsed: float, idle: float) -> dict:
        """The round's figures: rates over the whole round (`busy_updates_per_s`: while not waiting for samples)."""
        c = self.counters
        rec = {"epoch": c.epoch, "round": c.round, "updates": c.updates, "samples": c.samples,
               "memory": size(self.replay), "memory_fill": size(self.replay) / self.replay.capacity,
               "round_time": elapsed, "idle_time": idle, "updates_per_s": updates / max(elapsed, 1e-9),
               "busy_updates_per_s": updates / max(elapsed - idle, 1e-9), "samples_per_s": samples / max(elapsed, 1e-9),
               "updates_per_sample": updates / samples if samples else float("nan")}
        eps, self._episodes = self._episodes, []
        c.episodes += len(eps)
        rec.update(episode_figures(eps))
        if self._infos:
            infos = jax.device_get(self._infos)
            self._infos = []
            for k in infos[0]:
                rec[k] = float(np.mean([i[k] for i in infos]))
            rec["entropy"] = -rec.pop("logp")
        rec.update(self.ingest.accounts())
        return rec

    def run_epoch(self) -> bool:
        """The rest of the current epoch; False when stopped."""
        self.metrics.start_epoch(self.counters.epoch, self.schedule.rounds_per_epoch)
        while self.counters.round < self.schedule.rounds_per_epoch:
            if not self.run_round():
                return False
        self.counters.epoch += 1
        self.counters.round = 0
        return True

    def run(self) -> int:
        """Publish at once (a resumed learner's actors may hold older weights, or none), then train until MAX_EPOCHS
        or `stop()`; checkpoint after every epoch and on stop."""
        self.publish()
        while self.counters.epoch < self.schedule.max_epochs and not self.stopping:
            if self.run_epoch():
                self.save()
        if self.stopping:
            self.save()
        self.metrics.close()
        return 0

    def stop(self) -> None:
        """Ask the loop to stop between two blocks (signal-safe: only sets a flag)."""
        self.stopping = True

    # ---- checkpoints ----
    def _arrays(self):
        return {"state": self.state, "replay": self.replay}

    def _meta(self) -> dict:
        return {"counters": asdict(self.counters), "ingest": self.ingest.state(), "config": self.cfg.without_secrets(),
                "spec": self.spec.to_dict(), "arch": self.arch.to_dict(), "memory_size": self.replay.capacity,
                "run_ids": self.run_ids}

    def save(self) -> None:
        if self.checkpoints is None:
            return
        self.counters.saves += 1
        self.checkpoints.save(self.counters.saves, self._arrays(), self._meta())
        self.save_weights(actor_weights(self.state.actor), self.schedule.run_name)

    def resume(self) -> dict | None:
        """Load the newest good checkpoint (after removing unfinished saves) and return its counters. Only its replay
        memory is kept when RESET_TRAINING says so or its train state no longer fits the config (`model_restarted`)."""
        if self.checkpoints is None:
            return None
        self.checkpoints.remove_unfinished()
        published, ingested = self.checkpoints.last_published()
        self.counters.version = published
        if not self.checkpoints.steps():
            return None
        found = self.checkpoints.restore(self._restore_target)
        if found is None:
            log.warning("no readable checkpoint, starting from scratch")
            return None
        step, arrays, meta = found
        self.replay = self.devices.put(arrays["replay"])
        self.ingest.load_state(meta["ingest"])
        if ingested > self.ingest.rows:
            log.warning("the last run ingested %d rows after checkpoint %s and was stopped before saving again (killed?): "
                        "those whose acknowledgement reached their actor are lost, the others come again; lost_rows in "
                        "the metrics counts them exactly as the later chunks arrive", ingested - self.ingest.rows,
                        self.checkpoints.directory / str(step))
        saved = Counters(**meta["counters"])
        restored = asdict(saved)
        self.model_restarted = self._model_change(meta, self.checkpoints.layout(step))
        if self.model_restarted is None:
            self.state = self.devices.put(arrays["state"])
            self.counters = saved
            self.run_ids = dict(meta.get("run_ids", {}))
        else:
            self.counters = Counters(samples=saved.samples, saves=saved.saves, version=saved.version)
            if not self.schedule.reset:
                log.warning("checkpoint %s: %s: restarting the model, keeping the replay memory",
                            self.checkpoints.directory / str(step), self.model_restarted)
        self.counters.version = max(self.counters.version, published)
        self._last_pull = self.counters.updates
        return restored

    def _restore_target(self, meta: dict, layout: Any) -> dict:
        """What to restore of a checkpoint with this `meta` and saved `layout`: its train state as saved when it will
        not be resumed (then dropped), ours when it will; refused when it was made for another layout or memory."""
        where = self.checkpoints.directory if self.checkpoints is not None else self.schedule.run_name
        for key, mine in (("spec", self.spec.to_dict()), ("arch", self.arch.to_dict()), ("memory_size", self.replay.capacity)):
            if meta.get(key) != json.loads(json.dumps(mine)):
                raise ConfigError(f"the checkpoints in {where} were made with another {key} ({meta.get(key)!r}, now "
                                  f"{mine!r}): choose another RUN_NAME or delete that folder")
        state = self.state if self._model_change(meta, layout) is None else layout["state"]
        return {"state": state, "replay": self.replay}

    def _model_change(self, meta: dict, layout: Any) -> str | None:
        """Why a checkpoint's model is not resumed (None: it is): RESET_TRAINING, or a train state another ALG shaped."""
        if self.schedule.reset:
            return "RESET_TRAINING is true"
        if fits(layout["state"], self.state):
            return None
        saved, now = meta["config"].get("ALG", {}), json.loads(json.dumps(self.cfg.to_dict()["ALG"]))
        changed = ", ".join(f"ALG.{k} {saved.get(k)!r} -> {v!r}" for k, v in now.items() if saved.get(k) != v)
        return f"its train state does not fit this config ({changed or 'the train state layout changed'})"
