"""File-level inference: images, folders, globs and videos in; per-image metric depth products out.

For every input image this writes, into ``OUT/<image stem>/``:

* ``depth.npy``      float32 metres at the input's exact H x W (0 where not valid);
* ``depth.png``      16-bit depth, 1 unit = ``--depth-png-scale`` metres: one fixed scale for the whole run,
  1 mm (0.001) by default, recorded in ``intrinsics.json`` as ``depth_png_scale_m``; 0 = no depth. An image
  whose valid depth does not fit (deeper than 65535 units, e.g. 65.535 m at 1 mm, or a valid depth that
  rounds to 0) fails on its own with an error naming ``--depth-png-scale`` and the value that fits; the other
  images of the run go on (the scale is never changed per image, so every frame of a video and every
  ``depth.png`` fed back as ``--prompt`` reads with the same scale);
* ``valid.png``      8-bit mask, 255 where the depth is valid, 0 elsewhere;
* ``depth_vis.png``  colourised depth with a colour bar in metres (unless ``no_vis``);
* ``intrinsics.json`` fx, fy, cx, cy, width, height, ``source`` (given | sidecar | exif | estimated | fallback),
  the model used, the prompt used and the PNG scale;
* ``cloud.ply`` / ``cloud.glb`` (optional): edge-filtered coloured point cloud in the camera frame.

Every file of an image is written into a hidden temporary folder (``OUT/.<stem>.tmp-<pid>-<random>``) that then
replaces ``OUT/<stem>/`` as a whole: an output folder holds only the files of the latest complete run for that
image (no ``cloud.ply`` of an earlier run with another focal), and a killed run leaves no visible half-written
file. The temporaries of a killed run are removed by the next run into the same ``OUT``.

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
import math
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
)
from metricanything.depth_io import (
    PNG_SCALE_MM,
    read_exif_focal_px,
    read_image,
    read_intrinsics_json,
    write_depth,
    write_image,
)
from metricanything.errors import InputFileError, InvalidInputError, MetricAnythingError
from metricanything.progress import QUIET, VERBOSE, Progress, say
from metricanything.tasks.infer_prompts import (  # noqa: F401 - re-exported (public names of this module)
    PROMPT_FOLDER_SUFFIXES,
    U16,
    check_point_dims,
    find_prompt_file,
    prompt_for,
    read_lidar_prompt,
)
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
# ---------------------------------------------------------------------------------------------- outputs
_U16 = U16


def png_scale_for(depth: np.ndarray, valid: np.ndarray) -> float:
    """Metres per unit that fit ``depth``: 1 mm unless it exceeds 65.535 m (then 2, 5, 10, ... mm).

    ``infer`` no longer picks a scale per image (see the module docstring); this helper suggests a value for
    ``--depth-png-scale`` and serves callers that write a self-describing PNG of one image.
    """
    dmax = float(depth[valid].max()) if valid.any() else 0.0
    for scale in (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0):
        if dmax / scale <= _U16:
            return scale
    raise InvalidInputError(f"depth up to {dmax:.1f} m does not fit a 16-bit PNG")


def check_png_scale(scale: float) -> float:
    """Validate ``--depth-png-scale`` (metres per unit, finite, > 0, at most 1 m)."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (math.isfinite(scale) and 0 < scale <= 1):
        raise InvalidInputError(
            f"--depth-png-scale {scale!r}: must be metres per PNG unit in (0, 1] (0.001 = millimetres, the default; "
            "0.002 holds up to 131 m, 0.01 up to 655 m)"
        )
    return float(scale)


def _png_scale_problem(depth: np.ndarray, valid: np.ndarray, scale: float) -> str | None:
    """Why ``depth`` does not fit a 16-bit PNG at ``scale`` (naming the option and a value that fits), or None."""
    if not valid.any():
        return None
    d = depth[valid].astype(np.float64)
    dmax, dmin = float(d.max()), float(d.min())
    if dmax / scale > _U16 + 0.5:
        fit = next((s for s in (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0) if dmax / s <= _U16), None)
        hint = f"rerun with --depth-png-scale {fit:g}" if fit else "this depth is beyond any 16-bit PNG scale"
        return (
            f"depth up to {dmax:.6g} m does not fit depth.png at --depth-png-scale {scale:g} m per unit (at most "
            f"{_U16 * scale:g} m); {hint} (one scale for the whole run; depth.npy holds the exact values)"
        )
    if dmin / scale < 0.5:
        return (
            f"depth down to {dmin:.3g} m rounds to 0 (= no depth) in depth.png at --depth-png-scale {scale:g} m per "
            f"unit; rerun with a finer --depth-png-scale (e.g. {scale / 10:g})"
        )
    return None


