"""`tmrlx keys`: write a CurveZMQ server and client key pair into a credentials folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from tmrlx.common import paths
from tmrlx.common.config import Config
from tmrlx.common.wire.security import CLIENT_CERT, SERVER_CERT, generate


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--out", type=Path, default=None,
                        help="folder to write the keys to (default: TLS_CREDENTIALS_DIRECTORY, else <data>/keys)")


def run(cfg: Config, args: argparse.Namespace) -> int:
    folder = args.out or Path(cfg.TLS_CREDENTIALS_DIRECTORY or paths.data_dir() / "keys").expanduser()
    for p in generate(folder):
        print(f"wrote {p}")
    print(f"broker machine: keep {SERVER_CERT}.key_secret and every client's .key; other machines: {SERVER_CERT}.key and "
          f"{CLIENT_CERT}.key_secret. Set TLS true and TLS_CREDENTIALS_DIRECTORY to {str(folder)!r} everywhere.")
    return 0
