"""The web app's HTTP layer (FastAPI): the page, its static files and a small JSON API.

Endpoints (all relative to the app's root URL):

* ``GET /`` the page; ``GET /static/...`` its script, style sheet and the vendored three.js.
* ``GET /api/config`` models, limits, examples and the server's defaults.
* ``GET /api/examples/{id}/image`` an example's picture.
* ``POST /api/infer`` (multipart) fields ``image`` (file) or ``example`` (id); optional ``intrinsics`` (JSON
  file), ``prompt`` (.csv / .png / .npy / LiDAR .bin file), ``lidar_calib`` (JSON file), ``fx`` (pixels),
  ``fov_x`` (degrees), ``model`` (auto | student | teacher | custom) and ``model_path``. Returns the result's
  JSON: ``id``, ``intrinsics`` and ``intrinsics_source``, ``depth`` range, ``colorbar``, ``cloud`` point
  counts, ``warnings``, ``urls``.
* ``GET /api/result/{id}`` the same JSON again; ``GET /api/result/{id}/{product}`` for ``depth.npy``,
  ``depth.png`` (16-bit, ``depth.png_scale_m`` metres per unit, 1 mm unless deeper than 65 m),
  ``cloud.ply``, ``cloud.glb``, ``depth_vis.png``, ``intrinsics.json``, ``image.png``, ``color.png``,
  ``depth.f32`` (H x W little-endian float32 metres, NaN where not valid) and ``cloud_preview.bin``
  (uint32 N, uint32 step, N x 3 float32 OpenCV-frame points, N x 3 uint8 colours).
* ``GET /api/result/{id}/depth_at?u=&v=`` the depth in metres at a pixel (``null`` where not valid).

Errors are JSON ``{"detail": message}`` with a 4xx status; the server keeps serving.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from metricanything import __version__
from metricanything.app import THREE_VERSION, static_dir
from metricanything.app.engine import (
    PRODUCTS,
    AppError,
    Engine,
    InferRequest,
    Limits,
    ModelCache,
    ResultStore,
    Upload,
    result_json,
)
from metricanything.app.examples import examples_dir


@dataclass
class AppSettings:
    """How the app runs: device and precision, the model path given on the command line, limits, store."""

    device: str = "cpu"
    precision: str = "fp32"
    model: str | None = None  # preselected "custom" model path
    allow_model_paths: bool = True  # load model paths typed in the page
    limits: Limits = field(default_factory=Limits)
    store_size: int = 8
    store_dir: Path | None = None


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _read(up: UploadFile | None, limit: int) -> Upload | None:
    """The upload's bytes, reading at most ``limit + 1`` (the engine reports the size problem)."""
    if up is None or (not up.filename and up.size == 0):
        return None
    data = await up.read(limit + 1)
    return Upload(up.filename or "upload", data)