def write_outputs(
    out_dir: Path,
    image: np.ndarray,
    result,
    record: dict,
    no_vis: bool = False,
    ply: bool = False,
    glb: bool = False,
    png_scale: float = PNG_SCALE_MM,
) -> list[Path]:
    """Write every per-image product of one :class:`~metricanything.api.DepthResult` into ``out_dir``.

    Everything is written into a hidden temporary folder that then replaces ``out_dir`` as a whole
    (:func:`metricanything.atomic.atomic_dir`). A depth that does not fit ``depth.png`` at ``png_scale`` raises
    :class:`InvalidInputError` naming ``--depth-png-scale`` before anything is written.
    """
    from metricanything.atomic import atomic_dir
    from metricanything.depth_io import write_intrinsics_json
    from metricanything.pointcloud import depth_to_point_cloud, write_glb, write_ply

    depth = np.asarray(result.depth, dtype=np.float32)
    valid = np.asarray(result.valid, dtype=bool)
    problem = _png_scale_problem(depth, valid, png_scale)
    if problem:
        raise InvalidInputError(problem + "; nothing written for this image")
    names = ["depth.npy", "depth.png", "valid.png"]
    with atomic_dir(out_dir) as tmp:
        write_depth(tmp / "depth.npy", depth, valid)
        write_depth(tmp / "depth.png", depth, valid, scale=png_scale)
        write_image(tmp / "valid.png", np.where(valid, 255, 0).astype(np.uint8))
        if not no_vis:
            save_depth_visualisation(tmp / "depth_vis.png", depth, valid)
            names.append("depth_vis.png")
        if ply or glb:
            pts, cols = depth_to_point_cloud(depth, valid, result.intrinsics, image, drop_edges=True)
            if ply:
                write_ply(tmp / "cloud.ply", pts, cols)
                names.append("cloud.ply")
            if glb:
                write_glb(tmp / "cloud.glb", pts, cols)
                names.append("cloud.glb")
        K = result.intrinsics
        extra = {
            "source": result.intrinsics_source.value,
            "fov_x_deg": K.fov_x,
            "fov_y_deg": K.fov_y,
            "depth_png_scale_m": png_scale,
            "depth_png": "uint16, metres = value x depth_png_scale_m, 0 = no depth",
            "valid_png": "uint8, 255 = valid depth, 0 = no depth (depth.npy and depth.png hold 0 there)",
            "depth_units": "metres (z-depth, OpenCV camera frame)",
            **record,
        }
        write_intrinsics_json(tmp / "intrinsics.json", K, extra)
        names.append("intrinsics.json")
    return [out_dir / n for n in names]


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
    depth_png_scale: float = option("--depth-png-scale", PNG_SCALE_MM)
    prompt_png_scale: float | None = option("--prompt-png-scale", None)

    def __post_init__(self) -> None:
        check_png_scale(self.depth_png_scale)
        if self.prompt_png_scale is not None:
            try:
                check_png_scale(self.prompt_png_scale)
            except InvalidInputError:
                raise InvalidInputError(
                    f"--prompt-png-scale {self.prompt_png_scale!r}: must be metres per unit of the 16-bit PNG prompt "
                    "in (0, 1] (0.001 = millimetres)"
                ) from None
        if self.batch_size is not None and (isinstance(self.batch_size, bool) or int(self.batch_size) < 1):
            raise InvalidInputError(f"--batch-size {self.batch_size}: must be >= 1")
        if int(self.video_stride) < 1:
            raise InvalidInputError(f"--video-stride {self.video_stride}: must be >= 1 (1 = every frame)")
        if self.lidar_calib is not None and self.prompt is None:
            raise InvalidInputError("--lidar-calib needs --prompt (the LiDAR .bin/.npy sweep to project)")


@dataclass
class InferReport:
    """What happened: processed names, failures (name, message) and the model path used."""

    done: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    model: str = ""


