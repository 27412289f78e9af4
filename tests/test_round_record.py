"""The learner's round figures keep test episodes (deterministic, not trained on) apart from training episodes."""

import math

from tmrlx.common import episodes
from tmrlx.common.config import load_config
from tmrlx.common.kinds import spec_from_config
from tmrlx.common.weights import Arch
from tmrlx.learner.train import Trainer

CFG = load_config(overrides={"ENV": {"RTGYM_INTERFACE": "GYM:Pendulum-v1", "RTGYM_CONFIG": {"act_buf_len": 0}},
                             "CUDA_TRAINING": False, "MEMORY_SIZE": 64})


class Episodes:
    """A source that only delivers the episode statistics it is given (held to the contract, as the link does)."""

    def __init__(self):
        self.pending: list[dict] = []

    def poll_samples(self, max_chunks=None, timeout=0.0):
        return []

    def poll_episodes(self):
        out, self.pending = [episodes.check(e) for e in self.pending], []
        return out

    def demand(self, rows):
        pass

    def publish_weights(self, version, arrays, meta):
        pass


def _episode(mode, ret, length, finished=None):
    e = {"return": ret, "length": length, "mode": mode}
    return e if finished is None else {**e, "finished": finished, "progress": 1.0 if finished else 0.5}


def test_round_record_reports_test_episodes_apart_from_training():
    spec = spec_from_config(CFG)
    source = Episodes()
    trainer = Trainer(CFG, spec, source, arch=Arch.for_spec(spec, hidden=(8, 8)))
    source.pending = [_episode("actor", 10.0, 100, False), _episode("test", 50.0, 300, True),
                      _episode("expert", 30.0, 200, True), _episode("test", 20.0, 150, False),
                      _episode("test", 70.0, 280, True)]
    trainer.pull()
    rec = trainer._round_record(0, 0, 1.0, 0.0)
    assert rec["episodes"] == 2 and rec["return"] == 20.0 and rec["episode_length"] == 150.0  # actor + expert only
    assert rec["episodes_test"] == 3 and math.isclose(rec["return_test"], 140.0 / 3) and rec["length_test"] == 730 / 3
    assert rec["lap_test"] == 290.0  # the finished test laps only
    assert trainer.counters.episodes == 5

    source.pending = [_episode("actor", 5.0, 40, False)]  # a round without test episodes: NaN, not a stale figure
    trainer.pull()
    rec = trainer._round_record(0, 0, 1.0, 0.0)
    assert rec["return"] == 5.0 and rec["episodes_test"] == 0
    assert all(math.isnan(rec[k]) for k in ("return_test", "length_test", "lap_test"))

    source.pending = [_episode("test", -300.0, 200)]  # no finish line (Pendulum): no lap figure
    trainer.pull()
    rec = trainer._round_record(0, 0, 1.0, 0.0)
    assert rec["return_test"] == -300.0 and math.isnan(rec["return"]) and "lap_test" not in rec
