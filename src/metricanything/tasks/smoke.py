"""``metricanything smoke``: a seconds-long end-to-end check of the geometry and file layer.

Synthesises an analytic scene (a tilted plane behind a sphere), writes and reads the depth in every format,
checks the round trips, unprojects / projects / splats, scores a perturbed prediction and writes a PLY and a
GLB. Returns 1 if any check fails.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metricanything import depth_io, metrics, pointcloud
from metricanything.camera import Intrinsics, pixel_grid, project, splat_points_to_depth, unproject
from metricanything.tasks.options import option


@dataclass
class SmokeOptions:
    """What ``metricanything smoke`` takes: where to keep the files (None: a temporary folder) and the size."""

    out: Path | None = option("--out", None)
    width: int = option("--width", 128)
    height: int = option("--height", 96)


def synthetic_scene(K: Intrinsics) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact z-depth, validity and an RGB image of a tilted plane with a sphere in front of it."""
    u, v = pixel_grid(K.width, K.height)
    rays = np.stack([(u - K.cx) / K.fx, (v - K.cy) / K.fy, np.ones_like(u)], axis=-1)  # z component 1: t = depth
    normal = np.array([0.0, -0.4, 1.0])  # plane n . X = c, tilted so depth grows towards the top
    with np.errstate(divide="ignore"):
        z_plane = 4.0 / (rays @ normal)
    z_plane[~(z_plane > 0)] = np.inf
    centre, radius = np.array([0.3, 0.1, 2.5]), 0.6
    b = rays @ centre
    a = np.einsum("hwc,hwc->hw", rays, rays)
    disc = b * b - a * (centre @ centre - radius**2)
    with np.errstate(invalid="ignore"):
        z_sphere = np.where(disc >= 0, (b - np.sqrt(np.maximum(disc, 0))) / a, np.inf)
    depth = np.minimum(z_plane, z_sphere)
    valid = np.isfinite(depth) & (depth > 0) & (depth < 30.0)
    on_sphere = z_sphere < z_plane
    checker = ((np.floor(u / 8) + np.floor(v / 8)) % 2).astype(np.float64)
    image = np.stack([0.3 + 0.5 * checker, 0.4 + 0.2 * on_sphere, 0.8 - 0.5 * on_sphere], axis=-1)
    image = (255 * np.clip(image, 0, 1) * valid[..., None]).astype(np.uint8)
    return np.where(valid, depth, 0).astype(np.float32), valid, image


def run(options: SmokeOptions) -> int:
    """Run every check, printing one line each; 0 when all pass, 1 otherwise."""
    start = time.perf_counter()
    print("metricanything smoke: a seconds-long SMOKE JOB of the geometry/file layer (not a training run)")
    if options.out is None:
        with tempfile.TemporaryDirectory(prefix="metricanything-smoke-") as tmp:
            status = _run_in(Path(tmp), options)
    else:
        status = _run_in(Path(options.out), options)
    print(f"smoke {'PASSED' if status == 0 else 'FAILED'} in {time.perf_counter() - start:.2f} s")
    return status


def _run_in(out: Path, options: SmokeOptions) -> int:
    out.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []

    def check(name: str, ok: bool, detail: str) -> None:
        print(f"  [{'ok' if ok else 'FAIL'}] {name}: {detail}")
        if not ok:
            failures.append(name)

    K = Intrinsics.from_fov(60.0, options.width, options.height)
    depth, valid, image = synthetic_scene(K)
    print(f"  scene: {K.width}x{K.height}, fx={K.fx:.2f}, {int(valid.sum())} valid pixels, "
          f"depth {depth[valid].min():.3f}-{depth[valid].max():.3f} m")  # fmt: skip

    for ext in ("npy", "npz", "pfm"):
        depth_io.write_depth(out / f"depth.{ext}", depth, valid)
        d2, v2 = depth_io.read_depth(out / f"depth.{ext}")
        check(f"depth .{ext}", np.array_equal(v2, valid) and np.array_equal(d2, depth), "bit-exact round trip")
    for label, scale in (("mm", depth_io.PNG_SCALE_MM), ("kitti", depth_io.PNG_SCALE_KITTI)):
        path = out / f"depth_{label}.png"
        depth_io.write_depth(path, depth, valid, scale=scale)
        d2, v2 = depth_io.read_depth(path, scale=scale)
        err = float(np.abs(d2 - depth)[valid].max())
        check(f"depth 16-bit PNG ({label})", np.array_equal(v2, valid) and err <= scale / 2 + 1e-6,
              f"max error {err * 1000:.3f} mm (quantisation {scale * 500:.3f} mm)")  # fmt: skip
    if depth_io.exr_available():
        depth_io.write_depth(out / "depth.exr", depth, valid)
        d2, v2 = depth_io.read_depth(out / "depth.exr")
        check("depth .exr", np.array_equal(d2, depth), "bit-exact round trip")
    else:
        print("  [skip] depth .exr: this OpenCV build has no OpenEXR support")

    depth_io.write_image(out / "image.png", image)
    check("image PNG", np.array_equal(depth_io.read_image(out / "image.png"), image), "lossless round trip")
    depth_io.write_intrinsics_json(out / "intrinsics.json", K)
    check("intrinsics JSON", depth_io.read_intrinsics_json(out / "intrinsics.json").isclose(K), "round trip")

    pts = unproject(depth, K)
    uv, _ = project(pts[valid], K)
    u, v = pixel_grid(K.width, K.height)
    err_px = float(np.abs(uv - np.stack([u[valid], v[valid]], axis=-1)).max())
    check("project(unproject)", err_px < 1e-4, f"max pixel error {err_px:.2e} px")
    splat, splat_valid = splat_points_to_depth(pts[valid], K)
    check("z-buffer splat", np.array_equal(splat_valid, valid) and np.array_equal(splat[valid], depth[valid]),
          "re-rendered depth equals the original")  # fmt: skip

    rng = np.random.default_rng(0)
    pred = (depth * 1.07 * np.exp(rng.normal(0, 0.02, depth.shape))).astype(np.float32)
    raw = metrics.compute_metrics(pred, depth, valid)
    med = metrics.compute_metrics(pred, depth, valid, alignment="median")
    check("metrics", raw["abs_rel"] > med["abs_rel"] and med["delta1"] == 1.0 and abs(med["scale"] - 1 / 1.07) < 0.01,
          f"AbsRel {raw['abs_rel']:.4f} raw -> {med['abs_rel']:.4f} median-aligned, "
          f"delta1 {raw['delta1']:.3f} -> {med['delta1']:.3f}, scale {med['scale']:.4f}")  # fmt: skip

    edges = pointcloud.depth_edge_mask(depth, valid)
    cloud, colors = pointcloud.depth_to_point_cloud(depth, valid, K, image)
    pointcloud.write_ply(out / "cloud.ply", cloud, colors)
    back, back_colors = pointcloud.read_ply(out / "cloud.ply")
    check("PLY", np.array_equal(back, cloud) and np.array_equal(back_colors, colors),
          f"{len(cloud)} points ({int(edges.sum())} edge pixels dropped), exact round trip")  # fmt: skip
    pointcloud.write_glb(out / "cloud.glb", cloud, colors)
    check("GLB", (out / "cloud.glb").stat().st_size > 12 * len(cloud), f"{(out / 'cloud.glb').stat().st_size} bytes")
    print(f"  files in {out}" if options.out is not None else "  (files were written to a temporary folder)")
    if failures:
        print(f"  {len(failures)} check(s) failed: {', '.join(failures)}")
        return 1
    return 0


__all__ = ["SmokeOptions", "run", "synthetic_scene"]
