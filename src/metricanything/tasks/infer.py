"""File-level inference: images, folders, globs and videos in; per-image metric depth products out.

For every input image this writes, into ``OUT/<image stem>/``:

* ``depth.npy``      float32 metres at the input's exact H x W (0 where not valid);
* ``depth.png``      16-bit depth, 1 unit = ``depth_png_scale_m`` metres (1 mm unless the scene is deeper than
  65.535 m, then the smallest of 2, 5, 10 ... mm that fits; the scale is recorded in ``intrinsics.json``);
* ``depth_vis.png``  colourised depth with a colour bar in metres (unless ``no_vis``);
* ``intrinsics.json`` fx, fy, cx, cy, width, height, ``source`` (given | sidecar | exif | estimated | fallback),
  the model used, the prompt used and the PNG scale;
* ``cloud.ply`` / ``cloud.glb`` (optional): edge-filtered coloured point cloud in the camera frame.

A video is processed frame by frame with ONE camera for the clip, optional scale anchoring, and a depth video
next to the frame folders (``<clip>_depth.mp4``, ``<clip>_video.json``): see :mod:`metricanything.tasks.video`.

Focal resolution order: explicit values (``--fx/--fy/--cx/--cy``, ``--fov-x``) -> sidecar JSON -> EXIF
35 mm-equivalent focal -> the model's FoV head (``estimated``) -> a fallback that always warns.

Honest defaults: intrinsics from flags, a sidecar or EXIF must be plausible for the image (field of view
5-170 deg across its long side and at most 170 deg across the other, pixel aspect fy/fx 0.5-2, principal point
inside the image; :func:`metricanything.camera.implausible_intrinsics`), else that image fails with a message
naming the flag or file. A focal from the FoV head is announced once per run with
the head's measured error (also recorded in ``intrinsics.json`` as ``fov_head_error_deg``), and so is the
bundled student's synthetic-only training. An image whose depth is invalid everywhere counts as failed.
"""

from __future__ import annotations

import glob as globlib
import json
import math
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from metricanything.camera import (
    PLAUSIBLE_FOV_DEG,
    Intrinsics,
    IntrinsicsSource,
    implausible_intrinsics,
    splat_points_to_depth,
    transform_points,
)
from metricanything.depth_io import read_exif_focal_px, read_image, read_intrinsics_json, write_depth
from metricanything.errors import InputFileError, InvalidInputError, MetricAnythingError
from metricanything.tasks.options import option
from metricanything.tasks.video import VideoOptions, VideoRun
from metricanything.vis import save_depth_visualisation

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
#: candidate sidecar names for image ``x/stem.ext``, in priority order
SIDECAR_PATTERNS = ("{stem}.json", "{stem}_intrinsics.json", "{name}.json", "intrinsics.json")


# ---------------------------------------------------------------------------------------------- inputs
@dataclass
class InputImage:
    """One image to process: a display ``name`` (unique output folder), its source file and frame index."""

    name: str
    path: Path
    frame: int | None = None
    image: np.ndarray | None = field(default=None, repr=False)


def _unique(name: str, used: set[str]) -> str:
    out, k = name, 1
    while out in used:
        k += 1
        out = f"{name}_{k}"
    used.add(out)
    return out


def list_inputs(spec: str | Path) -> list[Path]:
    """Files named by ``spec``: an image, a video, a folder (its images and videos, sorted) or a glob."""
    spec = str(spec)
    p = Path(spec)
    if p.is_dir():
        files = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES)
        if not files:
            raise InputFileError(p, f"folder holds no images ({', '.join(IMAGE_SUFFIXES)}) or videos")
        return files
    if p.is_file():
        return [p]
    if any(c in spec for c in "*?["):
        files = sorted(Path(f) for f in globlib.glob(spec, recursive=True) if Path(f).is_file())
        if not files:
            raise InputFileError(spec, "glob matches no files")
        return files
    raise InputFileError(p, "input not found (expected an image, a video, a folder or a glob)")


def iter_input_images(spec: str | Path, video_stride: int = 1) -> Iterator[InputImage | tuple[InputImage, Exception]]:
    """Yield an :class:`InputImage` (image loaded) per image/video frame, or ``(item, error)`` when unreadable."""
    used: set[str] = set()
    for path in list_inputs(spec):
        if path.suffix.lower() in VIDEO_SUFFIXES:
            yield from _iter_video(path, used, max(1, int(video_stride)))
            continue
        item = InputImage(_unique(path.stem, used), path)
        try:
            item.image = read_image(path)
        except MetricAnythingError as exc:
            yield item, exc
            continue
        yield item


