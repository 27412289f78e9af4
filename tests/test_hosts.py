"""Across hosts: a broker, a learner and two actors, each in a network namespace of its own (`tmrlx.netns`).

The roles run as they would on four machines: `LOCALHOST_*` false, `PUBLIC_IP_SERVER` the broker host's address,
addresses that exist only inside the namespaces. A capture on the broker host's interface must hold no password,
no sample bytes and no weight bytes in clear with `TLS` true; the same run with `TLS` false is the control that
shows the check finds them when they are there. With 200 ms delay and 1 % loss on the actors' links and one actor
host cut off for 10 s, training goes on and the cut-off actor comes back; the reconnect times are printed (`-s`).
"""

from __future__ import annotations

import bisect
import contextlib
import re
import secrets
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from tmrlx.common import paths, weights
from tmrlx.common.config import load_config
from tmrlx.common.metrics import read_jsonl

from tmrlx.demo import Child, role_argv, spawn, stop_in_order
from tmrlx.netns import Capture, Network, privileged
from tmrlx.testing import tapped, wait_for

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "tmrlx" / "resources" / "config_demo.json"
HOSTS = ("broker", "learner", "actor0", "actor1")
ACTORS = HOSTS[2:]
PASSWORD = "hosts-" + secrets.token_urlsafe(24)
WINDOW = 64  # bytes of a sample or weights array that must not appear in a capture
CHUNK_BYTES = 500  # a TCP segment from an actor this large carries samples (heartbeats and credit are ~100 bytes)
TAP = "import sys; from tmrlx.testing import tapped_actor; sys.exit(tapped_actor(sys.argv[1], sys.argv[2:]))"

pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(reason := privileged()), reason=str(reason))]


@pytest.fixture
def run_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TMRLX_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    out = paths.logs_dir() / "hosts"
    out.mkdir(parents=True)
    return out


def _config(net: Network, run_dir: Path, tls: bool) -> Path:
    """A short training run on the simulator, every role told the others are on other machines."""
    cfg = load_config(DEMO).replace({
        "RUN_NAME": "hosts", "LOCALHOST_WORKER": False, "LOCALHOST_TRAINER": False,
        "PUBLIC_IP_SERVER": net.addr("broker"), "TLS": tls, "PASSWORD": PASSWORD,
        "MEMORY_SIZE": 20000, "ENVIRONMENT_STEPS_BEFORE_TRAINING": 200, "ROUNDS_PER_EPOCH": 1000,
        "TRAINING_STEPS_PER_ROUND": 20, "UPDATE_MODEL_INTERVAL": 40, "UPDATE_BUFFER_INTERVAL": 10, "BATCH_SIZE": 64,
        "MAX_TRAINING_STEPS_PER_ENVIRONMENT_STEP": 1.0, "SAVE_MODEL_EVERY": 1, "RW_MAX_SAMPLES_PER_EPISODE": 100})
    path = run_dir / "config.json"
    path.write_text(cfg.to_json())
    return path


@contextlib.contextmanager
def roles(net: Network, cfg_file: Path, run_dir: Path, tap: bool = False) -> Iterator[list[Child]]:
    """Broker, learner and actors on their hosts (actors recording their samples to `run_dir/<actor>.tap` if `tap`)."""
    children = [spawn("broker", net.command("broker", role_argv(["broker"], cfg_file)), run_dir)]
    try:
        assert wait_for(lambda: "listening on" in _log(run_dir, "broker"), 30, 0.1), _log(run_dir, "broker")
        children.append(spawn("learner", net.command("learner", role_argv(["learner"], cfg_file)), run_dir))
        for a in ACTORS:
            argv = role_argv(["actor"], cfg_file)
            if tap:
                argv = [sys.executable, "-c", TAP, str(run_dir / f"{a}.tap"), "actor", "--config-file", str(cfg_file)]
            children.append(spawn(a, net.command(a, argv), run_dir))
        yield children
    finally:
        stop_in_order(children, timeout=30)


