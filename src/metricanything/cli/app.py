"""``metricanything app``: a local web page to drop an image and look at its metric depth and point cloud."""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path


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


def run(args: argparse.Namespace) -> int:
    from metricanything.app import missing_app_packages

    missing = missing_app_packages()
    if missing:
        print(
            f"metricanything app: error: the web app needs {', '.join(missing)}; install the extra with\n"
            '    pip install "metricanything[app]"',
            file=sys.stderr,
        )
        return 2
    if args.port < 0 or args.port > 65535:
        print(f"metricanything app: error: --port must be 0-65535, got {args.port}", file=sys.stderr)
        return 2
    if args.max_upload_mb <= 0 or args.max_megapixels <= 0 or args.keep < 1:
        print("metricanything app: error: --max-upload-mb and --max-megapixels must be > 0 and --keep >= 1",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.model and not Path(args.model).expanduser().exists():
        print(f"metricanything app: error: --model {args.model}: no such file or folder", file=sys.stderr)
        return 2

    from metricanything.app.engine import Limits
    from metricanything.app.server import AppSettings, bind_socket, create_app, is_loopback, serve, url_for

    local = is_loopback(args.host)
    settings = AppSettings(
        device=args.device,
        precision=args.precision,
        model=args.model,
        allow_model_paths=local or args.allow_model_paths,
        limits=Limits(max_image_bytes=int(args.max_upload_mb * 2**20), max_pixels=int(args.max_megapixels * 1e6)),
        store_size=args.keep,
    )
    try:
        sock = bind_socket(args.host, args.port)
    except OSError as exc:
        print(f"metricanything app: error: cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); "
              "try another --port (0 = any free port)", file=sys.stderr)  # fmt: skip
        return 2
    url = url_for(sock)
    if not local:
        print(f"metricanything app: listening on {args.host}: anyone who can reach this computer can use the app"
              + ("" if args.allow_model_paths else " (model paths typed in the page are refused)"))  # fmt: skip
    print(f"metricanything app: serving on {url}  (Ctrl+C to stop)", flush=True)
    if args.open:
        import webbrowser

        webbrowser.open(url.replace("0.0.0.0", "127.0.0.1"))
    app = create_app(settings)
    threading.Thread(target=app.state.engine.warm_up, name="warm-up", daemon=True).start()
    serve(app, sock, log_level=args.log_level)
    return 0
