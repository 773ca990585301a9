"""What the web app does besides HTTP: models (loaded once), one inference request, its products, the store.

A request is resolved exactly like ``metricanything infer`` resolves one image: the uploaded files are written
into the result's own folder (``input/image.<ext>``, its intrinsics as the sidecar ``input/image.json``) and go
through :func:`metricanything.tasks.infer.resolve_intrinsics` (page values -> sidecar -> EXIF), the prompt
readers the CLI uses (:func:`metricanything.prompts.prompt.read_prompt_file`,
:func:`metricanything.tasks.infer.read_lidar_prompt`), :func:`metricanything.api.infer` (model estimate or a
warned fallback) and the same edge-filtered point cloud as ``infer --ply``
(:func:`metricanything.pointcloud.depth_to_point_cloud`). Every problem with the input becomes an
:class:`AppError` with an HTTP status and a message naming the uploaded file.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import struct
import tempfile
import threading
import time
import uuid
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from metricanything.app.examples import examples_dir, list_examples
from metricanything.camera import Intrinsics, IntrinsicsSource
from metricanything.errors import MetricAnythingError

#: model choices of the page (besides "custom", a path on the server's disk)
MODEL_CHOICES = ("auto", "student", "teacher", "custom")
#: prompt file types the page accepts (LiDAR ``.bin`` needs a calibration JSON)
PROMPT_SUFFIXES = (".csv", ".png", ".npy", ".bin")
#: products of a result that can be downloaded or fetched by the page
PRODUCTS = {
    "depth.npy": "application/octet-stream",
    "depth.png": "image/png",
    "depth_vis.png": "image/png",
    "cloud.ply": "application/octet-stream",
    "cloud.glb": "model/gltf-binary",
    "intrinsics.json": "application/json",
    "image.png": "image/png",
    "color.png": "image/png",
    "cloud_preview.bin": "application/octet-stream",
}
DOWNLOADS = ("depth.npy", "depth.png", "cloud.ply", "cloud.glb", "depth_vis.png", "intrinsics.json")


class AppError(Exception):
    """A request the app refuses: ``status`` (HTTP 4xx) and a message for the page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = int(status)
        self.message = message


@dataclass(frozen=True)
class Limits:
    """Per-request limits (the page shows them; larger inputs get HTTP 413 with the limit named)."""

    max_image_bytes: int = 30 * 2**20
    max_file_bytes: int = 50 * 2**20  # prompt, LiDAR calibration or intrinsics file
    max_pixels: int = 12_000_000
    max_preview_points: int = 300_000  # the 3D view shows at most this many (the PLY/GLB keep all)

    @property
    def max_request_bytes(self) -> int:
        return self.max_image_bytes + 3 * self.max_file_bytes + 2**20


@dataclass
class Upload:
    """An uploaded file: the user's file name (only shown, never used as a path) and its bytes."""

    name: str
    data: bytes


@dataclass
class InferRequest:
    """One press of "Compute depth": an uploaded image or a bundled example, plus optional settings."""

    image: Upload | None = None
    example: str | None = None
    intrinsics: Upload | None = None
    prompt: Upload | None = None
    lidar_calib: Upload | None = None
    fx: str | float | None = None
    fov_x: str | float | None = None
    model: str = "auto"
    model_path: str | None = None


# ---------------------------------------------------------------------------------------------- models
def checkpoint_in(path: Path) -> Path:
    """The checkpoint a user means by ``path``: itself, or a run folder's ``model/`` or ``final/`` export."""
    if path.is_dir() and not (path / "config.json").is_file():
        for sub in ("model", "final"):
            if (path / sub / "config.json").is_file():
                return path / sub
    return path


