"""``metricanything infer``: metric depth for images, folders, globs or videos, optionally with a prompt."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--input", required=True, help="image, folder, glob (quote it) or video")
    parser.add_argument("-o", "--out", required=True, type=Path, help="output folder (one sub-folder per image)")
    parser.add_argument(
        "--model",
        help="checkpoint folder, official .pt (student_depthmap.pt or student_pointmap.pt: the kind is read from "
        "the file's keys), or hub id (default: bundled teacher with --prompt, bundled student "
        "otherwise; the bundled student is a synthetic-data demonstrator: for real images use the official "
        "student_depthmap.pt or yjh001/metricanything_student_depthmap)",
    )
    parser.add_argument(
        "--prompt",
        type=Path,
        help="sparse depth: .npy/16-bit PNG (mm) map, .csv/.npy of u,v,z points, LiDAR .bin/.npy (with --lidar-calib); "
        "or a folder holding <image stem>.<ext> per image",
    )
    parser.add_argument("--lidar-calib", type=Path, help='JSON {"T_cam_lidar": 4x4, "point_dims": 4} for LiDAR prompts')
    parser.add_argument(
        "--fx", type=float,
        help="focal length in pixels of the input image, not mm (fy defaults to fx); must give a field of view "
        "of 5-170 deg",
    )
    parser.add_argument("--fy", type=float, help="vertical focal length in pixels (default: --fx)")
    parser.add_argument("--cx", type=float, help="principal point x in pixels, inside the image (default: its centre)")
    parser.add_argument("--cy", type=float, help="principal point y in pixels, inside the image (default: its centre)")
    parser.add_argument("--fov-x", type=float, help="horizontal field of view in degrees (instead of --fx)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps ...")
    parser.add_argument(
        "--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
        help="fp32 (default); bf16 (CPU or GPU); fp16 (GPU only: refused on the CPU, where it is emulated and slow)",
    )
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--video-stride", type=int, default=1,
                        help="process every N-th video frame (the depth video then has every N-th frame, at the input's "
                        "frame rate / N)")  # fmt: skip
    parser.add_argument(
        "--video-scale-anchor", type=int, default=0, metavar="N",
        help="videos: rescale each frame's depth by the median ratio to the per-pixel median of the last N frames, so "
        "the metric scale stays that of the first frames (assumes a slowly changing view; 0 = off, the default)",
    )  # fmt: skip
    parser.add_argument(
        "--no-depth-video", action="store_true",
        help="videos: skip <clip>_depth.mp4 (colours fixed for the whole clip: 1st-99th percentile of all its frames)",
    )
    parser.add_argument("--ply", action="store_true", help="also write an edge-filtered coloured PLY point cloud")
    parser.add_argument("--glb", action="store_true", help="also write a GLB point cloud")
    parser.add_argument("--no-vis", action="store_true", help="skip the colourised depth PNG")
    parser.add_argument(
        "--depth-png-scale", type=float, default=0.001, metavar="METRES",
        help="metres per unit of every depth.png of the run (default 0.001 = millimetres, up to 65.535 m; 0.002 "
        "holds 131 m, 0.01 655 m); an image deeper than that fails with the value that fits",
    )
    parser.add_argument(
        "--prompt-png-scale", type=float, default=None, metavar="METRES",
        help="metres per unit of a 16-bit PNG prompt (default: the depth_png_scale_m of an intrinsics.json beside "
        "it, i.e. an infer output folder, else millimetres)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress; print only errors and the summary")


def options(args: argparse.Namespace) -> Any:
    from metricanything.tasks.infer import InferOptions, IntrinsicsOptions
    from metricanything.tasks.video import VideoOptions

    return InferOptions(
        model=args.model, prompt=args.prompt, lidar_calib=args.lidar_calib,
        intrinsics=IntrinsicsOptions(args.fx, args.fy, args.cx, args.cy, args.fov_x), device=args.device,
        precision=args.precision, batch_size=args.batch_size, ply=args.ply, glb=args.glb, no_vis=args.no_vis,
        video_stride=args.video_stride, video=VideoOptions(args.video_scale_anchor, not args.no_depth_video),
        progress=not args.quiet, depth_png_scale=args.depth_png_scale, prompt_png_scale=args.prompt_png_scale,
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from metricanything.tasks.infer import run_inference

    report = run_inference(args.input, args.out, options(args))
    print(f"{len(report.done)} done, {len(report.failed)} failed; outputs in {args.out} (model: {report.model})")
    for name, message in report.failed:
        print(f"  FAILED {name}: {message}", file=sys.stderr)
    return 1 if report.failed else 0
