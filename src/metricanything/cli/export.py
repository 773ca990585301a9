"""``metricanything export``: a teacher or student checkpoint to ONNX (dynamic batch, height and width)."""

from __future__ import annotations

import argparse
from pathlib import Path


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


def run(args: argparse.Namespace) -> int:
    from metricanything.tasks.export import DEFAULT_OPSET, export_onnx

    if args.onnx.suffix.lower() != ".onnx":
        from metricanything.errors import InvalidInputError

        raise InvalidInputError(f"--onnx must name a .onnx file, got {args.onnx}")
    external = {"auto": None, "yes": True, "no": False}[args.external_data]
    result = export_onnx(
        args.model,
        args.onnx,
        opset=args.opset if args.opset is not None else DEFAULT_OPSET,
        external_data=external,
        verify=args.verify,
        tolerance=args.tolerance,
        optimize=not args.no_optimize,
    )
    print(f"exported the {result.kind} to {result.path} (opset {result.opset}, {result.seconds:.1f} s)")
    print(f"  inputs:  {', '.join(result.input_names)}")
    print(f"  outputs: {', '.join(result.output_names)}")
    if result.external_data:
        print(f"  weights: {', '.join(str(f) for f in result.files if f != result.path)}")
    if result.max_rel_error is not None:
        print(f"  verified with onnxruntime: max relative error {result.max_rel_error:.3g} (<= {args.tolerance:g})")
    return 0
