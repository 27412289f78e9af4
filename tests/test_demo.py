"""The demo's live status: it follows the learner's logs; only this run's test episodes count as solved."""

from __future__ import annotations

import json

from tmrlx.cli import main
from tmrlx.demo import Progress, actor_role


def _append(path, *records):
    with open(path, "a") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def _test(finished, samples, ret=120.0):
    return {"return": ret, "finished": finished, "progress": 1.0 if finished else 0.5, "samples": samples, "mode": "test"}


def test_progress_counts_only_this_runs_test_episodes_and_waits_for_whole_lines(tmp_path):
    eps = tmp_path / "episodes.jsonl"
    _append(eps, *[_test(True, 100)] * 5)  # a solved earlier run
    progress = Progress(tmp_path)
    progress.poll()
    assert progress.finishes() == 0 and progress.episodes == [] and progress.tests == []
    _append(eps, {"return": 2.0, "finished": False, "progress": 0.25, "samples": 150, "mode": "actor"},
            *[{"return": 120.0, "finished": True, "progress": 1.0, "samples": 400, "mode": "actor"}] * 3,
            _test(True, 380, ret=130.0))
    with open(eps, "a") as f:
        f.write('{"return": 9')  # a line the learner is still writing
    _append(tmp_path / "metrics.jsonl", {"t": 0.0, "samples": 100, "updates": 50, "updates_per_s": 10.0},
            {"t": 2.0, "samples": 300, "updates": 250, "updates_per_s": 100.0, "updates_per_sample": 1.0})
    progress.poll()
    assert progress.finishes() == 1 and len(progress.episodes) == 4 and len(progress.tests) == 1  # training finishes don't count
    line = progress.line(90.0)
    assert "env steps     400 (  100/s)" in line and "updates    250 (100.0/s, 1.00/step)" in line
    assert "episodes    4 test   1" in line and "return(10)   90.5 test(5)  130.0" in line
    assert "track 100.0% test 100.0%" in line and "test finished 1/5" in line
    _append(eps, *[_test(f, 500) for f in (False, True, False, False, True, True)])
    progress.poll()
    assert progress.finishes() == 3  # of the last 5 test episodes


def test_the_demo_runs_its_actors_with_test_episodes_and_refuses_a_solved_criterion_without_them(tmp_path, monkeypatch,
                                                                                                 caplog):
    assert actor_role(3) == ["actor", "--test-episode-interval", "3"]
    monkeypatch.setenv("TMRLX_DATA", str(tmp_path))
    assert main(["demo", "--test-episode-interval", "0"]) == 2
    assert "--until-solved counts test episodes" in caplog.text
    assert not (tmp_path / "logs").exists()  # refused before anything started
