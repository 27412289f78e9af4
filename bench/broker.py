"""Broker throughput: samples/s actor -> broker -> learner, next to the same bytes through a C `zmq.proxy`.

Each case runs three processes either way (sender, middle, receiver): tmrlx's ActorClient -> Broker ->
LearnerClient, and PUSH -> zmq.proxy(PULL, PUSH) -> PULL sending the very frames tmrlx sends (with
CurveZMQ on both hops for the TLS case). Rates are medians over fixed windows after a warm-up.
Usage: python -m bench.broker [--seconds 3] [--window 0.5]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import time
from typing import Any

import zmq
from tmrlx.common.config import Config, load_config
from tmrlx.common.kinds import spec_from_config
from tmrlx.common.wire import security
from tmrlx.common.wire.protocol import MsgType, make

from tmrlx.testing import free_port, numbered_chunk

CASES = {  # name: (interface, TLS, rows per chunk)
    "lidar": ("SIMLIDAR", False, 2000),
    "image": ("SIMFULL", False, 100),
    "lidar_tls": ("SIMLIDAR", True, 2000),
}


def _cfg(interface: str, tls: bool, port: int) -> Config:
    return load_config(overrides={"ENV": {"RTGYM_INTERFACE": interface}, "TLS": tls, "PORT": port,
                                  "PASSWORD": "bench", "BUFFERS_MAXLEN": 200_000})


def _broker_proc(cfg_dict: dict, stop: Any) -> None:
    from tmrlx.broker.server import Broker

    broker = Broker(Config.from_dict(cfg_dict), host="127.0.0.1")
    try:
        broker.serve_forever(stop_event=stop)
    finally:
        broker.close()


def _actor_proc(cfg_dict: dict, rows: int, stop: Any) -> None:
    from tmrlx.actor.link import ActorClient

    cfg = Config.from_dict(cfg_dict)
    spec = spec_from_config(cfg)
    client = ActorClient(cfg, spec)
    chunk = numbered_chunk(spec, 0, rows)
    while not stop.is_set():
        if client.queued < 8:  # keep the pipe full without spinning on drops
            client.send_samples(chunk)
        else:
            time.sleep(0.0005)
    client.close()


def _frames(cfg: Config, rows: int) -> list[bytes]:
    spec = spec_from_config(cfg)
    header = {"session": "bench", "seq": 0, "step0": 0, "policy_version": 0}
    return [bytes(memoryview(f)) for f in make(MsgType.SAMPLES, header, numbered_chunk(spec, 0, rows))]


def _curve(sock: zmq.Socket, cfg: Config, server: bool) -> None:
    if cfg.TLS:
        keys = security.curve_keys(cfg, server=server)
        if server:  # no authenticator in the raw forwarder: encryption cost only
            sock.curve_server = True
            sock.curve_secretkey = keys.secret
        else:
            security.secure_client(sock, keys)


def _proxy_proc(cfg_dict: dict, front: int, back: int) -> None:
    cfg = Config.from_dict(cfg_dict)
    ctx = zmq.Context()
    pull, push = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
    for sock, port in ((pull, front), (push, back)):
        _curve(sock, cfg, server=True)
        sock.bind(f"tcp://127.0.0.1:{port}")
    zmq.proxy(pull, push)


def _pusher_proc(cfg_dict: dict, front: int, rows: int, stop: Any) -> None:
    cfg = Config.from_dict(cfg_dict)
    frames = _frames(cfg, rows)
    sock = zmq.Context().socket(zmq.PUSH)
    sock.linger = 0
    _curve(sock, cfg, server=False)
    sock.connect(f"tcp://127.0.0.1:{front}")
    while not stop.is_set():
        try:
            sock.send_multipart(frames, zmq.NOBLOCK, copy=False)
        except zmq.Again:
            sock.poll(50, zmq.POLLOUT)


def _measure(receive: Any, rows: int, seconds: float, window: float, warmup: float = 1.0) -> float:
    """Median rows/s over windows of `window` s; `receive(timeout)` returns the chunks it got."""
    deadline = time.monotonic() + 60
    while not receive(0.1):  # the senders are up
        if time.monotonic() > deadline:
            raise RuntimeError("nothing arrived within 60 s")
    end_warm = time.monotonic() + warmup
    while time.monotonic() < end_warm:
        receive(0.05)
    rates = []
    for _ in range(max(1, round(seconds / window))):
        start, n = time.monotonic(), 0
        while (now := time.monotonic()) - start < window:
            n += receive(min(0.05, window - (now - start)))
        rates.append(n * rows / (time.monotonic() - start))
    return statistics.median(rates)


def _drain(learner: Any, timeout: float) -> int:
    """Take what arrived, as the Trainer does between updates (non-blocking); nap briefly when nothing has.

    Blocking in `poll_samples(timeout)` instead would wake this thread once per chunk, a cost the Trainer
    never pays: it pulls with timeout 0 every UPDATE_BUFFER_INTERVAL updates.
    """
    n = len(learner.poll_samples())
    if not n:
        time.sleep(min(timeout, 0.0005))
    return n


def _run_tmrlx(ctx: Any, cfg: Config, rows: int, seconds: float, window: float) -> float:
    from tmrlx.learner.link import LearnerClient

    stop = ctx.Event()
    procs = [ctx.Process(target=_broker_proc, args=(cfg.to_dict(), stop)),
             ctx.Process(target=_actor_proc, args=(cfg.to_dict(), rows, stop))]
    for p in procs:
        p.start()
    learner = LearnerClient(cfg, spec_from_config(cfg))
    try:
        if not learner.wait_connected(30):
            raise RuntimeError(f"learner could not connect: {learner.error}")
        return _measure(lambda t: _drain(learner, t), rows, seconds, window)
    finally:
        stop.set()
        learner.close()
        for p in procs:
            p.join(10)


def _run_raw(ctx: Any, cfg: Config, rows: int, seconds: float, window: float) -> float:
    front, back = free_port(), free_port()
    stop = ctx.Event()
    proxy = ctx.Process(target=_proxy_proc, args=(cfg.to_dict(), front, back), daemon=True)
    pusher = ctx.Process(target=_pusher_proc, args=(cfg.to_dict(), front, rows, stop))
    proxy.start()
    pusher.start()
    pull = zmq.Context.instance().socket(zmq.PULL)
    pull.linger = 0
    _curve(pull, cfg, server=False)
    pull.connect(f"tcp://127.0.0.1:{back}")

    def receive(timeout: float) -> int:
        n = 0
        if pull.poll(timeout * 1000):
            while True:
                try:
                    pull.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    return n
                n += 1
        return n

    try:
        return _measure(receive, rows, seconds, window)
    finally:
        stop.set()
        pusher.join(10)
        proxy.terminate()
        proxy.join(10)
        pull.close()


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per case and path")
    parser.add_argument("--window", type=float, default=0.5, help="seconds per rate sample (the median is reported)")
    args = parser.parse_args(argv)
    ctx = mp.get_context("spawn")
    result: dict[str, float] = {}
    for name, (interface, tls, rows) in CASES.items():
        cfg = _cfg(interface, tls, free_port())
        security.derive_pair(cfg.PASSWORD, security.SERVER_CERT)
        mine = _run_tmrlx(ctx, cfg, rows, args.seconds, args.window)
        raw = _run_raw(ctx, cfg, rows, args.seconds, args.window)
        size = sum(len(f) for f in _frames(cfg, rows)) / rows
        result[f"{name}_per_s"], result[f"{name}_raw_per_s"] = round(mine), round(raw)
        print(f"{name:10s} {rows:5d} rows/chunk {size:7.1f} B/row | tmrlx {mine:12,.0f} smp/s {mine * size / 1e6:8.1f} MB/s"
              f" | zmq.proxy {raw:12,.0f} smp/s {raw * size / 1e6:8.1f} MB/s | {100 * mine / raw:5.1f} %", flush=True)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