class ModelCache:
    """Models by path, loaded once (at most ``capacity`` kept, least recently used dropped)."""

    def __init__(self, device: str = "cpu", precision: str = "fp32", allow_paths: bool = True,
                 default_path: str | None = None, capacity: int = 3) -> None:
        self.device, self.precision = device, precision
        self.allow_paths, self.default_path, self.capacity = allow_paths, default_path, capacity
        self._models: OrderedDict[str, object] = OrderedDict()
        self._lock = threading.Lock()

    def resolve(self, choice: str, path: str | None, has_prompt: bool) -> tuple[str, str]:
        """``(label, checkpoint path)`` for a page choice; raises :class:`AppError` for a bad one."""
        from metricanything.models.bundled import bundled_model_dir

        if choice not in MODEL_CHOICES:
            raise AppError(400, f"model must be one of {', '.join(MODEL_CHOICES)}, got {choice!r}")
        if choice == "custom":
            path = (path or "").strip() or self.default_path
            if not path:
                raise AppError(400, "model 'custom' needs a path: a checkpoint folder, a run folder or an official .pt")
            if not self.allow_paths and path != self.default_path:
                raise AppError(403, "this server does not load model paths typed in the page (it is not bound to "
                                    "localhost); start it with --model PATH or --allow-model-paths")
            p = checkpoint_in(Path(path).expanduser())
            if not p.exists():
                raise AppError(400, f"model path not found on the server: {path}")
            return str(p), str(p)
        kind = choice if choice != "auto" else ("teacher" if has_prompt else "student")
        try:
            return f"bundled {kind}", str(bundled_model_dir(kind))
        except MetricAnythingError as exc:
            raise AppError(500, str(exc)) from exc

    def get(self, path: str):
        """The loaded model at ``path`` (loads it on first use)."""
        from metricanything.api import load_model

        with self._lock:
            if path in self._models:
                self._models.move_to_end(path)
                return self._models[path]
            try:
                model = load_model(path, device=self.device, precision=self.precision)
            except MetricAnythingError as exc:
                raise AppError(400, f"cannot load the model: {exc}") from exc
            self._models[path] = model
            while len(self._models) > self.capacity:
                self._models.popitem(last=False)
            return model


# ---------------------------------------------------------------------------------------------- colours
def colour_bar(lo: float, hi: float) -> dict:
    """The page's colour bar for the depth coloured by :func:`metricanything.vis.colorize_depth` on (lo, hi):
    colour stops (bottom = near to top = far) and labelled ticks in metres from
    :func:`metricanything.vis.depth_ticks` (both ends and round values between, none overlapping).

    Each tick has ``value`` (m), ``label`` and ``pos`` in [0, 1] from the near end.
    """
    from metricanything.vis import colour_stops, depth_ticks

    ticks = [{"value": v, "label": f"{t} m", "pos": p} for v, t, p in depth_ticks(lo, hi)]
    return {"lo": lo, "hi": hi, "scale": "log", "stops": colour_stops(16), "ticks": ticks}


# ---------------------------------------------------------------------------------------------- results
@dataclass
class Result:
    """One finished request: its metadata and its folder of products (the arrays live on disk, not in memory)."""

    id: str
    dir: Path
    intrinsics: Intrinsics
    meta: dict
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def depth(self) -> tuple[np.ndarray, np.ndarray]:
        """``(depth float32 H x W metres, valid)`` as written to ``depth.npy`` (0 where not valid)."""
        depth = np.load(self.dir / "depth.npy", allow_pickle=False)
        return depth, depth > 0

    def depth_at(self, u: int, v: int) -> float | None:
        """Depth in metres at pixel (u, v), None where not valid; raises :class:`AppError` outside the image."""
        w, h = self.meta["width"], self.meta["height"]
        if not (0 <= u < w and 0 <= v < h):
            raise AppError(400, f"pixel (u={u}, v={v}) is outside the {w}x{h} image")
        z = float(np.load(self.dir / "depth.npy", mmap_mode="r", allow_pickle=False)[v, u])
        return z if z > 0 else None

    def depth_f32(self) -> bytes:
        """The depth for the page's cursor readout: H x W little-endian float32 metres, NaN where not valid."""
        depth, valid = self.depth()
        return np.where(valid, depth, np.float32("nan")).astype("<f4").tobytes()

    def cloud(self) -> tuple[np.ndarray, np.ndarray]:
        """The edge-filtered coloured point cloud, exactly as ``metricanything infer --ply`` makes it."""
        from metricanything.depth_io import read_image
        from metricanything.pointcloud import depth_to_point_cloud

        depth, valid = self.depth()
        return depth_to_point_cloud(depth, valid, self.intrinsics, read_image(self.dir / "image.png"), drop_edges=True)

    def product(self, name: str) -> Path:
        """Path of a product, written on first request for the slow ones (PLY, GLB, the matplotlib figure)."""
        if name not in PRODUCTS:
            raise AppError(404, f"no product {name!r}; choose from {', '.join(PRODUCTS)}")
        path = self.dir / name
        with self._lock:
            if not path.is_file():
                self._write_lazy(name, path)
        return path

    def _write_lazy(self, name: str, path: Path) -> None:
        from metricanything.pointcloud import write_glb, write_ply
        from metricanything.vis import save_depth_visualisation

        if name == "cloud.ply":
            write_ply(path, *self.cloud())
        elif name == "cloud.glb":
            points, colors = self.cloud()
            if len(points) == 0:
                raise AppError(409, "the point cloud is empty (no valid depth), so there is no GLB")
            write_glb(path, points, colors)
        elif name == "depth_vis.png":
            save_depth_visualisation(path, *self.depth())
        else:
            raise AppError(404, f"{name} is not available for this result ({self.meta['downloads'].get(name)})")