def _iter_video(path: Path, used: set[str], stride: int) -> Iterator[InputImage | tuple[InputImage, Exception]]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        yield InputImage(_unique(path.stem, used), path), InputFileError(path, "OpenCV cannot open this video")
        return
    index = 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if index % stride == 0:
                item = InputImage(_unique(f"{path.stem}_f{index:06d}", used), path, frame=index)
                item.image = np.ascontiguousarray(frame[:, :, ::-1])
                yield item
            index += 1
    finally:
        cap.release()
    if index == 0:
        yield InputImage(_unique(path.stem, used), path), InputFileError(path, "video has no readable frames")


# ---------------------------------------------------------------------------------------------- intrinsics
@dataclass
class IntrinsicsOptions:
    """User-given intrinsics: any of fx/fy/cx/cy (pixels of the input image) or a horizontal FoV (degrees)."""

    fx: float | None = option("--fx", None)
    fy: float | None = option("--fy", None)
    cx: float | None = option("--cx", None)
    cy: float | None = option("--cy", None)
    fov_x: float | None = option("--fov-x", None)

    def given(self) -> bool:
        return self.fx is not None or self.fov_x is not None

    def __post_init__(self) -> None:
        if self.fx is None and self.fov_x is None and (self.fy, self.cx, self.cy) != (None, None, None):
            raise InvalidInputError("--fy/--cx/--cy need --fx (or give --fov-x)")
        if self.fx is not None and self.fov_x is not None:
            raise InvalidInputError("give either --fx or --fov-x, not both")
        for flag, value in (("--fx", self.fx), ("--fy", self.fy)):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise InvalidInputError(f"{flag} {value:g}: a focal length must be a positive number of pixels")
        for flag, value in (("--cx", self.cx), ("--cy", self.cy)):
            if value is not None and not math.isfinite(value):
                raise InvalidInputError(f"{flag} {value:g}: the principal point must be a finite pixel coordinate")
        lo, hi = PLAUSIBLE_FOV_DEG
        if self.fov_x is not None and not (math.isfinite(self.fov_x) and 0 < self.fov_x <= hi):
            raise InvalidInputError(
                f"--fov-x {self.fov_x:g}: the horizontal field of view must be in the plausible {lo:g}-{hi:g} deg "
                "(degrees, not radians; a fisheye image needs undistorting first)"
            )


def find_sidecar(path: Path) -> Path | None:
    """The first existing sidecar intrinsics JSON for image ``path`` (see ``SIDECAR_PATTERNS``)."""
    for pattern in SIDECAR_PATTERNS:
        cand = path.parent / pattern.format(stem=path.stem, name=path.name)
        if cand.is_file() and cand != path:
            return cand
    return None


def resolve_intrinsics(
    item: InputImage, options: IntrinsicsOptions
) -> tuple[Intrinsics | None, IntrinsicsSource | None, str]:
    """Intrinsics from flags, sidecar or EXIF (in that order), their source and a human-readable origin.

    Returns ``(None, None, "")`` when none of these exists: the model then estimates them or falls back.
    """
    h, w = item.image.shape[:2]
    if options.fov_x is not None:
        K = Intrinsics.from_fov(options.fov_x, w, h)
        _check_flags(K, {"fx": "--fov-x", "fy": "--fov-x"}, options)
        return K, IntrinsicsSource.GIVEN, f"--fov-x {options.fov_x}"
    if options.fx is not None:
        fy = options.fy if options.fy is not None else options.fx
        cx = options.cx if options.cx is not None else (w - 1) / 2.0
        cy = options.cy if options.cy is not None else (h - 1) / 2.0
        K = Intrinsics(options.fx, fy, cx, cy, w, h)
        flags = {"fx": "--fx", "fy": "--fy" if options.fy is not None else "--fx (used as fy)", "cx": "--cx", "cy": "--cy"}
        _check_flags(K, flags, options)
        return K, IntrinsicsSource.GIVEN, "command-line flags"
    sidecar = find_sidecar(item.path)
    if sidecar is not None:
        K = read_intrinsics_json(sidecar, w, h)
        problems = implausible_intrinsics(K)
        if problems:
            raise InputFileError(
                sidecar,
                f"implausible intrinsics for {item.path.name}: " + "; ".join(t for _, t in problems)
                + f". {_FOCAL_FIX.format(w=w)}; fix or remove this sidecar file, or pass --fx / --fov-x",
            )
        return K, IntrinsicsSource.SIDECAR, str(sidecar)
    if item.frame is None:
        f = read_exif_focal_px(item.path, w, h)
        if f is not None:
            K = Intrinsics.from_focal(f, w, h)
            problems = implausible_intrinsics(K)
            if problems:
                raise InputFileError(
                    item.path,
                    "its EXIF FocalLengthIn35mmFilm gives implausible intrinsics: "
                    + "; ".join(t for _, t in problems) + ". Pass --fx or --fov-x for this image",
                )
            return K, IntrinsicsSource.EXIF, "EXIF FocalLengthIn35mmFilm"
    return None, None, ""


