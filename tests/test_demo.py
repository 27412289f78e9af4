"""The demo's live status: it follows the learner's logs, and only this run's episodes count as solved."""

from __future__ import annotations

import json

from tmrlx.demo import Progress


def _append(path, *records):
    with open(path, "a") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def test_progress_counts_only_this_runs_episodes_and_waits_for_whole_lines(tmp_path):
    eps = tmp_path / "episodes.jsonl"
    _append(eps, *[{"return": 130.0, "finished": True, "progress": 1.0, "samples": 100}] * 5)  # a solved earlier run
    progress = Progress(tmp_path)
    progress.poll()
    assert progress.finishes() == 0 and progress.episodes == []
    _append(eps, {"return": 2.0, "finished": False, "progress": 0.25, "samples": 150},
            {"return": 120.0, "finished": True, "progress": 1.0, "samples": 400})
    with open(eps, "a") as f:
        f.write('{"return": 9')  # a line the learner is still writing
    _append(tmp_path / "metrics.jsonl", {"t": 0.0, "samples": 100, "updates": 50, "updates_per_s": 10.0},
            {"t": 2.0, "samples": 300, "updates": 250, "updates_per_s": 100.0, "updates_per_sample": 1.0})
    progress.poll()
    assert progress.finishes() == 1 and len(progress.episodes) == 2
    line = progress.line(90.0)
    assert "env steps     400 (  100/s)" in line and "updates    250 (100.0/s, 1.00/step)" in line
    assert "track 100.0%" in line and "return(10)   61.0" in line and "finished 1/5" in line