def _log(run_dir: Path, name: str) -> str:
    path = run_dir / f"{name}.log"
    return path.read_text(errors="replace") if path.exists() else ""


def _updates(run_dir: Path) -> int:
    return max((r["updates"] for r in read_jsonl(run_dir / "metrics.jsonl")), default=0)


def _version(run_dir: Path, actor: str) -> int:
    """The newest policy version this actor reported acting with (its episode lines)."""
    return max((int(v) for v in re.findall(r"policy v(\d+)", _log(run_dir, actor))), default=-1)


def _sessions(net: Network, run_dir: Path, host: str) -> list[str]:
    """The session of each connection the broker accepted from an actor on `host`, in order."""
    return re.findall(rf"actor (\w+) connected from {re.escape(net.addr(host))}(?!\d)", _log(run_dir, "broker"))


def _trained(run_dir: Path) -> bool:
    """The learner updated and every actor acts with weights published after updates (version 1 is the initial one)."""
    return _updates(run_dir) > 0 and all(_version(run_dir, a) >= 2 for a in ACTORS)


def _samples_from(cap: Capture, addr: str, since: float) -> list[float]:
    """Times of the sample-sized TCP segments `addr` sent to the broker host after `since`."""
    frames = cap.poll()
    out = []
    for f in frames[bisect.bisect_right(frames, since, key=lambda f: f.t):]:
        tcp = f.tcp()
        if tcp is not None and tcp[0] == addr and tcp[2] >= CHUNK_BYTES:
            out.append(f.t)
    return out


def _windows(blobs: Iterable[bytes], per_blob: int) -> list[bytes]:
    """Distinctive WINDOW-byte slices spread over each blob (a run of few byte values, e.g. zeros, could be anything)."""
    out = []
    for blob in blobs:
        if len(blob) < WINDOW:
            continue
        for k in range(per_blob):
            start = (len(blob) - WINDOW) * (2 * k + 1) // (2 * per_blob)
            w = blob[start:start + WINDOW]
            if len(set(w)) >= 16:
                out.append(w)
    return out


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "clear-control"])
def test_a_capture_on_the_broker_host_holds_no_secret_in_clear(tmp_path, run_dir, tls):
    with Network(HOSTS) as net:
        cap = net.capture("broker", tmp_path / "broker.cap")
        with roles(net, _config(net, run_dir, tls), run_dir, tap=True) as children:
            ok = wait_for(lambda: _trained(run_dir) or any(c.proc.poll() is not None for c in children), 120, 0.5)
            assert ok and _trained(run_dir), "\n".join(c.name + ":\n" + c.tail() for c in children)
        cap.stop()
    wire = cap.payload()
    published = [weights.load(p)[1] for p in paths.weights_dir().glob("hosts_*.npz")]
    weight_windows = _windows((max(w.values(), key=lambda a: a.size).tobytes() for w in published), 8)
    sample_windows = _windows((col for a in ACTORS for col in tapped(run_dir / f"{a}.tap")), 1)
    seen_weights = sum(w in wire for w in weight_windows)
    seen_samples = sum(w in wire for w in sample_windows)
    print(f"\nTLS {tls}: {len(cap.frames)} frames, {len(wire) / 2**20:.1f} MiB on the broker host's eth0; "
          f"weights windows in clear {seen_weights}/{len(weight_windows)} ({len(published)} versions), "
          f"sample windows in clear {seen_samples}/{len(sample_windows)}")
    assert len(wire) > 2**20 and len(weight_windows) >= 8 and len(sample_windows) >= 20  # there was something to see
    assert PASSWORD.encode() not in wire  # never, even in clear: only HMAC proofs travel
    if tls:
        assert seen_weights == 0 and seen_samples == 0
    else:  # the control: the same check finds what travels in clear
        assert seen_weights > len(weight_windows) // 2 and seen_samples > len(sample_windows) // 2


