"""Field-of-view error of every camera estimator we ship, on renders and on the real frames.

``infer`` without intrinsics takes the focal from an estimator; metric depth scales with that focal, so its
error is the depth's error. This prints, per estimator and data set, the error of the estimated horizontal FoV
against the given one (the renders' true camera; the real frames' calibration):

* ``student FoV head`` - the bundled student's field-of-view head (``api.infer`` with no intrinsics; add others
  with ``--student PATH``);
* ``fallback`` - what ``infer`` assumes when nothing else is available: fx = W (hFoV 53.13 deg, the official
  student CLI's choice), always with a warning;
* ``pointmap`` - the Student-PointMap model's recovered intrinsics (focal and shift solved from its affine point
  map), when ``--pointmap PATH`` names a released ``student_pointmap.pt`` (or a file in its format). The released
  weights cannot be downloaded in this project's CI, so without the flag that row says "not measured";
* ``pointmap solver on the true point map`` - the camera-recovery step alone (``recover_focal_shift``, the
  released least-squares solver) fed the ground-truth point map after an unknown scale and z shift, as the
  network's affine output would be. It reads the true depth, so it is no estimator a user has: it is the upper
  bound of what Student-PointMap's camera recovery can reach on these images (off-centre principal points and
  missing depth are what limit it).

Figures: mean and median |hFoV error| in degrees, median relative focal error |f_est / f_true - 1|, and the
share of images within 5 degrees. Data: ``synthetic_indoor``, ``synthetic_outdoor`` and
``synthetic_unseen_cameras`` (held-out renders, ``--limit`` each) and ``real_dev`` (``../shared/real_frames``,
13 frames; skipped with a message when absent).

    python benchmarks/fov_error.py                       # bundled student + fallback, 16 renders per set
    python benchmarks/fov_error.py --pointmap PATH/student_pointmap.pt --limit 32
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BUNDLED_STUDENT = REPO / "src" / "metricanything" / "assets" / "models" / "student"
RENDER_SETS = ("synthetic_indoor", "synthetic_outdoor", "synthetic_unseen_cameras")
REAL_SET = "real_dev"


def fov_from_focal(fx: float, width: int) -> float:
    """Horizontal FoV in degrees of focal ``fx`` (pixels) on an image ``width`` pixels wide."""
    return math.degrees(2.0 * math.atan(width / (2.0 * fx)))


def summarise(errors_deg: list[float], rel_focal: list[float]) -> dict[str, float]:
    """Mean / median |hFoV error|, median relative focal error and the share within 5 deg."""
    if not errors_deg:
        return {}
    return {
        "n": len(errors_deg),
        "mean_deg": statistics.fmean(errors_deg),
        "median_deg": statistics.median(errors_deg),
        "median_rel_focal": statistics.median(rel_focal),
        "within_5deg": sum(e <= 5.0 for e in errors_deg) / len(errors_deg),
    }


def student_estimator(path: Path) -> Callable:
    """fx estimate (pixels) of ``image`` by a depth-map student's FoV head, through ``api.infer``."""
    from metricanything import api

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = api.load_model(path)
    if getattr(model, "fov", None) is None:
        raise SystemExit(f"{path}: this student has no field-of-view head; it estimates no focal")

    def estimate(sample) -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = api.infer(model, sample.image)
        return float(result.intrinsics.fx)

    return estimate


def pointmap_estimator(path: Path) -> Callable:
    """fx estimate (pixels) of ``image`` recovered from a Student-PointMap model's affine point map."""
    import torch

    from metricanything.models.pointmap import from_official_checkpoint

    model = from_official_checkpoint(path).eval()

    def estimate(sample) -> float:
        x = torch.from_numpy(sample.image).permute(2, 0, 1).float() / 255.0
        with torch.inference_mode():
            pred = model.infer(x)
        return float(pred.camera_intrinsics(0).fx)

    return estimate


def fallback_estimator(sample) -> float:
    """fx = FALLBACK_FOCAL_OVER_WIDTH * W, what ``infer`` assumes (with a warning) when it has nothing else."""
    from metricanything.api import FALLBACK_FOCAL_OVER_WIDTH

    return FALLBACK_FOCAL_OVER_WIDTH * sample.image.shape[1]


