"""Row/column anisotropy of a student's depth on real photographs (the "striped depth" check).

Runs the public ``infer`` path (:func:`metricanything.tasks.infer.run_inference`, what ``metricanything infer``
runs) of the bundled student (or ``--model``) on five photographs shipped with scikit-image (astronaut,
coffee, chelsea, rocket, the left view of ``stereo_motorcycle``; no download needed) and on a flat grey image,
writes every output (``depth.npy``, ``depth_vis.png``, ...) under ``--out`` and prints per image:

* ``aniso``: mean |row-to-row change| / mean |column-to-column change| of the depth map (metres; pixel pairs
  with both ends valid). Horizontal bands make it >> 1. Target: <= 2 on every photo.
* ``aniso_rot``: the same on the output for the photo rotated by 90 deg, measured in the rotated frame. Image
  structure rotates with the input (aniso_rot ~ 1 / aniso); structure made by the network does not.
* ``net``: sqrt(aniso * aniso_rot), the part of the anisotropy that does not rotate with the image (1 = none).
* ``ply_keep``: fraction of valid pixels that ``--ply`` keeps (``depth_to_point_cloud(drop_edges=True)``);
  bands are depth edges everywhere, so striped maps keep few points.
* ``rel_std``: std / mean of the depth (0 for a perfectly flat map; the grey image's figure).

With ``--real-frames DIR`` (folder-format RGB-D frames, e.g. the project's development frames), it also runs
the monocular protocol there: the given intrinsics, no prompt, all valid pixels, no alignment; per frame
δ1 and AbsRel next to the *oracle constant* (the single depth with the best δ1 for that frame), and the mean δ1
of the model vs the mean oracle δ1. (A report only: nothing is trained or tuned on these frames.)

Usage::

    python benchmarks/student_anisotropy.py                          # bundled student -> runs/student_anisotropy
    python benchmarks/student_anisotropy.py --model runs/student/model --out runs/aniso_mine
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle_left")
GREY_NAME = "flat_grey"


def anisotropy(depth: np.ndarray, valid: np.ndarray) -> float:
    """mean |D[y+1, x] - D[y, x]| / mean |D[y, x+1] - D[y, x]| over pairs of valid pixels."""
    d = np.asarray(depth, dtype=np.float64)
    v = np.asarray(valid, dtype=bool)
    vy = v[1:, :] & v[:-1, :]
    vx = v[:, 1:] & v[:, :-1]
    dy = np.abs(d[1:, :] - d[:-1, :])[vy]
    dx = np.abs(d[:, 1:] - d[:, :-1])[vx]
    if dy.size == 0 or dx.size == 0 or dx.mean() == 0:
        return math.nan
    return float(dy.mean() / dx.mean())


def load_photos() -> dict[str, np.ndarray]:
    """The five scikit-image photographs (uint8 H x W x 3), all shipped with the package (no network)."""
    try:
        import skimage.data as data
    except ImportError as exc:  # pragma: no cover - optional benchmark dependency
        raise SystemExit("this benchmark needs scikit-image: pip install -c constraints.txt scikit-image") from exc
    return {
        "astronaut": data.astronaut(),
        "coffee": data.coffee(),
        "chelsea": data.chelsea(),
        "rocket": data.rocket(),
        "motorcycle_left": data.stereo_motorcycle()[0],
    }


def _write_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(np.ascontiguousarray(image)).save(path)


def _infer_folder(images: dict[str, np.ndarray], out: Path, model: str | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``run_inference`` on ``images`` written as PNGs; returns name -> (depth, valid) read back from depth.npy."""
    from metricanything.depth_io import read_depth
    from metricanything.tasks.infer import InferOptions, run_inference

    with tempfile.TemporaryDirectory() as tmp:
        for name, im in images.items():
            _write_png(Path(tmp) / f"{name}.png", im)
        report = run_inference(tmp, out, InferOptions(model=model, progress=False))
    if report.failed:
        raise SystemExit(f"infer failed: {report.failed}")
    result = {}
    for name in images:
        depth, valid = read_depth(out / name / "depth.npy")
        result[name] = (depth, valid)
    return result


def run(model: str | None, out: Path) -> list[dict[str, float | str]]:
    from metricanything.pointcloud import depth_edge_mask

    photos = load_photos()
    grey = np.full((480, 640, 3), 128, dtype=np.uint8)
    upright = dict(photos, **{GREY_NAME: grey})
    rotated = {f"{k}_rot90": np.rot90(v).copy() for k, v in photos.items()}
    res = _infer_folder(upright, out, model)
    res_rot = _infer_folder(rotated, out / "rotated", model)
    rows = []
    for name in upright:
        depth, valid = res[name]
        a = anisotropy(depth, valid)
        row: dict[str, float | str] = {"image": name, "size": f"{depth.shape[1]}x{depth.shape[0]}", "aniso": a}
        if name in photos:
            dr, vr = res_rot[f"{name}_rot90"]
            b = anisotropy(dr, vr)
            row["aniso_rot"] = b
            row["net"] = math.sqrt(a * b)
        else:
            row["aniso_rot"] = row["net"] = math.nan
        d = depth[valid]
        row["rel_std"] = float(d.std() / d.mean()) if d.size else math.nan
        row["ply_keep"] = float((valid & ~depth_edge_mask(depth, valid)).sum() / max(int(valid.sum()), 1))
        row["depth_range_m"] = f"{np.percentile(d, 1):.2f}-{np.percentile(d, 99):.2f}" if d.size else "-"
        rows.append(row)
    return rows