def test_training_goes_on_through_delay_loss_and_a_partition(tmp_path, run_dir):
    with Network(HOSTS) as net:
        for a in ACTORS:
            net.impair(a, delay_s=0.2, loss=0.01)
        cap = net.capture("broker", tmp_path / "broker.cap")
        cut, other = net.addr("actor1"), net.addr("actor0")
        with roles(net, _config(net, run_dir, tls=True), run_dir) as children:
            dead = lambda: any(c.proc.poll() is not None for c in children)  # noqa: E731
            start = time.monotonic()
            ok = wait_for(lambda: dead() or (_trained(run_dir) and _samples_from(cap, cut, start)), 120, 0.5)
            assert ok and not dead(), "\n".join(c.name + ":\n" + c.tail() for c in children)
            connects = len(_sessions(net, run_dir, "actor1"))
            silent = f"actor {_sessions(net, run_dir, 'actor1')[-1]} went silent"
            silences = _log(run_dir, "broker").count(silent)

            t_cut, updates_at_cut = time.monotonic(), _updates(run_dir)
            net.impair("actor1", delay_s=0.2, loss=1.0)
            assert wait_for(lambda: _log(run_dir, "broker").count(silent) > silences, 10, 0.1), _log(run_dir, "broker")
            time.sleep(max(0.0, t_cut + 10 - time.monotonic()))  # the partition lasts 10 s: a stimulus, not a wait
            t_heal = time.monotonic()
            net.impair("actor1", delay_s=0.2, loss=0.01)
            during = _updates(run_dir) - updates_at_cut
            delivered = [t for t in _samples_from(cap, other, t_cut) if t < t_heal]

            assert wait_for(lambda: len(_sessions(net, run_dir, "actor1")) > connects, 30, 0.05), _log(run_dir, "broker")
            t_connected = time.monotonic()
            assert wait_for(lambda: _samples_from(cap, cut, t_connected), 30, 0.1)
            t_sending = _samples_from(cap, cut, t_connected)[0]  # not the old connection's retransmissions
            assert wait_for(lambda: _updates(run_dir) > updates_at_cut + during, 60, 0.5)
        cap.stop()
    print(f"\npartition of actor1 for {t_heal - t_cut:.1f} s (links 200 ms each way, 1 % loss): connected again "
          f"{t_connected - t_heal:.2f} s after the link came back, first samples at the broker host after "
          f"{t_sending - t_heal:.2f} s; meanwhile {during} updates and {len(delivered)} sample segments from actor0")
    assert during > 0 and delivered  # training went on, fed by the other actor
    assert t_connected - t_heal < 15  # the backoff reached at most 8 s during 10 s, plus a handshake over 400 ms RTT


@pytest.mark.parametrize("host", ["actor1", "learner"])
def test_weights_cross_a_thin_far_link(run_dir, host):
    """`host` on a 400 kbit/s link with 200 ms each way: one weights message takes ~8 s to cross it, longer than the
    silence a peer tolerates (MISSES heartbeats, 3 s). The transfer must count as its sender speaking: `host` keeps
    its one connection, and the actors act with weights published after training began."""
    with Network(HOSTS) as net:
        net.impair(host, delay_s=0.2, rate_bps=400_000)
        with roles(net, _config(net, run_dir, tls=True), run_dir) as children:
            dead = lambda: any(c.proc.poll() is not None for c in children)  # noqa: E731
            ok = wait_for(lambda: dead() or _version(run_dir, "actor1") >= 2, 180, 0.5)
            assert ok and not dead(), "\n".join(c.name + ":\n" + c.tail() for c in children)
        assert "no answer from the broker" not in _log(run_dir, host), _log(run_dir, host)
        role = "learner" if host == "learner" else "actor"
        connected = re.findall(rf"{role} \w+ connected from {re.escape(net.addr(host))}(?!\d)", _log(run_dir, "broker"))
        assert len(connected) == 1 and "went silent" not in _log(run_dir, "broker"), _log(run_dir, "broker")