_FOCAL_FIX = "Focal lengths are in pixels of this image: fx = focal_mm / sensor_width_mm x {w} px"


def _check_flags(K: Intrinsics, flags: dict[str, str], options: IntrinsicsOptions) -> None:
    """Raise :class:`InvalidInputError` naming the flag at fault when ``K`` (from flags) is implausible."""
    problems = implausible_intrinsics(K)
    if not problems:
        return
    param, text = problems[0]
    flag = flags[param]
    w, h = K.width, K.height
    if flag == "--fov-x":
        flag = f"--fov-x {options.fov_x:g}"
        fix = "--fov-x is the horizontal field of view in degrees (not radians) of this image"
    elif param in ("fx", "fy"):
        value = options.fx if param == "fx" or options.fy is None else options.fy
        flag = f"{flag} {value:g}"
        fix = (
            f"{_FOCAL_FIX.format(w=w)}" if param == "fx" else f"Focal lengths are in pixels of this image: "
            f"fy = focal_mm / sensor_height_mm x {h} px"
        ) + ", or give --fov-x in degrees instead"
    else:
        flag = f"{flag} {getattr(options, param):g}"
        fix = (
            f"--cx/--cy are pixel coordinates in this {w}x{h} image; leave them out to use its centre "
            f"({(w - 1) / 2:g}, {(h - 1) / 2:g})"
        )
    raise InvalidInputError(f"{flag}: {text}. {fix}")