def oracle_constant_delta1(gt: np.ndarray) -> tuple[float, float]:
    """(best single depth c, its δ1): the window [c / 1.25, c * 1.25] holding the most GT depths."""
    lg = np.sort(np.log(gt.astype(np.float64)))
    width = 2 * math.log(1.25)
    ends = np.searchsorted(lg, lg + width, side="right")
    counts = ends - np.arange(lg.size)
    i = int(np.argmax(counts))
    return float(math.exp(lg[i] + 0.5 * width)), float(counts[i] / lg.size)


def real_frames(model: str | None, root: Path) -> list[dict[str, float | str]]:
    """Monocular δ1 / AbsRel of the student on every ``root/<id>/`` frame (image.png, depth.npy, meta.json)."""
    import json

    from PIL import Image

    from metricanything import api
    from metricanything.camera import Intrinsics
    from metricanything.models.bundled import resolve_model

    net = api.load_model(resolve_model(model, "student"))
    rows = []
    for d in sorted(p for p in root.iterdir() if (p / "meta.json").is_file()):
        meta = json.loads((d / "meta.json").read_text(encoding="utf-8"))
        k = meta["intrinsics"]
        K = Intrinsics(fx=k["fx"], fy=k["fy"], cx=k["cx"], cy=k["cy"], width=k["width"], height=k["height"])
        image = np.asarray(Image.open(d / "image.png").convert("RGB"))
        gt = np.load(d / "depth.npy").astype(np.float32)
        valid = np.isfinite(gt) & (gt > 0)
        r = api.infer(net, image, intrinsics=K)
        m = valid & r.valid
        p, g = r.depth[m].astype(np.float64), gt[m].astype(np.float64)
        c, oracle = oracle_constant_delta1(gt[valid])
        rows.append({"frame": d.name, "delta1": float(np.mean(np.maximum(p / g, g / p) < 1.25)),
                     "abs_rel": float(np.mean(np.abs(p - g) / g)), "oracle_delta1": oracle, "oracle_depth": c,
                     "median_pred": float(np.median(p)), "median_gt": float(np.median(g))})  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="student checkpoint (default: the bundled student)")
    ap.add_argument("--out", default="runs/student_anisotropy", help="output folder (one sub-folder per image)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--real-frames", default=None, metavar="DIR",
                    help="also report monocular δ1 on these folder-format RGB-D frames (see above)")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(max(1, args.threads))
    out = Path(args.out)
    rows = run(args.model, out)
    print(f"model: {args.model or 'bundled student'}; outputs (depth_vis.png, ...) under {out}/<image>/")
    print(f"{'image':18s} {'size':>9s} {'aniso':>7s} {'aniso_rot':>9s} {'net':>6s} {'rel_std':>7s} {'ply_keep':>8s}  depth p1-p99 (m)")
    for r in rows:
        print(f"{r['image']:18s} {r['size']:>9s} {r['aniso']:7.2f} {r['aniso_rot']:9.2f} {r['net']:6.2f} "
              f"{r['rel_std']:7.3f} {r['ply_keep']:8.1%}  {r['depth_range_m']}")  # fmt: skip
    photos = [r for r in rows if r["image"] in PHOTOS]
    worst = max(float(r["aniso"]) for r in photos)
    print(f"max anisotropy over the {len(photos)} photos: {worst:.2f} (target <= 2): {'PASS' if worst <= 2 else 'FAIL'}")
    if args.real_frames:
        frames = real_frames(args.model, Path(args.real_frames))
        print(f"\nmonocular, given intrinsics, no alignment ({len(frames)} frames under {args.real_frames}):")
        print(f"{'frame':18s} {'δ1':>6s} {'AbsRel':>7s} {'oracle δ1':>9s} {'oracle m':>8s} {'med pred':>8s} {'med GT':>7s}")
        for r in frames:
            print(f"{r['frame']:18s} {r['delta1']:6.3f} {r['abs_rel']:7.3f} {r['oracle_delta1']:9.3f} "
                  f"{r['oracle_depth']:8.2f} {r['median_pred']:8.2f} {r['median_gt']:7.2f}")  # fmt: skip
        print(f"mean δ1 {np.mean([r['delta1'] for r in frames]):.3f} vs mean oracle-constant δ1 "
              f"{np.mean([r['oracle_delta1'] for r in frames]):.3f}; mean AbsRel "
              f"{np.mean([r['abs_rel'] for r in frames]):.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
