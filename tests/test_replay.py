"""The device replay rebuilds histories and action buffers exactly as rtgym builds observations."""

import jax
import numpy as np
import pytest
from tmrlx.common.chunks import ChunkError
from tmrlx.common.specs import Component, ObsSpec
from tmrlx.learner.ingest import Ingest
from tmrlx.learner.replay import init_replay, insert, sample, size

SPEC = ObsSpec((Component("x", (1,), history=3), Component("y", (2,))), act_dim=1, act_buf_len=2)


def _stream(session: str, n: int, ep_len: int, rng):
    """Rows of one actor stream; values encode (session, row) so the test can rebuild the truth."""
    base = 1000.0 * (ord(session[0]) - 96)
    idx = np.arange(n)
    first = idx % ep_len == 0
    return {"obs.x": (base + idx)[:, None].astype(np.float32), "obs.y": np.stack([base + idx, -idx], 1).astype(np.float32),
            "action": np.where(first, 0.0, base + idx + 0.5)[:, None].astype(np.float32),
            "reward": idx.astype(np.float32), "terminated": (idx % ep_len == ep_len - 1) & (rng.random(n) < 0.5),
            "truncated": np.zeros(n, bool), "first": first}


def _meta(session, step0):
    return {"session": session, "seq": step0, "step0": step0, "policy_version": 0}


def _expected(stream, k):
    """rtgym's observation at row k: histories and action buffer clamped at the episode's first row."""
    start = max(j for j in range(k + 1) if stream["first"][j])
    rows = lambda h: [max(k - i, start) for i in range(h - 1, -1, -1)]  # noqa: E731
    return stream["obs.x"][rows(3), 0], stream["action"][rows(2), 0]


@pytest.mark.parametrize("capacity", [10_000, 150])
def test_sampled_transitions_match_rtgym_observations(capacity):
    rng = np.random.default_rng(0)
    streams = {s: _stream(s, 240, 37, rng) for s in ("a", "b")}
    ingest, replay = Ingest(SPEC), init_replay(SPEC, capacity)
    for start in range(0, 240, 20):  # interleaved chunks of two sessions
        for s, st in streams.items():
            chunk = {k: v[start:start + 20] for k, v in st.items()}
            replay = insert(replay, ingest.rows_of(_meta(s, start), chunk))
    assert size(replay) == min(480, capacity)
    batch, w = jax.jit(lambda r, k: sample(r, SPEC, k, 512))(replay, jax.random.PRNGKey(1))
    batch = jax.device_get(batch)
    assert np.all(np.asarray(w) == 1.0)
    for i in range(512):
        x2 = batch["o2"]["x"][i, :, 0]
        s = "a" if x2[-1] < 2000 else "b"
        k = int(x2[-1] - 1000.0 * (ord(s) - 96))
        st = streams[s]
        assert not st["first"][k]
        hist2, acts2 = _expected(st, k)
        hist, acts = _expected(st, k - 1)
        np.testing.assert_array_equal(x2, hist2)
        np.testing.assert_array_equal(batch["o2"]["act_buf"][i, :, 0], acts2)
        np.testing.assert_array_equal(batch["o"]["x"][i, :, 0], hist)
        np.testing.assert_array_equal(batch["o"]["act_buf"][i, :, 0], acts)
        np.testing.assert_array_equal(batch["o"]["y"][i], st["obs.y"][k - 1])
        assert batch["a"][i, 0] == st["action"][k, 0] and batch["r"][i] == st["reward"][k]
        assert batch["terminated"][i] == st["terminated"][k]
        oldest = int(hist[0] - 1000.0 * (ord(s) - 96))  # only rows whose whole history is still in the ring are drawn
        assert (oldest // 20) * 40 + (s == "b") * 20 + oldest % 20 >= 480 - min(capacity, 480)


def test_duplicates_are_dropped_and_gaps_break_the_chain():
    rng = np.random.default_rng(0)
    st = _stream("a", 60, 100, rng)
    ingest = Ingest(SPEC)
    part = lambda a, b: {k: v[a:b] for k, v in st.items()}  # noqa: E731
    assert len(ingest.rows_of(_meta("a", 0), part(0, 20))["prev"]) == 20
    assert ingest.rows_of(_meta("a", 0), part(0, 20)) == {}  # duplicate
    rows = ingest.rows_of(_meta("a", 10), part(10, 30))  # overlap: only rows 20..29 are new
    assert len(rows["prev"]) == 10 and rows["prev"][0] == 19
    rows = ingest.rows_of(_meta("a", 40), part(40, 60))  # rows 30..39 were lost
    assert rows["first"][0] and rows["prev"][0] == 30


def test_every_row_of_a_stream_is_ingested_or_counted_in_a_gap_told_apart_by_the_actors_drops():
    rng = np.random.default_rng(1)
    st = _stream("a", 100, 100, rng)
    part = lambda a, b: {k: v[a:b] for k, v in st.items()}  # noqa: E731
    ingest = Ingest(SPEC)
    ingest.rows_of(_meta("a", 0), part(0, 20))
    ingest.rows_of(_meta("a", 10), part(10, 30))  # resent after a reconnect: 10 duplicate rows
    ingest.rows_of({**_meta("a", 40), "dropped": 10}, part(40, 50))  # rows 30..39: the actor's queue dropped them
    ingest.rows_of({**_meta("a", 70), "dropped": 10}, part(70, 80))  # rows 50..69: gone with a killed learner
    ingest.rows_of({**_meta("b", 30), "dropped": 5}, part(30, 40))  # a stream first seen at row 30: 5 dropped, 25 lost
    assert ingest.accounts() == {"ingested_rows": 50 + 10, "duplicate_rows": 10, "actor_dropped_rows": 15,
                                 "lost_rows": 20 + 25}
    assert sum(next_step0 for next_step0, _, _ in ingest.sessions.values()) == ingest.rows + ingest.counts["gap_rows"]


@pytest.mark.parametrize("field,value,message", [
    ("obs.x", np.zeros((5, 2), np.float32), r"float32\[5, 2\]"),
    ("reward", np.full(5, np.nan, np.float32), "NaN"),
    ("action", None, "missing"),
])
def test_bad_chunks_are_rejected_with_the_field_named(field, value, message):
    chunk = {k: v[:5] for k, v in _stream("a", 5, 5, np.random.default_rng(0)).items()}
    if value is None:
        del chunk[field]
    else:
        chunk[field] = value
    with pytest.raises(ChunkError, match=message) as e:
        Ingest(SPEC).rows_of(_meta("a", 0), chunk)
    assert field in str(e.value)
