"""`tmrlx plot` turns the learner's JSONL log into a PNG and says clearly when a run has no log."""

import json

from tmrlx.cli import main


def test_plot_writes_png_of_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TMRLX_DATA", str(tmp_path))
    for run, sign in (("a", 1), ("b", -1)):
        log = tmp_path / "logs" / run / "metrics.jsonl"
        log.parent.mkdir(parents=True)
        lines = [json.dumps({"samples": 100 * i, "return": sign * i, "loss_critic": 1.0 / (i + 1),
                             "return_test": None if i % 2 else 2.0 * i}) for i in range(5)]  # test: not every round
        log.write_text("\n".join(lines) + "\n{\"torn")  # a torn last line (killed mid-write) is skipped
    out = tmp_path / "curves.png"
    assert main(["plot", "a", "b", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000
    assert main(["plot", "missing"]) == 1
    assert "no metrics for run 'missing'" in capsys.readouterr().err
