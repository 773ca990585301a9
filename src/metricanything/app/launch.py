"""``metricanything app``: check the options, bind the socket, start the server (what the command runs)."""

from __future__ import annotations

import threading
import webbrowser
from dataclasses import dataclass
from pathlib import Path

from metricanything.app import missing_app_packages
from metricanything.app.engine import Limits
from metricanything.errors import InvalidInputError, MissingExtraError


@dataclass
class AppOptions:
    """What ``metricanything app`` takes (see ``metricanything app --help``)."""

    host: str = "127.0.0.1"
    port: int = 7860  # 0 = any free port
    model: str | None = None  # preselected in the page
    allow_model_paths: bool = False  # load model paths typed in the page even when not bound to localhost
    device: str = "cpu"
    precision: str = "fp32"
    max_upload_mb: float = 30.0
    max_megapixels: float = 12.0
    keep: int = 8  # results kept for download
    open: bool = False  # open the page in the default web browser
    log_level: str = "warning"


def run(options: AppOptions) -> None:
    """Serve the app until interrupted; every bad option or a missing extra raises before anything starts."""
    o = options
    missing = missing_app_packages()
    if missing:
        raise MissingExtraError(f"the web app needs {', '.join(missing)}; install the extra with\n"
                                '    pip install "metricanything[app]"')  # fmt: skip
    if not 0 <= o.port <= 65535:
        raise InvalidInputError(f"--port must be 0-65535, got {o.port}")
    if o.max_upload_mb <= 0 or o.max_megapixels <= 0 or o.keep < 1:
        raise InvalidInputError("--max-upload-mb and --max-megapixels must be > 0 and --keep >= 1")
    if o.model and not Path(o.model).expanduser().exists():
        raise InvalidInputError(f"--model {o.model}: no such file or folder")

    # the server module imports FastAPI (the optional extra): imported once the extra is known to be there
    from metricanything.app.server import AppSettings, bind_socket, create_app, is_loopback, serve, url_for  # noqa: PLC0415

    local = is_loopback(o.host)
    settings = AppSettings(
        device=o.device, precision=o.precision, model=o.model, allow_model_paths=local or o.allow_model_paths,
        limits=Limits(max_image_bytes=int(o.max_upload_mb * 2**20), max_pixels=int(o.max_megapixels * 1e6)),
        store_size=o.keep,
    )  # fmt: skip
    try:
        sock = bind_socket(o.host, o.port)
    except OSError as exc:
        raise InvalidInputError(f"cannot listen on {o.host}:{o.port} ({exc.strerror or exc}); try another --port "
                                "(0 = any free port)") from exc  # fmt: skip
    url = url_for(sock)
    if not local:
        print(f"metricanything app: listening on {o.host}: anyone who can reach this computer can use the app"
              + ("" if o.allow_model_paths else " (model paths typed in the page are refused)"))  # fmt: skip
    print(f"metricanything app: serving on {url}  (Ctrl+C to stop)", flush=True)
    if o.open:
        webbrowser.open(url.replace("0.0.0.0", "127.0.0.1"))
    app = create_app(settings)
    threading.Thread(target=app.state.engine.warm_up, name="warm-up", daemon=True).start()
    serve(app, sock, log_level=o.log_level)


__all__ = ["AppOptions", "run"]
