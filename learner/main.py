"""`tmrlx learner`: train on the samples the broker forwards (or, with --local-source, on an in-process gymnasium env).

SIGINT and SIGTERM stop training between two update blocks and write a checkpoint before exiting;
starting again with the same RUN_NAME resumes from the newest good checkpoint, and its metrics go on
in the same JSONL log, TensorBoard folder (logs/RUN_NAME/) and wandb run.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal

from tmrlx.common import paths
from tmrlx.common.config import Config
from tmrlx.common.errors import ConfigError
from tmrlx.common.kinds import GYM, kind_of, spec_from_config
from tmrlx.common.kinds.gym import gym_id
from tmrlx.common.metrics import JsonlSink, Metrics, Sink, TensorBoardSink, TerminalSink, WandbSink, has_wandb, new_run_id
from tmrlx.learner.checkpoint import Checkpoints
from tmrlx.learner.train import Trainer

log = logging.getLogger("tmrlx.learner")


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--wandb", action="store_true", help="also log metrics to wandb (WANDB_* config keys)")
    parser.add_argument("--local-source", action="store_true",
                        help="train on an in-process actor stepping ENV.RTGYM_INTERFACE='GYM:<id>' instead of the broker")
    parser.add_argument("--seed", type=int, default=0, help="seed of the network initialisation and sampling")
    parser.add_argument("--quiet", action="store_true", help="no progress bar (metrics still go to the JSONL log)")


def _source(cfg: Config, spec, args: argparse.Namespace):
    if getattr(args, "local_source", False):
        interface = cfg.ENV.RTGYM_INTERFACE
        if kind_of(interface) is not GYM:
            raise ConfigError(f"--local-source needs ENV.RTGYM_INTERFACE={GYM.accepts}, got {interface!r}")
        from tmrlx.learner.source import GymSource

        return GymSource(gym_id(interface), spec, seed=getattr(args, "seed", 0), steps_per_poll=cfg.UPDATE_BUFFER_INTERVAL)
    from tmrlx.learner.link import LearnerClient

    return LearnerClient(cfg, spec, demand=0)  # paced actors wait for the trainer's first `demand`


def open_sinks(cfg: Config, args: argparse.Namespace, trainer: Trainer) -> list[Sink]:
    """The metric sinks, opened once `trainer` resumed: TensorBoard goes on from its step (hiding rounds a killed process
    logged after the checkpoint) and wandb continues the checkpointed run id; a fresh or reset model gets a fresh id."""
    folder = paths.logs_dir() / cfg.RUN_NAME
    sinks: list[Sink] = [JsonlSink(folder / "metrics.jsonl")]
    try:
        if cfg.TENSORBOARD:
            sinks.append(TensorBoardSink(folder, purge_step=trainer.counters.updates + 1))
        if not getattr(args, "quiet", False):
            sinks.append(TerminalSink())
        if getattr(args, "wandb", False):
            run_id = trainer.run_ids.setdefault("wandb", new_run_id())
            sinks.append(WandbSink(cfg.WANDB_PROJECT, cfg.WANDB_ENTITY, cfg.WANDB_KEY, cfg.RUN_NAME, run_id,
                                   cfg.without_secrets()))
    except BaseException:
        Metrics(sinks).close()
        raise
    return sinks


def run(cfg: Config, args: argparse.Namespace) -> int:
    if getattr(args, "wandb", False) and not has_wandb():
        log.error("--wandb needs the wandb package: pip install 'tmrlx[wandb]'")
        return 2
    # A stop asked for while starting (compiling, restoring) is kept, not raised: a KeyboardInterrupt that lands in a
    # garbage-collection callback is swallowed, and the learner would then train on until killed.
    signalled: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _: signalled.append(signum))
    spec = spec_from_config(cfg)
    source = _source(cfg, spec, args)
    checkpoints = Checkpoints(paths.checkpoints_dir() / cfg.RUN_NAME)
    metrics = Metrics([])
    trainer = Trainer(cfg, spec, source, metrics=metrics, checkpoints=checkpoints, seed=getattr(args, "seed", 0),
                      episode_log=JsonlSink(paths.logs_dir() / cfg.RUN_NAME / "episodes.jsonl"))
    try:
        resumed = trainer.resume()
        if resumed is not None:
            what = "resuming" if trainer.model_restarted is None else "restarting the model, keeping the replay memory"
            log.info("%s from checkpoint %s", what, json.dumps({"counters": resumed, "memory": trainer.counters.samples}))
        try:
            metrics.sinks += open_sinks(cfg, args, trainer)
        except RuntimeError as e:
            log.error("%s", e)
            return 2
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: trainer.stop())
        if signalled:
            trainer.stop()
        code = trainer.run()
    finally:
        close = getattr(source, "close", None)
        if close:
            close()
        checkpoints.close()
    log.info("stopped, checkpoint saved" if trainer.stopping else "done")
    return code
