"""``metricanything app``: a local web page to drop an image and look at its metric depth and point cloud."""

from __future__ import annotations

import argparse
from typing import Any


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this computer only; 0.0.0.0 exposes the app "
                             "to your network)")  # fmt: skip
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860; 0 = any free port)")
    parser.add_argument("--model", help="checkpoint folder, run folder or official .pt to preselect in the page")
    parser.add_argument("--allow-model-paths", action="store_true",
                        help="let the page load model paths typed in it even when not bound to localhost")  # fmt: skip
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps ...")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    parser.add_argument("--max-upload-mb", type=float, default=30.0, help="largest image file accepted (default 30)")
    parser.add_argument("--max-megapixels", type=float, default=12.0, help="largest image accepted (default 12 MP)")
    parser.add_argument("--keep", type=int, default=8, help="results kept for download (default 8, oldest dropped)")
    parser.add_argument("--open", action="store_true", help="open the page in the default web browser")
    parser.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])


def options(args: argparse.Namespace) -> Any:
    from metricanything.app.launch import AppOptions

    return AppOptions(host=args.host, port=args.port, model=args.model, allow_model_paths=args.allow_model_paths,
                      device=args.device, precision=args.precision, max_upload_mb=args.max_upload_mb,
                      max_megapixels=args.max_megapixels, keep=args.keep, open=args.open, log_level=args.log_level)


def run(args: argparse.Namespace) -> int:
    from metricanything.app.launch import run

    run(options(args))
    return 0