def run_inference(input_spec: str | Path, out_root: str | Path, options: InferOptions) -> InferReport:
    """Process every image of ``input_spec``; bad files are reported and skipped, never abort the run.

    The output folder is checked (creatable, writable) before the model loads, and temporaries of an earlier,
    killed run in it are removed. Run-level notices go to stderr once per run, never per image: the bundled
    student's synthetic-only training (:class:`~metricanything.api.SyntheticModelWarning`) and a focal from the
    FoV head (:class:`~metricanything.api.EstimatedFocalWarning`, with the head's measured error). Other warnings
    (e.g. the focal fallback) are printed per image. Output follows :func:`metricanything.progress.verbosity`.
    """
    import time

    from metricanything.api import EstimatedFocalWarning, infer, load_model, model_info
    from metricanything.atomic import check_output_dir, clean_stale_temps
    from metricanything.models.bundled import resolve_model

    out_root = check_output_dir(Path(out_root), "-o/--out")
    stale = clean_stale_temps(out_root)
    if stale:
        say(f"removed {len(stale)} temporary folder(s) of an interrupted earlier run from {out_root}", VERBOSE)
    if options.prompt is not None and not Path(options.prompt).exists():
        raise InputFileError(options.prompt, "--prompt file or folder not found")
    items = list(iter_input_images(input_spec, options.video_stride))
    report = InferReport()
    kind = "teacher" if options.prompt is not None else "student"
    model_path = resolve_model(options.model, kind)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load_model(model_path, device=options.device, precision=options.precision)
    for w in caught:
        say(f"note: {w.message}", QUIET, err=True)
    from metricanything.models.registry import spec_of

    spec = spec_of(model)
    if options.prompt is not None and not spec.takes_prompt:
        raise InvalidInputError(
            f"--model {model_path} is a prompt-free {spec.kind}, so it cannot use --prompt {options.prompt}; drop "
            "--prompt, or give a teacher checkpoint as --model (with --prompt the default is the bundled teacher)"
        )
    info = model_info(model)
    report.model = model_path
    announced_estimate = False
    video = VideoRun(out_root, options.video, model, options.video_stride, lambda text: say(text, err=True))
    bar = Progress(len(items), "infer", "img", bar=options.progress, lines=False)
    for entry in items:
        if isinstance(entry, tuple):
            item, exc = entry
            video.failed(item)
            report.failed.append((item.name, str(exc)))
            bar.write(f"skipped {item.path}: {exc}")
            bar.update()
            continue
        item = entry
        t0 = time.perf_counter()
        try:
            K, source, origin = video.camera(item, *resolve_intrinsics(item, options.intrinsics))
            prompt, prompt_record = prompt_for(item, options, K)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = infer(model, item.image, intrinsics=K, prompt=prompt, precision=options.precision)
            for w in caught:
                if issubclass(w.category, EstimatedFocalWarning):
                    if not announced_estimate:
                        say(f"warning: {w.message}", QUIET, err=True)
                        announced_estimate = True
                    continue
                bar.write(f"warning ({item.name}): {w.message}", QUIET)
            record: dict = video.frame(item, result)
            if source is not None:
                result.intrinsics_source = source
            else:
                estimated = result.intrinsics_source == IntrinsicsSource.ESTIMATED
                origin = spec.focal_origin if estimated else "fallback"
                if estimated:
                    record["estimated_by"] = {"model": model_path, "kind": spec.kind, "method": spec.focal_estimator}
                    if getattr(model, "fov", None) is not None:  # a FoV head: its measured error
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
                "depth_png_scale_from": "--depth-png-scale" if options.depth_png_scale != PNG_SCALE_MM
                else "default (millimetres)",
                **prompt_record,
            })
            written = write_outputs(out_root / item.name, item.image, result, record, options.no_vis, options.ply,
                                    options.glb, png_scale=options.depth_png_scale)  # fmt: skip
            video.add(item, out_root / item.name, result)
            f = result.intrinsics.fx
            shown = result.depth[result.valid]
            bar.write(
                f"{item.name}: focal {f:.1f} px (hFoV {result.intrinsics.fov_x:.1f} deg) "
                f"from {result.intrinsics_source.value}; depth {shown.min():.2f}-{shown.max():.2f} m"
            )
            bar.write(
                f"  {item.name}: intrinsics from {origin}; {prompt_record.get('prompt_points', 0)} prompt points; "
                f"{', '.join(p.name for p in written)} in {out_root / item.name} ({time.perf_counter() - t0:.2f} s)",
                VERBOSE,
            )
            report.done.append(item.name)
        except MetricAnythingError as exc:
            video.failed(item)
            report.failed.append((item.name, str(exc)))
            bar.write(f"failed {item.path}: {exc}")
        bar.update()
    bar.close()
    video.finish()
    return report