# ---------------------------------------------------------------------------------------------- prompts
def read_lidar_prompt(points_path: Path, calib_path: Path, K: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Project a LiDAR sweep into the image with the z-buffer: ``(depth, mask)`` at K's size.

    ``points_path``: ``.bin`` float32 records (``point_dims`` floats each, x y z first; KITTI 4, nuScenes 5)
    or ``.npy`` N x >=3. ``calib_path`` JSON: ``{"T_cam_lidar": 4x4 (LiDAR -> camera, OpenCV frame),
    "point_dims": 4}``.
    """
    try:
        calib = json.loads(Path(calib_path).read_text())
    except FileNotFoundError:
        raise InputFileError(calib_path, "LiDAR calibration file not found") from None
    except json.JSONDecodeError as exc:
        raise InputFileError(calib_path, f"not valid JSON ({exc})") from None
    if "T_cam_lidar" not in calib:
        raise InputFileError(calib_path, "missing 'T_cam_lidar' (4x4 LiDAR-to-camera transform)")
    T = np.asarray(calib["T_cam_lidar"], dtype=np.float64)
    if T.shape != (4, 4):
        raise InputFileError(calib_path, f"'T_cam_lidar' must be 4x4, got {T.shape}")
    points_path = Path(points_path)
    if not points_path.is_file():
        raise InputFileError(points_path, "LiDAR points file not found")
    if points_path.suffix.lower() == ".bin":
        dims = int(calib.get("point_dims", 4))
        raw = np.fromfile(points_path, dtype="<f4")
        if dims < 3 or raw.size % dims:
            raise InputFileError(points_path, f"size is not a multiple of point_dims={dims} float32 values")
        pts = raw.reshape(-1, dims)[:, :3]
    elif points_path.suffix.lower() == ".npy":
        try:
            pts = np.load(points_path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise InputFileError(points_path, f"unreadable .npy ({exc})") from None
        if pts.ndim != 2 or pts.shape[1] < 3:
            raise InputFileError(points_path, f"LiDAR .npy must be N x >=3, got {pts.shape}")
        pts = pts[:, :3]
    else:
        raise InputFileError(points_path, "LiDAR points must be .bin or .npy")
    pts = pts[np.isfinite(pts).all(axis=1)]
    depth, mask = splat_points_to_depth(transform_points(pts, T), K)
    if not mask.any():
        raise InputFileError(points_path, "no LiDAR point projects into the image (check T_cam_lidar)")
    return depth, mask


def find_prompt_file(prompt: Path, item: InputImage) -> Path | None:
    """``prompt`` itself if a file, else ``prompt/<stem>.{npy,csv,png,bin}`` for a folder of prompts."""
    if prompt.is_file():
        return prompt
    if prompt.is_dir():
        stem = item.path.stem if item.frame is None else item.name
        for ext in (".npy", ".csv", ".png", ".bin"):
            cand = prompt / f"{stem}{ext}"
            if cand.is_file():
                return cand
        return None
    raise InputFileError(prompt, "prompt file or folder not found")


# ---------------------------------------------------------------------------------------------- outputs
def png_scale_for(depth: np.ndarray, valid: np.ndarray) -> float:
    """Metres per unit for the 16-bit PNG: 1 mm unless the depth exceeds 65.535 m (then 2, 5, 10, ... mm)."""
    dmax = float(depth[valid].max()) if valid.any() else 0.0
    for scale in (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0):
        if dmax / scale <= 65535:
            return scale
    raise InvalidInputError(f"depth up to {dmax:.1f} m does not fit a 16-bit PNG")


def write_outputs(
    out_dir: Path,
    image: np.ndarray,
    result,
    record: dict,
    no_vis: bool = False,
    ply: bool = False,
    glb: bool = False,
) -> list[Path]:
    """Write every per-image product of one :class:`~metricanything.api.DepthResult` into ``out_dir``."""
    from metricanything.depth_io import write_intrinsics_json
    from metricanything.pointcloud import depth_to_point_cloud, write_glb, write_ply

    out_dir.mkdir(parents=True, exist_ok=True)
    depth = np.asarray(result.depth, dtype=np.float32)
    valid = np.asarray(result.valid, dtype=bool)
    written = []
    write_depth(out_dir / "depth.npy", depth, valid)
    scale = png_scale_for(depth, valid)
    write_depth(out_dir / "depth.png", depth, valid, scale=scale)
    written += [out_dir / "depth.npy", out_dir / "depth.png"]
    if not no_vis:
        save_depth_visualisation(out_dir / "depth_vis.png", depth, valid)
        written.append(out_dir / "depth_vis.png")
    if ply or glb:
        pts, cols = depth_to_point_cloud(depth, valid, result.intrinsics, image, drop_edges=True)
        if ply:
            write_ply(out_dir / "cloud.ply", pts, cols)
            written.append(out_dir / "cloud.ply")
        if glb:
            write_glb(out_dir / "cloud.glb", pts, cols)
            written.append(out_dir / "cloud.glb")
    K = result.intrinsics
    extra = {
        "source": result.intrinsics_source.value,
        "fov_x_deg": K.fov_x,
        "fov_y_deg": K.fov_y,
        "depth_png_scale_m": scale,
        "depth_units": "metres (z-depth, OpenCV camera frame)",
        **record,
    }
    write_intrinsics_json(out_dir / "intrinsics.json", K, extra)
    written.append(out_dir / "intrinsics.json")
    return written


# ---------------------------------------------------------------------------------------------- driver
@dataclass
class InferOptions:
    """Everything ``metricanything infer`` needs beyond the input and output paths."""

    model: str | None = option("--model", None)
    prompt: Path | None = option("--prompt", None)
    lidar_calib: Path | None = option("--lidar-calib", None)
    intrinsics: IntrinsicsOptions = field(default_factory=IntrinsicsOptions)
    device: str = option("--device", "cpu")
    precision: str = option("--precision", "fp32")
    batch_size: int = option("--batch-size", 1)
    ply: bool = option("--ply", False)
    glb: bool = option("--glb", False)
    no_vis: bool = option("--no-vis", False)
    video_stride: int = option("--video-stride", 1)
    video: VideoOptions = field(default_factory=VideoOptions)  # one camera per clip, scale anchor, depth video
    progress: bool = option("--quiet", True, invert=True)


@dataclass
class InferReport:
    """What happened: processed names, failures (name, message) and the model path used."""

    done: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    model: str = ""


def _prompt_for(item: InputImage, options: InferOptions, K: Intrinsics | None):
    from metricanything.prompts.prompt import Prompt, read_prompt_file

    if options.prompt is None:
        return None, {}
    path = find_prompt_file(Path(options.prompt), item)
    if path is None:
        return None, {"prompt": None}
    h, w = item.image.shape[:2]
    if options.lidar_calib is not None:
        if K is None:
            raise InvalidInputError("a LiDAR prompt needs intrinsics (flags, sidecar or EXIF) to project the points")
        depth, mask = read_lidar_prompt(path, options.lidar_calib, K)
        prompt = Prompt.from_map(depth, mask)
    else:
        prompt = read_prompt_file(path, w, h)
    return prompt, {"prompt": str(path), "prompt_points": int(prompt.num_points)}


def _say(text: str) -> None:
    """One notice line on stderr (kept clear of the progress bar)."""
    from tqdm import tqdm

    tqdm.write(text, file=sys.stderr)


def run_inference(input_spec: str | Path, out_root: str | Path, options: InferOptions) -> InferReport:
    """Process every image of ``input_spec``; bad files are reported and skipped, never abort the run.

    Run-level notices go to stderr once per run, never per image: the bundled student's synthetic-only
    training (:class:`~metricanything.api.SyntheticModelWarning`) and a focal from the FoV head
    (:class:`~metricanything.api.EstimatedFocalWarning`, with the head's measured error). Other warnings
    (e.g. the focal fallback) are printed per image.
    """
    from tqdm import tqdm

    from metricanything.api import EstimatedFocalWarning, infer, load_model, model_info
    from metricanything.models.bundled import resolve_model

    out_root = Path(out_root)
    items = list(iter_input_images(input_spec, options.video_stride))
    report = InferReport()
    kind = "teacher" if options.prompt is not None else "student"
    model_path = resolve_model(options.model, kind)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load_model(model_path, device=options.device, precision=options.precision)
    for w in caught:
        _say(f"note: {w.message}")
    info = model_info(model)
    report.model = model_path
    announced_estimate = False
    video = VideoRun(out_root, options.video, model, options.video_stride, _say)
    bar = tqdm(items, desc="infer", unit="img", disable=not options.progress)
    for entry in bar:
        if isinstance(entry, tuple):
            item, exc = entry
            video.failed(item)
            report.failed.append((item.name, str(exc)))
            tqdm.write(f"skipped {item.path}: {exc}")
            continue
        item = entry
        try:
            K, source, origin = video.camera(item, *resolve_intrinsics(item, options.intrinsics))
            prompt, prompt_record = _prompt_for(item, options, K)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = infer(model, item.image, intrinsics=K, prompt=prompt, precision=options.precision)
            for w in caught:
                if issubclass(w.category, EstimatedFocalWarning):
                    if not announced_estimate:
                        _say(f"warning: {w.message}")
                        announced_estimate = True
                    continue
                tqdm.write(f"warning ({item.name}): {w.message}")
            record: dict = video.frame(item, result)
            if source is not None:
                result.intrinsics_source = source
            else:
                origin = "model FoV head" if result.intrinsics_source == IntrinsicsSource.ESTIMATED else "fallback"
                if result.intrinsics_source == IntrinsicsSource.ESTIMATED:
                    record.update(info.fov_head_error_record())
            if not result.valid.any():
                raise InvalidInputError(
                    f"the model gave no valid depth anywhere in this image (focal {result.intrinsics.fx:.6g} px from "
                    f"{origin}); nothing written. Check the focal length / intrinsics and the model (--model)"
                )
            record.update({
                "intrinsics_origin": origin,
                "model": model_path,
                "input": str(item.path) + ("" if item.frame is None else f"#frame={item.frame}"),
                **prompt_record,
            })
            write_outputs(out_root / item.name, item.image, result, record, options.no_vis, options.ply, options.glb)
            video.add(item, out_root / item.name, result)
            f = result.intrinsics.fx
            shown = result.depth[result.valid]
            tqdm.write(
                f"{item.name}: focal {f:.1f} px (hFoV {result.intrinsics.fov_x:.1f} deg) "
                f"from {result.intrinsics_source.value}; depth {shown.min():.2f}-{shown.max():.2f} m"
            )
            report.done.append(item.name)
        except MetricAnythingError as exc:
            video.failed(item)
            report.failed.append((item.name, str(exc)))
            tqdm.write(f"failed {item.path}: {exc}")
    video.finish()
    return report
