"""Video input for ``infer``: one camera for the clip, scale anchoring, and a depth video on one colour range."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from metricanything.camera import Intrinsics, IntrinsicsSource
from metricanything.tasks.infer import InferOptions, run_inference
from metricanything.tasks.options import command_line
from metricanything.tasks.video import (
    VideoOptions,
    VideoRun,
    anchor_factor,
    evenly_spaced_frames,
    write_depth_video,
)
from metricanything.vis import colorize_depth

W, H, N, FPS = 64, 48, 6, 5.0


def _read_video(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame[:, :, ::-1])
    cap.release()
    return frames


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A 6-frame 64 x 48 clip of renders: indoor rooms, then streets (different focal lengths and depths)."""
    from metricanything.data.render import render_sample

    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (W, H))
    assert writer.isOpened(), "this OpenCV cannot write mp4v"
    for i in range(N):
        writer.write(np.ascontiguousarray(render_sample(300 + i, "indoor" if i < 3 else "outdoor", size=(W, H)).image[:, :, ::-1]))
    writer.release()
    return path


@pytest.fixture(scope="module")
def estimated(clip, tmp_path_factory):
    """``infer`` on the clip with the bundled student and no intrinsics (its FoV head estimates the focal)."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("out")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        report = run_inference(clip, out, InferOptions(progress=False))
    return out, report, err.getvalue()


@pytest.mark.slow
def test_the_clip_gets_one_estimated_camera_said_once(estimated):
    out, report, stderr = estimated
    assert len(report.done) == N and not report.failed
    meta = [json.loads((out / name / "intrinsics.json").read_text()) for name in report.done]
    video = json.loads((out / "clip_video.json").read_text())
    est = video["camera"]["estimate"]
    # one focal for every frame: the median of the FoV head's estimates on evenly spaced frames
    assert len({(m["fx"], m["fy"], m["cx"], m["cy"]) for m in meta}) == 1
    assert est["frames"] == list(range(N)) and len(est["focal_px"]) == N
    assert meta[0]["fx"] == pytest.approx(np.median(est["focal_px"])) == pytest.approx(video["camera"]["fx"])
    assert est["spread_rel"] == pytest.approx((max(est["focal_px"]) - min(est["focal_px"])) / meta[0]["fx"])
    assert est["spread_rel"] > 0  # per-frame estimates differ: per-frame focal lengths would make the scale flicker
    assert all(m["source"] == "estimated" and "median of the FoV head" in m["intrinsics_origin"] for m in meta)
    assert all(m["video"]["frame"] == i and m["video"]["clip_camera"]["estimate"] == est for i, m in enumerate(meta))
    assert all("fov_head_error_deg" in m for m in meta)
    assert video["camera"]["source"] == "estimated" and video["camera"]["used"]["source"] == "estimated"
    # said once for the clip on stderr, with the spread; no per-frame focal warning
    assert stderr.count("one camera for the clip") == 1 and "per-frame estimates" in stderr
    assert "focal length estimated by the model" not in stderr


@pytest.mark.slow
def test_depth_video_has_every_frame_on_one_colour_range(estimated):
    out, report, _ = estimated
    video = json.loads((out / "clip_video.json").read_text())
    dv = video["depth_video"]
    assert dv["path"] == "clip_depth.mp4" and dv["codec"] == "mp4v" and (out / "clip_depth_colorbar.png").is_file()
    frames = _read_video(out / "clip_depth.mp4")
    assert len(frames) == N == video["frames"] == video["frames_in_input"] and frames[0].shape == (H, W, 3)
    lo, hi = dv["colour_range_m"]
    depths = [np.load(out / name / "depth.npy") for name in report.done]
    pooled = np.concatenate([d[d > 0] for d in depths])
    assert (lo, hi) == (pytest.approx(np.percentile(pooled, 1), rel=1e-3), pytest.approx(np.percentile(pooled, 99), rel=1e-3))
    def blocks(rgb: np.ndarray) -> np.ndarray:  # 8 x 8 means: what the lossy codec keeps of a noisy depth map
        return rgb.astype(float).reshape(H // 8, 8, W // 8, 8, 3).mean(axis=(1, 3))

    for d, got in zip(depths, frames, strict=True):  # each frame is the depth coloured on the clip's range
        assert np.abs(blocks(got) - blocks(colorize_depth(d, d > 0, lo, hi))).mean() < 6


def test_colours_are_fixed_for_the_clip_a_pixel_of_constant_depth_keeps_its_colour(tmp_path):
    rng = np.random.default_rng(0)
    files = []
    for i, far in enumerate((4.0, 40.0, 8.0, 400.0)):  # each frame has a very different range ...
        d = rng.uniform(1.0, far, (H, W)).astype(np.float32)
        d[10:20, 10:30] = 3.0  # ... and a patch at 3 m in every frame
        np.save(tmp_path / f"{i}.npy", d)
        files.append(tmp_path / f"{i}.npy")
    files.append(None)  # a failed frame
    path, fourcc = write_depth_video(tmp_path / "depth", files, (W, H), FPS, 1.0, 400.0)
    frames = _read_video(path)
    assert path.name == "depth.mp4" and fourcc == "mp4v" and len(frames) == 5
    patch = np.array([f[12:18, 12:28].reshape(-1, 3).mean(axis=0) for f in frames[:4]])
    assert np.abs(patch - patch[0]).max() < 6  # the same colour in every frame
    assert np.abs(patch[0] - colorize_depth(np.array([[3.0]]), np.ones((1, 1), bool), 1.0, 400.0)[0, 0]).max() < 8
    assert frames[4].max() < 12  # the failed frame is black
    # with each frame on its own range the patch would change colour: the test can tell the difference
    own = [colorize_depth(np.load(f), np.ones((H, W), bool))[15, 20].astype(int) for f in files[:4]]
    assert max(np.abs(c - own[0]).max() for c in own) > 60


def test_stride_and_a_sidecar_camera(clip, tmp_path):
    (clip.parent / "clip.json").write_text(json.dumps({"fx": 70.0, "fy": 70.0, "cx": 31.5, "cy": 23.5}))
    try:
        report = run_inference(clip, tmp_path, InferOptions(progress=False, video_stride=4))
    finally:
        (clip.parent / "clip.json").unlink()
    assert report.done == ["clip_f000000", "clip_f000004"]
    video = json.loads((tmp_path / "clip_video.json").read_text())
    assert video["stride"] == 4 and video["frames"] == 2 and video["frames_in_input"] == N
    assert video["camera"]["source"] == "sidecar" and "estimate" not in video["camera"] and video["camera"]["fx"] == 70.0
    assert video["depth_video"]["fps"] == pytest.approx(FPS / 4) and len(_read_video(tmp_path / "clip_depth.mp4")) == 2
    assert all(json.loads((tmp_path / n / "intrinsics.json").read_text())["source"] == "sidecar" for n in report.done)


def test_evenly_spaced_frames(clip):
    got = evenly_spaced_frames(clip, k=3)
    assert [i for i, _ in got] == [0, 2, 5] and got[0][1].shape == (H, W, 3) and got[0][1].dtype == np.uint8
    assert [i for i, _ in evenly_spaced_frames(clip, k=8, stride=2)] == [0, 2, 4]


def _result(depth: np.ndarray) -> SimpleNamespace:
    return SimpleNamespace(depth=depth.astype(np.float32), valid=depth > 0, _points=None,
                           intrinsics=Intrinsics.from_focal(50.0, W, H), intrinsics_source=IntrinsicsSource.GIVEN)  # fmt: skip


def test_scale_anchor_brings_each_frame_to_the_scale_of_the_last_frames(tmp_path):
    base = np.random.default_rng(1).uniform(1.0, 10.0, (H, W)).astype(np.float32)
    base[:5] = 0  # not valid
    run = VideoRun(tmp_path, VideoOptions(scale_anchor=2), model=None, stride=1, say=lambda _: None)
    got = []
    for i, scale in enumerate((1.0, 2.0, 0.5, 1.25)):
        item = SimpleNamespace(path=tmp_path / "c.mp4", frame=i, name=f"c_f{i}")
        res = _result(base * scale)
        record = run.frame(item, res)
        got.append((record["video"]["scale_anchor"]["factor"], res.depth))
    for _, depth in got:
        np.testing.assert_allclose(depth, base, rtol=1e-5)  # every frame back on the first frame's scale
    assert [round(f, 5) for f, _ in got] == [1.0, 0.5, 2.0, 0.8]
    assert anchor_factor(base, base > 0, []) == 1.0  # nothing to anchor to
    assert VideoOptions().scale_anchor == 0  # off by default
    with pytest.raises(Exception, match="video-scale-anchor"):
        VideoOptions(scale_anchor=-1)


def test_video_flags_round_trip_through_the_cli_parser():
    from metricanything.cli import infer as cli

    opts = InferOptions(video_stride=2, video=VideoOptions(scale_anchor=5, depth_video=False), progress=False)
    line = command_line("infer", opts, "-i", "clip.mp4", "-o", "out")
    assert "--video-scale-anchor 5" in line and "--no-depth-video" in line
    parser = argparse.ArgumentParser()
    cli.configure(parser)
    assert cli.options(parser.parse_args(shlex.split(line)[2:])) == opts
