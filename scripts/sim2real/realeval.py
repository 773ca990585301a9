"""Score depth models on the real development frames (``shared/real_frames``) with their README protocol.

Only SUMMARY figures are meant to be read from here (the frames are a benchmark, never a training or tuning set):

* completion at 1 % and 0.1 % of H x W prompt points (``rng = default_rng(0)``, uniform among valid pixels),
  AbsRel on the other valid pixels, no alignment; geometric mean over frames of model / Delaunay-linear AbsRel,
  the worst frame's ratio and how many frames are worse than linear by more than 5 %;
* monocular: given intrinsics, no prompt, all valid pixels, no alignment; mean delta1 (and AbsRel) next to the
  mean delta1 of the per-frame oracle constant depth.

Usage as a script (any checkpoint folder the project loads)::

    python scripts/sim2real/realeval.py --teacher src/metricanything/assets/models/teacher \
        --student src/metricanything/assets/models/student [--frames ../shared/real_frames] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.interpolate import LinearNDInterpolator, NearestNDInterpolator

from metricanything.camera import Intrinsics
from metricanything.data.folder import FolderDataset
from metricanything.data.sample import RGBDSample

REPO = Path(__file__).resolve().parents[2]
DEFAULT_FRAMES = REPO.parent / "shared" / "real_frames"
DENSITIES = (0.01, 0.001)

#: a completion model: (image uint8 HxWx3, intrinsics, prompt depth HxW float32 (0 off-prompt), mask HxW bool) -> depth
CompletionFn = Callable[[np.ndarray, Intrinsics, np.ndarray, np.ndarray], np.ndarray]
#: a monocular model: (image, intrinsics) -> depth
MonoFn = Callable[[np.ndarray, Intrinsics], np.ndarray]


def load_frames(root: str | Path = DEFAULT_FRAMES) -> list[RGBDSample]:
    root = Path(root)
    if not root.is_dir():
        raise SystemExit(f"{root}: real frames folder not found (pass --frames)")
    return list(FolderDataset(root))


@dataclass
class PromptSplit:
    depth: np.ndarray  # H x W, prompt depth (0 elsewhere)
    mask: np.ndarray  # H x W bool, prompted pixels
    score: np.ndarray  # H x W bool, valid and not prompted
    uv: np.ndarray  # N x 2 (u, v)
    z: np.ndarray  # N


def protocol_prompt(sample: RGBDSample, density: float) -> PromptSplit:
    """The README protocol: ``int(density * H * W)`` valid pixels drawn with ``default_rng(0)``."""
    h, w = sample.depth.shape
    rng = np.random.default_rng(0)
    vv, uu = np.nonzero(sample.valid)
    pick = rng.choice(len(vv), size=int(density * h * w), replace=False)
    mask = np.zeros((h, w), bool)
    mask[vv[pick], uu[pick]] = True
    depth = np.where(mask, sample.depth, 0).astype(np.float32)
    uv = np.stack([uu[pick], vv[pick]], 1).astype(np.float64)
    return PromptSplit(depth, mask, sample.valid & ~mask, uv, sample.depth[vv[pick], uu[pick]].astype(np.float64))


def linear_fill(split: PromptSplit, shape: tuple[int, int]) -> np.ndarray:
    """Delaunay-linear interpolation of the prompt (nearest neighbour outside the convex hull)."""
    h, w = shape
    gv, gu = np.mgrid[0:h, 0:w]
    q = np.stack([gu.ravel(), gv.ravel()], 1).astype(np.float64)
    lin = LinearNDInterpolator(split.uv, split.z)(q)
    near = NearestNDInterpolator(split.uv, split.z)(q)
    return np.where(np.isfinite(lin), lin, near).reshape(h, w).astype(np.float32)


def nearest_fill(split: PromptSplit, shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    gv, gu = np.mgrid[0:h, 0:w]
    q = np.stack([gu.ravel(), gv.ravel()], 1).astype(np.float64)
    return NearestNDInterpolator(split.uv, split.z)(q).reshape(h, w).astype(np.float32)


def absrel(pred: np.ndarray, gt: np.ndarray, m: np.ndarray) -> float:
    p, g = pred[m].astype(np.float64), gt[m].astype(np.float64)
    return float(np.mean(np.abs(p - g) / g))


def delta1(pred: np.ndarray, gt: np.ndarray, m: np.ndarray) -> float:
    p, g = pred[m].astype(np.float64), gt[m].astype(np.float64)
    return float(np.mean(np.maximum(p / g, g / p) < 1.25))


def oracle_constant_delta1(gt: np.ndarray, m: np.ndarray) -> float:
    """Best delta1 of any single depth value c: max over c of the share of g with c/1.25 < g < 1.25 c."""
    g = np.sort(np.log(gt[m].astype(np.float64)))
    width = 2 * math.log(1.25)
    # a window [x, x + width) (open ends make no difference for continuous data) starting at each sample
    hi = np.searchsorted(g, g + width, side="left")
    return float(np.max(hi - np.arange(len(g))) / len(g))


def completion_table(
    frames: list[RGBDSample], fns: dict[str, CompletionFn], densities=DENSITIES, verbose: bool = True
) -> dict:
    """Per frame and density: AbsRel of linear, nearest and every model; summaries per model and density."""
    rows = []
    for s in frames:
        for dens in densities:
            sp = protocol_prompt(s, dens)
            lin = linear_fill(sp, s.depth.shape)
            row = {"frame": s.sample_id, "density": dens, "linear": absrel(lin, s.depth, sp.score),
                   "nearest": absrel(nearest_fill(sp, s.depth.shape), s.depth, sp.score)}
            for name, fn in fns.items():
                t0 = time.perf_counter()
                pred = fn(s.image, s.intrinsics, sp.depth, sp.mask)
                row[name] = absrel(pred, s.depth, sp.score)
                row[f"{name}_s"] = time.perf_counter() - t0
            rows.append(row)
            if verbose:
                print(f"  {s.sample_id:18s} {dens:6.3%} linear {row['linear']:.4f} "
                      + " ".join(f"{n} {row[n]:.4f}" for n in fns), flush=True)
    return {"rows": rows, "summary": summarise_completion(rows, ["nearest", *fns])}


def summarise_completion(rows: list[dict], names: list[str]) -> dict:
    out: dict = {}
    for dens in sorted({r["density"] for r in rows}, reverse=True):
        rs = [r for r in rows if r["density"] == dens]
        d = {"linear_mean_absrel": float(np.mean([r["linear"] for r in rs]))}
        for n in names:
            ratios = np.array([r[n] / r["linear"] for r in rs])
            d[n] = {
                "geomean_ratio": float(np.exp(np.mean(np.log(ratios)))),
                "worst_ratio": float(ratios.max()),
                "frames_worse_5pct": int((ratios > 1.05).sum()),
                "mean_absrel": float(np.mean([r[n] for r in rs])),
            }
        out[f"{dens:g}"] = d
    return out


def mono_table(frames: list[RGBDSample], fns: dict[str, MonoFn], verbose: bool = True) -> dict:
    rows = []
    for s in frames:
        row = {"frame": s.sample_id, "oracle_delta1": oracle_constant_delta1(s.depth, s.valid)}
        for name, fn in fns.items():
            pred = fn(s.image, s.intrinsics)
            row[name] = delta1(pred, s.depth, s.valid)
            row[f"{name}_absrel"] = absrel(pred, s.depth, s.valid)
            row[f"{name}_median_ratio"] = float(np.median(pred[s.valid]) / np.median(s.depth[s.valid]))
        rows.append(row)
        if verbose:
            print(f"  {s.sample_id:18s} oracle {row['oracle_delta1']:.3f} "
                  + " ".join(f"{n} d1 {row[n]:.3f} (med x{row[n + '_median_ratio']:.2f})" for n in fns), flush=True)
    summ = {"oracle_mean_delta1": float(np.mean([r["oracle_delta1"] for r in rows]))}
    for n in fns:
        summ[n] = {"mean_delta1": float(np.mean([r[n] for r in rows])),
                   "mean_absrel": float(np.mean([r[f"{n}_absrel"] for r in rows])),
                   "by_group_delta1": {g: float(np.mean([r[n] for r in rows if r["frame"].startswith(g)]))
                                       for g in ("lingbot", "nyu", "kitti")}}
    return {"rows": rows, "summary": summ}


# ---- adapters ------------------------------------------------------------------------------------------


def knn_plane_only(image, K, pdepth, pmask) -> np.ndarray:
    """The parameter-free knn_plane reference alone (every prompt point is used), in metres."""
    from metricanything.models.prompt_fill import knn_plane_fill
    from metricanything.prompts.encoding import encode_prompt

    enc = encode_prompt(torch.from_numpy(pdepth)[None, None], torch.from_numpy(pmask)[None, None])
    f = knn_plane_fill(enc.features[:, :1], enc.features[:, 1:2] > 0.5)
    return torch.exp(f + enc.log_scale.view(1, 1, 1, 1))[0, 0].numpy()


class BoundedResidual(torch.nn.Module):
    """Wraps the module that produces a teacher's final residual: ``bound * tanh(scale * r / bound)``
    (``bound=0``: only the scale). ``scale=0`` gives the parameter-free reference alone."""

    def __init__(self, inner: torch.nn.Module, scale: float = 1.0, bound: float = 0.0) -> None:
        super().__init__()
        self.inner, self.scale, self.bound = inner, scale, bound

    def forward(self, *a, **k):
        r = self.inner(*a, **k) * self.scale
        return self.bound * torch.tanh(r / self.bound) if self.bound > 0 else r


def gate_teacher(model, scale: float = 1.0, bound: float = 0.0, image_size: int | None = None):
    """The teacher with its residual scaled / bounded and (optionally) another network input size."""
    import copy

    m = copy.deepcopy(model)
    if image_size:
        m.config.image_size = image_size
    if scale != 1.0 or bound > 0:
        if m.refiner is not None:
            m.refiner = BoundedResidual(m.refiner, scale, bound)
        else:
            m.decoder = BoundedResidual(m.decoder, scale, bound)
    return m


def teacher_completion(model) -> CompletionFn:
    from metricanything.api import infer
    from metricanything.prompts.prompt import Prompt

    def fn(image, K, pdepth, pmask):
        with torch.no_grad():
            return infer(model, image, intrinsics=K, prompt=Prompt.from_map(pdepth, pmask)).depth

    return fn


def mono(model) -> MonoFn:
    from metricanything.api import infer

    def fn(image, K):
        with torch.no_grad():
            return infer(model, image, intrinsics=K).depth

    return fn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", default=str(DEFAULT_FRAMES))
    ap.add_argument("--teacher", action="append", default=[], help="teacher checkpoint (repeatable)")
    ap.add_argument("--student", action="append", default=[], help="monocular model checkpoint (repeatable)")
    ap.add_argument("--probe", action="append", default=[], help="cached.py probe output folder (repeatable)")
    ap.add_argument("--backbone", default=None, help="the probe's frozen ViT-S/14 weights")
    ap.add_argument("--probe-size", type=int, nargs="*", default=[224], help="network long side(s) for probes")
    ap.add_argument("--knn", action="store_true", help="also score the knn_plane reference alone")
    ap.add_argument("--variants", nargs="*", default=[],
                    help="extra teacher variants SCALE,BOUND,IMAGE_SIZE (e.g. 0.5,0,0 or 1,0.1,448) of every --teacher")
    ap.add_argument("--image-size", type=int, default=0, help="override the models' image_size")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from metricanything.api import load_model

    frames = load_frames(args.frames)
    out: dict = {}
    comp = {}
    for i, p in enumerate(args.teacher):
        m = gate_teacher(load_model(p), image_size=args.image_size or None)
        comp[f"teacher{i}"] = teacher_completion(m)
        for v in args.variants:
            sc, bd, isz = v.split(",")
            comp[f"teacher{i}[{v}]"] = teacher_completion(gate_teacher(m, float(sc), float(bd), int(isz) or None))
    if args.knn:
        comp["knn_plane"] = knn_plane_only
    if comp or args.knn:
        out["completion"] = completion_table(frames, comp)
        print(json.dumps(out["completion"]["summary"], indent=1))
    if args.student or args.probe:
        monos = {}
        for i, p in enumerate(args.probe):
            from cached import ProbeModel

            for size in args.probe_size:
                pm = ProbeModel(args.backbone, str(Path(p) / "probe.safetensors"), image_size=size)
                monos[f"probe{i}@{size}"] = lambda im, K, pm=pm: pm.depth(im, K.fx)
        for i, p in enumerate(args.student):
            m = load_model(p)
            if args.image_size and hasattr(m, "config") and hasattr(m.config, "image_size"):
                m.config.image_size = args.image_size
            monos[f"mono{i}"] = mono(m)
        out["mono"] = mono_table(frames, monos)
        print(json.dumps(out["mono"]["summary"], indent=1))
    out["models"] = {"teacher": args.teacher, "student": args.student}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
