"""``metricanything smoke``: a seconds-long end-to-end check of the geometry and file layer (exit 1 on a failure)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=None, help="keep the files here (default: a temporary folder)")
    parser.add_argument("--width", type=int, default=128, help="image width in pixels (default 128)")
    parser.add_argument("--height", type=int, default=96, help="image height in pixels (default 96)")


def options(args: argparse.Namespace) -> Any:
    from metricanything.tasks.smoke import SmokeOptions

    return SmokeOptions(out=args.out, width=args.width, height=args.height)


def run(args: argparse.Namespace) -> int:
    from metricanything.tasks.smoke import run

    return run(options(args))