def solver_oracle_estimator(sample, scale: float = 0.37, shift: float = 1.9) -> float:
    """fx from ``recover_focal_shift`` on the true point map seen through an unknown scale and z shift.

    Points come from the true depth and intrinsics (valid pixels only); ``scale`` and ``shift`` stand for the
    affine ambiguity of the network's output (any values: the solver estimates the shift and is scale-free).
    """
    import torch

    from metricanything.models.pointmap_geometry import recover_focal_shift

    k = sample.intrinsics
    h, w = sample.depth.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    z = sample.depth.astype(np.float64)
    pts = np.stack([(u - k.cx) / k.fx * z, (v - k.cy) / k.fy * z, z], axis=-1) * scale
    pts[..., 2] += shift * float(np.median(z[sample.valid])) * scale
    focal, _, _ = recover_focal_shift(torch.from_numpy(pts.astype(np.float32)),
                                      torch.from_numpy(sample.valid.copy()))
    return float(focal) * 0.5 * math.hypot(w, h)


def samples_of(name: str, limit: int | None):
    """The benchmark's samples (None when its data is absent here, with the reason)."""
    from metricanything.errors import DatasetError
    from metricanything.eval.benchmarks import iter_benchmark_samples, load_benchmark

    spec = load_benchmark(name)
    try:
        return list(iter_benchmark_samples(spec, limit=limit)), ""
    except DatasetError as exc:
        return None, str(exc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=16, help="renders per synthetic set (default 16)")
    parser.add_argument("--student", action="append", default=[], metavar="PATH", help="another depth-map student")
    parser.add_argument("--pointmap", metavar="PATH", help="a student_pointmap.pt (released format)")
    parser.add_argument("--skip-real", action="store_true", help="leave out ../shared/real_frames")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    estimators: dict[str, Callable | None] = {"student FoV head (bundled)": student_estimator(BUNDLED_STUDENT)}
    for p in args.student:
        estimators[f"student FoV head ({p})"] = student_estimator(Path(p))
    estimators["pointmap"] = pointmap_estimator(Path(args.pointmap)) if args.pointmap else None
    estimators["fallback (fx = W, 53.1 deg)"] = fallback_estimator
    estimators["pointmap solver on the true point map (upper bound)"] = solver_oracle_estimator

    sets = list(RENDER_SETS) + ([] if args.skip_real else [REAL_SET])
    table: dict[str, dict[str, dict[str, float]]] = {name: {} for name in estimators}
    true_fov: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    for set_name in sets:
        samples, why = samples_of(set_name, None if set_name == REAL_SET else args.limit)
        if samples is None:
            print(f"SKIP {set_name}: {why}")
            continue
        true_fov[set_name] = [s.intrinsics.fov_x for s in samples]
        for name, est in estimators.items():
            if est is None:
                continue
            errs, rels = [], []
            for s in samples:
                fx = est(s)
                errs.append(abs(fov_from_focal(fx, s.image.shape[1]) - s.intrinsics.fov_x))
                rels.append(abs(fx / s.intrinsics.fx - 1.0))
            table[name][set_name] = summarise(errs, rels)

    print("|hFoV error| (deg): mean / median; median |f_est/f_true - 1|; share within 5 deg")
    print("| estimator | " + " | ".join(f"{s} (n={len(true_fov[s])}, true hFoV {min(true_fov[s]):.0f}-"
                                        f"{max(true_fov[s]):.0f} deg)" for s in true_fov) + " |")
    print("|---|" + "---|" * len(true_fov))
    for name, est in estimators.items():
        if est is None:
            cells = ["not measured (no --pointmap weights)"] * len(true_fov)
        else:
            cells = []
            for s in true_fov:
                r = table[name][s]
                cells.append(f"{r['mean_deg']:.1f} / {r['median_deg']:.1f}; {100 * r['median_rel_focal']:.0f} %; "
                             f"{100 * r['within_5deg']:.0f} %")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\n{time.perf_counter() - t0:.0f} s on {args.threads} thread(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