class ResultStore:
    """The last ``capacity`` results, each with a folder under ``root``; older ones are deleted."""

    def __init__(self, capacity: int = 8, root: Path | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"store capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="metricanything-app-")) if root is None else Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._results: OrderedDict[str, Result] = OrderedDict()
        self._lock = threading.Lock()

    def new_folder(self) -> tuple[str, Path]:
        rid = uuid.uuid4().hex
        folder = self.root / rid
        (folder / "input").mkdir(parents=True)
        return rid, folder

    def add(self, result: Result) -> None:
        with self._lock:
            self._results[result.id] = result
            while len(self._results) > self.capacity:
                _, old = self._results.popitem(last=False)
                shutil.rmtree(old.dir, ignore_errors=True)

    def get(self, rid: str) -> Result:
        with self._lock:
            if rid not in self._results:
                raise AppError(404, f"result {rid!r} not found (this server keeps the last {self.capacity} results)")
            return self._results[rid]

    def __len__(self) -> int:
        return len(self._results)

    def close(self) -> None:
        """Delete every result (and the root folder if the store made it)."""
        with self._lock:
            for r in self._results.values():
                shutil.rmtree(r.dir, ignore_errors=True)
            self._results.clear()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- requests
def _number(name: str, value: str | float | None, lo: float, hi: float, unit: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        x = float(value)
    except ValueError:
        raise AppError(400, f"{name} must be a number ({unit}), got {value!r}") from None
    if not (math.isfinite(x) and lo < x < hi):
        raise AppError(400, f"{name} must be between {lo:g} and {hi:g} {unit}, got {value}")
    return x


def _suffix(name: str, allowed: tuple[str, ...], what: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix not in allowed:
        raise AppError(415, f"{name or 'upload'}: unsupported {what} type {suffix or '(none)'!r}; "
                            f"use one of {', '.join(allowed)}")  # fmt: skip
    return suffix


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 1024:.1f} KB"


def _check_size(up: Upload, limit: int, what: str) -> None:
    if len(up.data) > limit:
        raise AppError(413, f"{up.name}: the {what} is {_mb(len(up.data))}; this server accepts up to {_mb(limit)}")
    if not up.data:
        raise AppError(400, f"{up.name}: the {what} file is empty")


class Engine:
    """Runs requests: one model run at a time, results kept in a bounded :class:`ResultStore`."""

    def __init__(self, models: ModelCache, store: ResultStore, limits: Limits = Limits()) -> None:
        self.models, self.store, self.limits = models, store, limits
        self._run_lock = threading.Lock()
        self.examples = {e["id"]: e for e in list_examples()}

    # ------------------------------------------------------------------ public
    def warm_up(self) -> None:
        """Load the models a first request most likely needs (the preselected one, else both bundled)."""
        choices = [("custom", None)] if self.models.default_path else [("auto", None), ("teacher", None)]
        for choice, path in choices:
            with contextlib.suppress(AppError):  # the page reports it when that model is asked for
                self.models.get(self.models.resolve(choice, path, False)[1])

    def run(self, req: InferRequest) -> Result:
        """Process one request (see the module docstring); raises :class:`AppError` on bad input."""
        rid, folder = self.store.new_folder()
        try:
            result = self._run(req, rid, folder)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self.store.add(result)
        return result

    # ------------------------------------------------------------------ steps
    def _run(self, req: InferRequest, rid: str, folder: Path) -> Result:
        from metricanything.tasks.infer import InputImage, IntrinsicsOptions, resolve_intrinsics

        t0 = time.perf_counter()
        fx = _number("fx", req.fx, 0.0, 1e7, "pixels")
        fov = _number("FoV", req.fov_x, 0.0, 180.0, "degrees")
        if fx is not None and fov is not None:
            raise AppError(400, "give either fx or the FoV, not both")
        inp = folder / "input"
        names: dict[str, str] = {f"{inp}{os.sep}": ""}  # path on disk -> what the user called it
        image_path, shown = self._materialise_image(req, inp, names)
        rgb = self._read_image(image_path, shown)
        h, w = rgb.shape[:2]
        item = InputImage(Path(shown).stem or "image", image_path, image=rgb)
        K, source, origin = self._guard(names, resolve_intrinsics, item, IntrinsicsOptions(fx=fx, fov_x=fov))
        if source == IntrinsicsSource.GIVEN:
            origin = f"fx = {fx:g} px entered on the page" if fx is not None else f"FoV = {fov:g} deg entered on the page"
        elif source == IntrinsicsSource.SIDECAR:
            origin = f"intrinsics file {_rename(origin, names)}"
        example_prompt = self.examples[req.example].get("prompt") if req.example and req.prompt is None else None
        label, model_path = self.models.resolve(req.model, req.model_path, req.prompt is not None or bool(example_prompt))
        model = self.models.get(model_path)
        teacher = _takes_prompt(model)
        notes = []
        if req.prompt is not None and not teacher:
            raise AppError(400, f"{label} is a prompt-free student: choose the teacher (or auto) to use the prompt "
                                f"{req.prompt.name}, or remove the prompt file")  # fmt: skip
        if example_prompt and not teacher:
            notes.append(f"the example's prompt {example_prompt} is not used: the student is prompt-free")
        prompt, prompt_meta = self._prompt(req, inp, names, w, h, K, example_prompt if teacher else None)
        from metricanything.api import infer

        with self._run_lock, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t1 = time.perf_counter()
            try:
                res = infer(model, rgb, intrinsics=K, prompt=prompt, precision=self.models.precision)
            except MetricAnythingError as exc:
                raise AppError(400, _rename(str(exc), names)) from exc
            t_infer = time.perf_counter() - t1
        notes += [str(c.message) for c in caught]
        if source is not None:
            res.intrinsics_source = source
        else:
            origin = "the model's field-of-view head" if res.intrinsics_source == IntrinsicsSource.ESTIMATED else "fallback"
        return self._finish(rid, folder, rgb, res, {
            "id": rid,
            "name": shown,
            "width": w,
            "height": h,
            "model": {"choice": req.model, "label": label, "path": model_path, "kind": res.model_kind},
            "intrinsics_origin": origin,
            "prompt": prompt_meta,
            "warnings": notes,
            "timing_s": {"inference": round(t_infer, 3)},
        }, t0)  # fmt: skip

    def _materialise_image(self, req: InferRequest, inp: Path, names: dict[str, str]) -> tuple[Path, str]:
        from metricanything.tasks.infer import IMAGE_SUFFIXES

        if (req.image is None) == (req.example is None):
            raise AppError(400, "send exactly one of an image file or an example id")
        if req.example is not None:
            ex = self.examples.get(req.example)
            if ex is None:
                raise AppError(404, f"no example {req.example!r}; choose from {', '.join(self.examples) or 'none'}")
            root = examples_dir()
            image_path = inp / f"image{Path(ex['image']).suffix}"
            shutil.copyfile(root / ex["image"], image_path)
            if req.intrinsics is None and ex.get("intrinsics"):
                shutil.copyfile(root / ex["intrinsics"], inp / "image.json")
                names[str(inp / "image.json")] = f"{ex['intrinsics']} (the example's intrinsics)"
            shown = ex["image"]
        else:
            up = req.image
            suffix = _suffix(up.name, IMAGE_SUFFIXES, "image")
            _check_size(up, self.limits.max_image_bytes, "image")
            image_path = inp / f"image{suffix}"
            image_path.write_bytes(up.data)
            shown = up.name
        names[str(image_path)] = shown
        if req.intrinsics is not None:
            _suffix(req.intrinsics.name, (".json",), "intrinsics")
            _check_size(req.intrinsics, self.limits.max_file_bytes, "intrinsics file")
            (inp / "image.json").write_bytes(req.intrinsics.data)
            names[str(inp / "image.json")] = req.intrinsics.name
        return image_path, shown

    def _read_image(self, path: Path, shown: str) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        from metricanything.depth_io import read_image

        try:
            with Image.open(path) as im:  # the header only: refuse huge images before decoding them
                w, h = im.size
        except Image.DecompressionBombError as exc:
            raise AppError(413, f"{shown}: the image is too large to decode ({exc})") from exc
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            raise AppError(400, f"{shown}: not a recognised image file (is it really a PNG/JPEG?)") from None
        if w * h > self.limits.max_pixels:
            raise AppError(413, f"{shown}: the image is {w}x{h} = {w * h / 1e6:.2f} MP; this server accepts up to "
                                f"{self.limits.max_pixels / 1e6:.2f} MP (resize it, or start the app with --max-megapixels)")  # fmt: skip
        try:
            return read_image(path)
        except MetricAnythingError as exc:
            raise AppError(400, _rename(str(exc), {str(path): shown})) from exc

    def _prompt(self, req: InferRequest, inp: Path, names: dict[str, str], w: int, h: int, K: Intrinsics | None,
                example_prompt: str | None):
        """The request's prompt (an uploaded file, else the example's ``example_prompt``) and its description."""
        from metricanything.prompts.prompt import Prompt, read_prompt_file
        from metricanything.tasks.infer import read_lidar_prompt

        if req.prompt is None:
            if req.lidar_calib is not None:
                raise AppError(400, f"{req.lidar_calib.name}: a LiDAR calibration needs a LiDAR prompt file (.bin or .npy)")
            if example_prompt:
                path = inp / f"prompt{Path(example_prompt).suffix}"
                shutil.copyfile(examples_dir() / example_prompt, path)
                names[str(path)] = example_prompt
                prompt = self._guard(names, read_prompt_file, path, w, h)
                return prompt, {"file": example_prompt, "kind": "points", "points": int(prompt.num_points)}
            return None, None
        up = req.prompt
        suffix = _suffix(up.name, PROMPT_SUFFIXES, "prompt")
        _check_size(up, self.limits.max_file_bytes, "prompt")
        path = inp / f"prompt{suffix}"
        path.write_bytes(up.data)
        names[str(path)] = up.name
        if req.lidar_calib is not None or suffix == ".bin":
            if req.lidar_calib is None:
                raise AppError(400, f"{up.name}: a LiDAR .bin prompt needs its calibration JSON "
                                    '({"T_cam_lidar": 4x4, "point_dims": 4})')  # fmt: skip
            _suffix(req.lidar_calib.name, (".json",), "LiDAR calibration")
            _check_size(req.lidar_calib, self.limits.max_file_bytes, "LiDAR calibration")
            calib = inp / "lidar_calib.json"
            calib.write_bytes(req.lidar_calib.data)
            names[str(calib)] = req.lidar_calib.name
            if K is None:
                raise AppError(400, f"{up.name}: a LiDAR prompt needs the intrinsics to project the points; "
                                    "enter fx or the FoV, or add an intrinsics JSON")  # fmt: skip
            depth, mask = self._guard(names, read_lidar_prompt, path, calib, K)
            prompt = Prompt.from_map(depth, mask)
            return prompt, {"file": up.name, "kind": "lidar", "points": int(prompt.num_points)}
        prompt = self._guard(names, read_prompt_file, path, w, h)
        kind = "map" if suffix == ".png" else "points"
        return prompt, {"file": up.name, "kind": kind, "points": int(prompt.num_points)}

    @staticmethod
    def _guard(names: dict[str, str], fn, *args):
        """Call ``fn``; a project error becomes a 400 whose message names the user's files, not ours."""
        try:
            return fn(*args)
        except MetricAnythingError as exc:
            raise AppError(400, _rename(str(exc), names)) from exc

    # ------------------------------------------------------------------ products
    def _finish(self, rid: str, folder: Path, rgb: np.ndarray, res, meta: dict, t0: float) -> Result:
        from metricanything.depth_io import write_depth, write_image, write_intrinsics_json
        from metricanything.pointcloud import DEFAULT_EDGE_THRESHOLD, depth_to_point_cloud
        from metricanything.tasks.infer import png_scale_for
        from metricanything.vis import colorize_depth, depth_limits

        depth = np.asarray(res.depth, dtype=np.float32)
        valid = np.asarray(res.valid, dtype=bool) & np.isfinite(depth) & (depth > 0)
        K = res.intrinsics
        downloads: dict[str, str | None] = {name: None for name in DOWNLOADS}
        write_depth(folder / "depth.npy", depth, valid)
        try:
            scale = png_scale_for(depth, valid)
            write_depth(folder / "depth.png", depth, valid, scale=scale)
        except MetricAnythingError as exc:
            scale = None
            downloads["depth.png"] = f"unavailable: {exc}"
            meta["warnings"].append(f"no 16-bit depth PNG: {exc}")
        write_image(folder / "image.png", rgb)
        lo, hi = depth_limits(depth, valid)  # the 1st-99th percentile, as infer's depth_vis.png
        write_image(folder / "color.png", colorize_depth(depth, valid, lo, hi))
        points, colors = depth_to_point_cloud(depth, valid, K, rgb, drop_edges=True)
        step = max(1, math.ceil(len(points) / self.limits.max_preview_points))
        pv, cv = points[::step], colors[::step]
        with open(folder / "cloud_preview.bin", "wb") as f:
            f.write(struct.pack("<II", len(pv), step))
            f.write(np.ascontiguousarray(pv, dtype="<f4").tobytes())
            f.write(np.ascontiguousarray(cv, dtype=np.uint8).tobytes())
        d = depth[valid]
        meta.update({
            "intrinsics": {**K.to_dict(), "fov_x_deg": K.fov_x, "fov_y_deg": K.fov_y},
            "intrinsics_source": res.intrinsics_source.value,
            "depth": {
                "min_m": float(d.min()) if d.size else None,
                "max_m": float(d.max()) if d.size else None,
                "median_m": float(np.median(d)) if d.size else None,
                "valid_fraction": float(valid.mean()),
                "png_scale_m": scale,
            },
            "colorbar": colour_bar(lo, hi),
            "cloud": {"points": int(len(points)), "preview_points": int(len(pv)), "preview_step": step,
                      "edge_threshold": DEFAULT_EDGE_THRESHOLD},
            "downloads": downloads,
        })  # fmt: skip
        record = {k: meta[k] for k in ("intrinsics_source", "intrinsics_origin", "prompt")}
        record.update(model=meta["model"]["path"], input=meta["name"], depth_png_scale_m=scale,
                      depth_units="metres (z-depth, OpenCV camera frame)")
        write_intrinsics_json(folder / "intrinsics.json", K, record)
        meta["timing_s"]["total"] = round(time.perf_counter() - t0, 3)
        return Result(rid, folder, K, meta)


def _takes_prompt(model) -> bool:
    """Whether ``model`` takes prompt points (the registry says so per kind; the teacher is the one that does)."""
    from metricanything.models.registry import spec_of

    return spec_of(model).takes_prompt


def _rename(message: str, names: dict[str, str]) -> str:
    """``message`` with our temporary paths replaced by the names the user knows (longest paths first)."""
    for path in sorted(names, key=len, reverse=True):
        message = message.replace(path, names[path])
    return message


def result_json(result: Result) -> dict:
    """The JSON the page gets for a result (metadata plus the URLs of its products)."""
    base = f"api/result/{result.id}"
    urls = {name: f"{base}/{name}" for name in (*PRODUCTS, "depth.f32", "depth_at")}
    return {**json.loads(json.dumps(result.meta)), "urls": urls}
