"""Depth completion on the real frames of ``../shared/real_frames``: the ``knn_plane`` reference alone, a teacher,
and Delaunay-linear interpolation, on the same prompts (the folder README's protocol).

Protocol (per frame): ``rng = numpy.random.default_rng(0)``; ``vv, uu = numpy.nonzero(valid)``;
``pick = rng.choice(len(vv), size=int(fraction * H * W), replace=False)``; the prompt is the GT at the picked
pixels; AbsRel and delta1 are scored on the *other* valid pixels, without alignment. Linear = SciPy's
``LinearNDInterpolator`` on (u, v), nearest neighbour outside the convex hull. The teacher runs through
``api.load_model`` + ``api.infer(model, image, intrinsics=K, prompt=Prompt.from_points(...))``; the reference
alone is :func:`~metricanything.models.prompt_fill.knn_plane_fill` of the prompt's log depth around its median
(what the teacher corrects). Summary: geometric mean over frames of AbsRel / linear AbsRel.

The frames are a development benchmark: report figures, never train or tune on them.

    python benchmarks/prompt_fill_real.py                          # 1 % and 0.1 %, the bundled teacher
    python benchmarks/prompt_fill_real.py --fractions 0.01 --model runs/x/teacher/model
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FRAMES = ROOT.parent / "shared" / "real_frames"
DEFAULT_TEACHER = ROOT / "src" / "metricanything" / "assets" / "models" / "teacher"


def linear_fill(pu: np.ndarray, pv: np.ndarray, pz: np.ndarray, qu: np.ndarray, qv: np.ndarray) -> np.ndarray:
    """Delaunay-linear interpolation of the prompt at (qu, qv), nearest neighbour outside the hull."""
    from scipy.interpolate import LinearNDInterpolator, NearestNDInterpolator

    xy = np.stack([pu, pv], axis=1).astype(np.float64)
    out = LinearNDInterpolator(xy, pz)(qu, qv)
    bad = ~np.isfinite(out)
    out[bad] = NearestNDInterpolator(xy, pz)(qu[bad], qv[bad])
    return out


def reference_fill(pu: np.ndarray, pv: np.ndarray, pz: np.ndarray, h: int, w: int) -> np.ndarray:
    """The knn_plane reference of the prompt, in metres (as the teacher builds it: log depth around the median)."""
    from metricanything.models.prompt_fill import knn_plane_fill

    mask = torch.zeros(1, 1, h, w, dtype=torch.bool)
    mask[0, 0, pv, pu] = True
    log_s = float(np.median(np.log(pz)))
    value = torch.zeros(1, 1, h, w)
    value[0, 0, pv, pu] = torch.from_numpy((np.log(pz) - log_s).astype(np.float32))
    return torch.exp(knn_plane_fill(value, mask) + log_s)[0, 0].numpy()


def scores(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """(AbsRel, delta1) of a prediction at the scored pixels."""
    ratio = np.maximum(pred / gt, gt / pred)
    return float(np.mean(np.abs(pred - gt) / gt)), float(np.mean(ratio < 1.25))


def run(frames: Path, model_dir: Path, fraction: float) -> list[dict]:
    from PIL import Image

    from metricanything.api import infer, load_model
    from metricanything.camera import Intrinsics
    from metricanything.prompts.prompt import Prompt

    model = load_model(model_dir)
    rows = []
    for d in sorted(p for p in frames.iterdir() if (p / "depth.npy").is_file()):
        image = np.asarray(Image.open(d / "image.png").convert("RGB"))
        gt = np.load(d / "depth.npy").astype(np.float32)
        K = Intrinsics(**json.loads((d / "meta.json").read_text(encoding="utf-8"))["intrinsics"])
        h, w = gt.shape
        valid = np.isfinite(gt) & (gt > 0)
        rng = np.random.default_rng(0)
        vv, uu = np.nonzero(valid)
        pick = rng.choice(len(vv), size=int(fraction * h * w), replace=False)
        pv, pu = vv[pick], uu[pick]
        pz = gt[pv, pu]
        scored = valid.copy()
        scored[pv, pu] = False
        sv, su = np.nonzero(scored)
        g = gt[sv, su]
        lin = linear_fill(pu, pv, pz, su, sv)
        ref = reference_fill(pu, pv, pz, h, w)[sv, su]
        r = infer(model, image, intrinsics=K, prompt=Prompt.from_points(np.stack([pu, pv, pz], axis=1), w, h))
        rows.append({"frame": d.name, "points": len(pick), "linear": scores(lin, g), "reference": scores(ref, g),
                     "teacher": scores(r.depth[sv, su], g)})  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=Path, default=DEFAULT_FRAMES, help="folder of <id>/{image.png,depth.npy,meta.json}")
    p.add_argument("--model", type=Path, default=DEFAULT_TEACHER, help="teacher checkpoint [the bundled teacher]")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.001], help="prompt fractions [0.01 0.001]")
    args = p.parse_args(argv)
    if not args.frames.is_dir():
        print(f"no real frames at {args.frames} (pass --frames); nothing measured", file=sys.stderr)
        return 1
    torch.set_num_threads(1)
    for fraction in args.fractions:
        rows = run(args.frames, args.model, fraction)
        print(f"\n{fraction:.1%} prompts, {args.model.name if args.model != DEFAULT_TEACHER else 'bundled teacher'}: "
              "AbsRel (ratio to linear)")  # fmt: skip
        print("| frame | points | linear | reference | teacher |")
        print("|---|---|---|---|---|")
        for r in rows:
            lin = r["linear"][0]
            print(f"| {r['frame']} | {r['points']} | {lin:.4f} | {r['reference'][0]:.4f} ({r['reference'][0] / lin:.3f})"
                  f" | {r['teacher'][0]:.4f} ({r['teacher'][0] / lin:.3f}) |")  # fmt: skip
        for name in ("reference", "teacher"):
            ratios = [r[name][0] / r["linear"][0] for r in rows]
            print(f"{name}: geometric mean AbsRel ratio to linear {math.exp(np.mean(np.log(ratios))):.3f}, "
                  f"worst {max(ratios):.3f}, worse than linear on {sum(x > 1 for x in ratios)}/{len(rows)}; "
                  f"mean delta1 {np.mean([r[name][1] for r in rows]):.4f} (linear {np.mean([r['linear'][1] for r in rows]):.4f})")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
