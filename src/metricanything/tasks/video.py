"""Videos in ``metricanything infer``: one camera per clip, optional scale anchoring, and a depth video.

``infer`` runs frame by frame (see :mod:`metricanything.tasks.infer`); this module keeps what spans a clip:

* **One camera for the clip.** Intrinsics from flags or a sidecar (``clip.json`` next to ``clip.mp4``) hold for
  every frame. Without them, a model with a FoV head estimates the focal ONCE: the median of its estimates on
  up to :data:`FOCAL_FRAMES` evenly spaced frames of the clip, used for every frame (``source: estimated``).
  Per-frame estimates would make the metric scale flicker with the estimate (depth scales with the focal).
  The camera is announced once per clip on stderr and recorded in every frame's ``intrinsics.json`` and in
  ``<clip>_video.json``, an estimate with the sampled frames, their estimates and their spread.
* **Scale anchoring** (``--video-scale-anchor N``, off by default): each frame's depth is multiplied by the
  median over its valid pixels of ``reference / depth``, where ``reference`` is the per-pixel median of the
  last ``N`` (already anchored) frames, so the scale follows the first frames of the clip rather than each
  frame's own estimate. It assumes the view changes little over ``N`` frames (a slowly moving camera); the
  factor of every frame is recorded. The first frame keeps its scale (factor 1).
* **A depth video** ``<clip>_depth.mp4`` (MPEG-4 Part 2, ``mp4v``; ``<clip>_depth.avi`` with Motion-JPEG
  where this OpenCV cannot write mp4v), next to the per-frame folders: one video frame per processed frame
  (the input's frame count, or with ``--video-stride S`` every S-th frame, at the input's frame rate / S), each
  coloured as :func:`metricanything.vis.colorize_depth` on ONE range for the whole clip: the 1st-99th
  percentile of the valid depth of all its frames (computed once every frame is written, from up to
  :data:`RANGE_SAMPLES` pixels per frame). A frame that failed is black. The range is in ``<clip>_video.json``
  and drawn in the legend ``<clip>_depth_colorbar.png``.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from metricanything.atomic import write_text_atomic
from metricanything.camera import Intrinsics, IntrinsicsSource
from metricanything.errors import InputFileError, InvalidInputError
from metricanything.models.registry import estimates_focal
from metricanything.tasks.options import option

#: at most this many evenly spaced frames of a clip are used to estimate its focal
FOCAL_FRAMES = 8
#: at most this many valid pixels per frame enter the clip's colour range
RANGE_SAMPLES = 20_000
#: the depth video's codec and container, in order of preference: (fourcc, file suffix)
CODECS = (("mp4v", ".mp4"), ("MJPG", ".avi"))
#: the scale anchor compares frames on a grid of at most this many pixels along the longer side
ANCHOR_GRID = 256


@dataclass
class VideoOptions:
    """What ``infer`` does across the frames of a clip (see the module docstring)."""

    scale_anchor: int = option("--video-scale-anchor", 0)
    depth_video: bool = option("--no-depth-video", True, invert=True)

    def __post_init__(self) -> None:
        if not isinstance(self.scale_anchor, int) or self.scale_anchor < 0:
            raise InvalidInputError(f"--video-scale-anchor {self.scale_anchor}: give a number of frames >= 0 (0 = off)")


# ---------------------------------------------------------------------------------------------- reading frames
def _capture(path: Path):
    import cv2  # noqa: PLC0415

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise InputFileError(path, "OpenCV cannot open this video")
    return cap


def video_facts(path: Path) -> tuple[int, float]:
    """(number of decodable frames, frames per second; 0 when the container does not say) of a video."""
    import cv2  # noqa: PLC0415

    cap = _capture(path)
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        n = 0
        while cap.grab():  # the container's frame count can be wrong: count what decodes
            n += 1
    finally:
        cap.release()
    return n, fps if math.isfinite(fps) and fps > 0 else 0.0


def evenly_spaced_frames(path: Path, k: int = FOCAL_FRAMES, stride: int = 1) -> list[tuple[int, np.ndarray]]:
    """Up to ``k`` frames spread evenly over the clip (among every ``stride``-th frame): ``(index, RGB uint8)``."""
    n, _ = video_facts(path)
    candidates = list(range(0, n, max(1, stride)))
    if not candidates:
        raise InputFileError(path, "video has no readable frames")
    wanted = sorted({candidates[round(i)] for i in np.linspace(0, len(candidates) - 1, min(k, len(candidates)))})
    cap, out, index = _capture(path), [], 0
    try:
        while wanted and index <= wanted[-1] and cap.grab():
            if index in wanted:
                ok, frame = cap.retrieve()
                if ok:
                    out.append((index, np.ascontiguousarray(frame[:, :, ::-1])))
            index += 1
    finally:
        cap.release()
    return out


# ---------------------------------------------------------------------------------------------- the camera
@dataclass
class ClipCamera:
    """The camera of a whole clip, where it came from, and (for an estimate) how it was made."""

    intrinsics: Intrinsics | None  # None: the model's fallback (no FoV head, nothing given)
    source: IntrinsicsSource | None
    origin: str
    estimate: dict[str, Any] | None = None

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source.value if self.source else "fallback", "origin": self.origin}
        if self.intrinsics is not None:
            out.update(self.intrinsics.to_dict())
        if self.estimate:
            out["estimate"] = self.estimate
        return out


def estimate_clip_camera(model: Any, path: Path, stride: int = 1, k: int = FOCAL_FRAMES) -> ClipCamera:
    """The FoV head's focal for a whole clip: the median of its estimates on up to ``k`` evenly spaced frames
    (square pixels, centred principal point); the record lists the frames, the estimates and their spread."""
    from metricanything.api import EstimatedFocalWarning  # noqa: PLC0415
    from metricanything.tasks.intrinsics import estimate_intrinsics  # noqa: PLC0415

    frames = evenly_spaced_frames(path, k, stride)
    focals = []
    with warnings.catch_warnings():  # announced once for the clip by the caller, with the spread
        warnings.simplefilter("ignore", EstimatedFocalWarning)
        for _, rgb in frames:
            focals.append(float(estimate_intrinsics(model, rgb).focal_px))
    h, w = frames[0][1].shape[:2]
    f = float(np.median(focals))
    K = Intrinsics.from_focal(f, w, h)
    estimate = {
        "method": f"median of the FoV head's focal on {len(frames)} evenly spaced frames",
        "frames": [i for i, _ in frames], "focal_px": focals, "median_focal_px": f,
        "min_focal_px": min(focals), "max_focal_px": max(focals),
        "spread_rel": (max(focals) - min(focals)) / f, "fov_x_deg": K.fov_x,
    }  # fmt: skip
    return ClipCamera(K, IntrinsicsSource.ESTIMATED, estimate["method"], estimate)


# ---------------------------------------------------------------------------------------------- scale anchoring
def anchor_factor(depth: np.ndarray, valid: np.ndarray, history: list[np.ndarray]) -> float:
    """The factor that brings ``depth`` to the scale of ``history`` (earlier frames on the anchor grid, NaN where
    not valid): the median over pixels valid in both of (per-pixel median of ``history``) / ``depth``; 1 when
    there is no history or fewer than 16 such pixels."""
    if not history:
        return 1.0
    d = _grid(np.where(valid, depth, np.nan))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels
        ref = np.nanmedian(np.stack(history), axis=0)
    m = np.isfinite(ref) & np.isfinite(d) & (d > 0) & (ref > 0)
    return float(np.median(ref[m] / d[m])) if m.sum() >= 16 else 1.0


def _grid(a: np.ndarray) -> np.ndarray:
    step = max(1, math.ceil(max(a.shape) / ANCHOR_GRID))
    return np.asarray(a[::step, ::step], dtype=np.float32)


# ---------------------------------------------------------------------------------------------- the depth video
def open_video_writer(path_stem: Path, fps: float, size: tuple[int, int]) -> tuple[Any, Path, str, Path]:
    """A cv2.VideoWriter for the first codec of :data:`CODECS` this OpenCV can write: (writer, final path,
    fourcc, temporary path). The file is written under a temporary name and renamed by the caller."""
    import cv2  # noqa: PLC0415

    for fourcc, suffix in CODECS:
        final = path_stem.with_name(path_stem.name + suffix)
        tmp = final.with_name(f".{final.name}.tmp{suffix}")
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*fourcc), fps, size)
        if writer.isOpened():
            return writer, final, fourcc, tmp
        writer.release()
        tmp.unlink(missing_ok=True)
    raise InvalidInputError(f"this OpenCV build can write none of the codecs {[c for c, _ in CODECS]}; use --no-depth-video")


def write_depth_video(path_stem: Path, frames: list[Path | None], size: tuple[int, int], fps: float,
                      lo: float, hi: float) -> tuple[Path, str]:  # fmt: skip
    """Write ``frames`` (``depth.npy`` files; None = a black frame) coloured on ONE range (lo, hi) as a video
    ``path_stem`` + the codec's suffix; returns (path, fourcc)."""
    from metricanything.vis import colorize_depth  # noqa: PLC0415

    w, h = size
    writer, final, fourcc, tmp = open_video_writer(path_stem, fps if fps > 0 else 10.0, (w, h))
    try:
        for f in frames:
            if f is None or not f.is_file():
                rgb = np.zeros((h, w, 3), np.uint8)
            else:
                d = np.load(f, allow_pickle=False)
                rgb = colorize_depth(d, np.isfinite(d) & (d > 0), lo, hi)
            writer.write(np.ascontiguousarray(rgb[:, :, ::-1]))
        writer.release()
        tmp.replace(final)
    finally:
        writer.release()
        tmp.unlink(missing_ok=True)
    return final, fourcc