def create_app(settings: AppSettings | None = None) -> FastAPI:
    """The FastAPI application; ``app.state.engine`` holds the models and results."""
    settings = settings or AppSettings()
    limits = settings.limits
    engine = Engine(
        ModelCache(settings.device, settings.precision, settings.allow_model_paths, settings.model),
        ResultStore(settings.store_size, settings.store_dir),
        limits,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        engine.store.close()

    # no Swagger/ReDoc pages: they load scripts from a CDN, and the app must work offline
    app = FastAPI(title="metricanything", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url="/api/openapi.json", lifespan=lifespan)
    app.state.engine = engine

    @app.exception_handler(AppError)
    async def _app_error(_request: Request, exc: AppError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(x) for x in e.get('loc', ())[1:]) or 'request'}: {e.get('msg', '')}" for e in exc.errors()]
        return JSONResponse({"detail": "; ".join(parts) or "invalid request"}, status_code=400)

    @app.middleware("http")
    async def _limit_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if request.method == "POST" and length and length.isdigit() and int(length) > limits.max_request_bytes:
            return JSONResponse(
                {"detail": f"the request is {int(length) / 2**20:.1f} MB; this server accepts up to "
                           f"{limits.max_request_bytes / 2**20:.1f} MB per request"},
                status_code=413,
            )  # fmt: skip
        return await call_next(request)

    static = static_dir()
    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(static / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})

    @app.get("/api/config")
    def config() -> dict:
        return {
            "version": __version__,
            "three_version": THREE_VERSION,
            "device": settings.device,
            "precision": settings.precision,
            "default_model": "custom" if settings.model else "auto",
            "default_model_path": settings.model,
            "allow_model_paths": settings.allow_model_paths,
            "limits": {
                "max_image_mb": limits.max_image_bytes / 2**20,
                "max_file_mb": limits.max_file_bytes / 2**20,
                "max_megapixels": limits.max_pixels / 1e6,
            },
            "store_size": settings.store_size,
            "examples": [
                {"id": e["id"], "title": e["title"], "prompt": e.get("prompt"),
                 "url": f"api/examples/{e['id']}/image"}
                for e in engine.examples.values()
            ],  # fmt: skip
        }

    @app.get("/api/examples/{example_id}/image")
    def example_image(example_id: str) -> FileResponse:
        ex = engine.examples.get(example_id)
        if ex is None:
            raise AppError(404, f"no example {example_id!r}")
        return FileResponse(examples_dir() / ex["image"])

    @app.post("/api/infer")
    async def infer(
        image: UploadFile | None = File(None),
        example: str | None = Form(None),
        intrinsics: UploadFile | None = File(None),
        prompt: UploadFile | None = File(None),
        lidar_calib: UploadFile | None = File(None),
        fx: str | None = Form(None),
        fov_x: str | None = Form(None),
        model: str = Form("auto"),
        model_path: str | None = Form(None),
    ) -> dict:
        from starlette.concurrency import run_in_threadpool

        req = InferRequest(
            image=await _read(image, limits.max_image_bytes),
            example=example or None,
            intrinsics=await _read(intrinsics, limits.max_file_bytes),
            prompt=await _read(prompt, limits.max_file_bytes),
            lidar_calib=await _read(lidar_calib, limits.max_file_bytes),
            fx=fx,
            fov_x=fov_x,
            model=model or "auto",
            model_path=model_path,
        )
        result = await run_in_threadpool(engine.run, req)
        return result_json(result)

    @app.get("/api/result/{rid}")
    def result(rid: str) -> dict:
        return result_json(engine.store.get(rid))

    @app.get("/api/result/{rid}/depth_at")
    def depth_at(rid: str, u: int, v: int) -> dict:
        return {"u": u, "v": v, "depth_m": engine.store.get(rid).depth_at(u, v)}

    @app.get("/api/result/{rid}/depth.f32")
    def depth_f32(rid: str) -> Response:
        return Response(engine.store.get(rid).depth_f32(), media_type="application/octet-stream")

    @app.get("/api/result/{rid}/{name}")
    def product(rid: str, name: str) -> FileResponse:
        r = engine.store.get(rid)
        path = r.product(name)
        stem = Path(r.meta["name"]).stem or "image"
        filename = f"{stem}_{name}" if name in r.meta["downloads"] else None
        return FileResponse(path, media_type=PRODUCTS[name], filename=filename)

    return app


# ---------------------------------------------------------------------------------------------- serving
def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0 = a free port chosen by the system)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_for(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve(app: FastAPI, sock: socket.socket, log_level: str = "warning") -> None:
    """Serve ``app`` on ``sock`` until interrupted (Ctrl+C)."""
    import uvicorn

    uvicorn.Server(uvicorn.Config(app, log_level=log_level, lifespan="on")).run(sockets=[sock])


class BackgroundServer:
    """The app served from a thread (for tests and notebooks): ``with BackgroundServer(app) as srv: srv.url``."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        self.sock = bind_socket(host, port)
        self.url = url_for(self.sock)
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the app did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
