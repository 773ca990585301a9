"""``metricanything export``: a teacher or student checkpoint to ONNX (dynamic batch, height and width)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="checkpoint folder, .safetensors/.pt file, or hub id")
    parser.add_argument("--onnx", required=True, type=Path, help="output .onnx file (written atomically)")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18; must be >= 18)")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="run onnxruntime (CPU) at a size other than the tracing size and compare with PyTorch",
    )
    parser.add_argument("--tolerance", type=float, default=1e-4, help="max relative error accepted by --verify")
    parser.add_argument(
        "--external-data",
        choices=["auto", "yes", "no"],
        default="auto",
        help="weights in a separate <name>.data file (auto: only above 1 GiB)",
    )
    parser.add_argument(
        "--no-optimize", action="store_true", help="skip the ONNX graph optimiser (faster export, larger graph)"
    )


def options(args: argparse.Namespace) -> Any:
    from metricanything.tasks.export import DEFAULT_OPSET, ExportOptions

    return ExportOptions(model=args.model, onnx=args.onnx, opset=DEFAULT_OPSET if args.opset is None else args.opset,
                         verify=args.verify, tolerance=args.tolerance, optimize=not args.no_optimize,
                         external_data={"auto": None, "yes": True, "no": False}[args.external_data])  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from metricanything.tasks.export import run

    run(options(args))
    return 0