# ---------------------------------------------------------------------------------------------- one infer run
@dataclass
class _Clip:
    path: Path
    camera: ClipCamera | None = None
    announced: bool = False
    frames: dict[int, Path | None] = field(default_factory=dict)  # frame index -> depth.npy (None: failed)
    samples: list[np.ndarray] = field(default_factory=list)
    history: list[np.ndarray] = field(default_factory=list)
    factors: dict[int, float] = field(default_factory=dict)
    size: tuple[int, int] | None = None
    used: dict[str, Any] | None = None  # the camera the frames were run with (as recorded)


class VideoRun:
    """The clips of one ``infer`` run. ``run_inference`` calls, per video frame: :meth:`camera` (after the
    flags / sidecar were looked up), :meth:`frame` (after inference), :meth:`add` (after writing) or
    :meth:`failed`; and :meth:`finish` once at the end."""

    def __init__(self, out_root: Path, options: VideoOptions, model: Any, stride: int,
                 say: Callable[[str], None]) -> None:  # fmt: skip
        from metricanything.api import model_info  # noqa: PLC0415

        self.out_root, self.options, self.model, self.stride = Path(out_root), options, model, max(1, int(stride))
        self.say, self.info = say, model_info(model)
        self.clips: dict[Path, _Clip] = {}

    def _clip(self, item: Any) -> _Clip:
        return self.clips.setdefault(item.path, _Clip(item.path))

    def camera(self, item: Any, K: Intrinsics | None, source: IntrinsicsSource | None,
               origin: str) -> tuple[Intrinsics | None, IntrinsicsSource | None, str]:  # fmt: skip
        """The camera for a frame: the given/sidecar one as resolved, else the clip's (estimated once)."""
        if item.frame is None:
            return K, source, origin
        clip = self._clip(item)
        if clip.camera is None:
            if K is not None:
                clip.camera = ClipCamera(K, source, origin)
            elif estimates_focal(self.model):
                clip.camera = estimate_clip_camera(self.model, item.path, self.stride)
            else:
                clip.camera = ClipCamera(None, None, "the model's fallback focal (it has no FoV head; give --fx or a sidecar)")
        if not clip.announced:
            clip.announced = True
            self.say(self._announcement(clip))
        if K is None and clip.camera.intrinsics is not None:
            return clip.camera.intrinsics, clip.camera.source, clip.camera.origin
        return K, source, origin

    def _announcement(self, clip: _Clip) -> str:
        c = clip.camera
        if c.intrinsics is None:
            return f"{clip.path.name}: one camera for the clip: {c.origin}"
        text = (f"{clip.path.name}: one camera for the clip: fx {c.intrinsics.fx:.1f} px (hFoV {c.intrinsics.fov_x:.1f} "
                f"deg) from {c.source.value} ({c.origin})")  # fmt: skip
        if c.estimate:
            e = c.estimate
            text += (f"; per-frame estimates {e['min_focal_px']:.1f}-{e['max_focal_px']:.1f} px "
                     f"(spread {100 * e['spread_rel']:.1f}%) on frames {e['frames']}")  # fmt: skip
            text += f"; FoV head: {self.info.fov_head_error_text()}"
        return text

    def frame(self, item: Any, result: Any) -> dict[str, Any]:
        """Scale-anchor a frame's result in place (``--video-scale-anchor``); returns the facts its
        ``intrinsics.json`` records: the clip, the frame, the clip's camera (an estimate with its spread and the
        FoV head's measured error) and the anchoring factor."""
        if item.frame is None:
            return {}
        clip = self._clip(item)
        camera = clip.camera.record() if clip.camera else {}
        record: dict[str, Any] = {"video": {"clip": str(item.path), "frame": item.frame, "camera": "one for the clip",
                                            "clip_camera": camera}}  # fmt: skip
        if clip.camera is not None and clip.camera.estimate:
            record.update(self.info.fov_head_error_record())
        n = self.options.scale_anchor
        if n:
            factor = anchor_factor(result.depth, result.valid, clip.history)
            result.depth = (np.asarray(result.depth, np.float32) * np.float32(factor)).astype(np.float32)
            result._points = None  # noqa: SLF001 - the cached points were for the unscaled depth
            clip.history = [*clip.history, _grid(np.where(result.valid, result.depth, np.nan))][-n:]
            clip.factors[item.frame] = factor
            record["video"]["scale_anchor"] = {"frames": n, "factor": factor}
        return record

    def add(self, item: Any, folder: Path, result: Any) -> None:
        """A frame was written into ``folder``: keep its place in the depth video and a sample of its depth."""
        if item.frame is None:
            return
        clip = self._clip(item)
        clip.frames[item.frame] = folder / "depth.npy"
        clip.size = (result.depth.shape[1], result.depth.shape[0])
        d = np.asarray(result.depth)[np.asarray(result.valid, bool)]
        d = d[np.isfinite(d) & (d > 0)]
        clip.samples.append(d[:: max(1, d.size // RANGE_SAMPLES)])
        K = result.intrinsics
        clip.used = clip.used or {**K.to_dict(), "source": result.intrinsics_source.value}

    def failed(self, item: Any) -> None:
        if item.frame is not None:
            self._clip(item).frames.setdefault(item.frame, None)

    def finish(self) -> list[Path]:
        """Write each clip's depth video, legend and ``<clip>_video.json``; returns the files written."""
        from metricanything.vis import save_depth_colorbar  # noqa: PLC0415

        written: list[Path] = []
        for clip in self.clips.values():
            stem = self.out_root / clip.path.stem
            n_in, fps = video_facts(clip.path)
            order = sorted(clip.frames)
            record: dict[str, Any] = {
                "input": str(clip.path), "frames_in_input": n_in, "fps_in": fps or None, "stride": self.stride,
                "frames": len(order), "failed_frames": [i for i in order if clip.frames[i] is None],
                "camera": {**(clip.camera.record() if clip.camera else {}), "used": clip.used},
                "scale_anchor": ({"frames": self.options.scale_anchor, "factors": [clip.factors.get(i) for i in order],
                                  "method": "median of (per-pixel median of the last N anchored frames) / depth"}
                                 if self.options.scale_anchor else None),
            }  # fmt: skip
            samples = np.concatenate(clip.samples) if clip.samples else np.zeros(0)
            if self.options.depth_video and clip.size is not None and samples.size:
                lo, hi = (float(x) for x in np.percentile(samples, (1, 99)))
                hi = max(hi, lo * 1.01)
                path, fourcc = write_depth_video(Path(f"{stem}_depth"), [clip.frames[i] for i in order], clip.size,
                                                 fps / self.stride if fps else 0.0, lo, hi)  # fmt: skip
                legend = save_depth_colorbar(Path(f"{stem}_depth_colorbar.png"), lo, hi)
                written += [path, legend]
                record["depth_video"] = {
                    "path": path.name, "codec": fourcc, "frames": len(order), "fps": (fps / self.stride) if fps else 10.0,
                    "colour_range_m": [lo, hi], "legend": legend.name,
                    "colours": "log depth between the range ends on TURBO, near = warm (metricanything.vis); black = "
                               "no depth or a failed frame",
                    "range": "1st-99th percentile of the valid depth of all frames of the clip",
                }  # fmt: skip
                self.say(f"{clip.path.name}: depth video {path} ({len(order)} frames, {fourcc}, colours fixed for the clip: "
                         f"{lo:.3g}-{hi:.3g} m, legend {legend.name})")  # fmt: skip
            meta = Path(f"{stem}_video.json")
            write_text_atomic(meta, json.dumps(record, indent=2) + "\n")
            written.append(meta)
        return written


__all__ = ["CODECS", "FOCAL_FRAMES", "ClipCamera", "VideoOptions", "VideoRun", "anchor_factor", "estimate_clip_camera",
           "evenly_spaced_frames", "video_facts", "write_depth_video"]  # fmt: skip
