"""Prompt fidelity of a teacher: relative error at the prompted pixels of a 500-point prompt.

For each of the first ``--per-benchmark`` held-out renders of ``synthetic_indoor`` and ``synthetic_outdoor``
(12 renders by default), ``--points`` valid pixels are drawn with ``numpy.random.default_rng(seed)`` (``seed``:
the render's seed) over ``numpy.nonzero(valid)``, without replacement; their GT depths form a
:class:`~metricanything.prompts.prompt.Prompt` (integer pixel centres). The model runs through
``metricanything.api.infer`` with that prompt and the render's intrinsics, as ``metricanything infer --prompt``
does, and ``|pred - z| / z`` is read at the prompted pixels. The test
``test_bundled_teacher_honours_a_500_point_prompt`` checks the same quantity (median <= 5 %) on three renders.

Printed: per render, the median and max relative error over its prompted pixels; then the median and max
of the per-render medians, and the max over every prompted pixel.

Usage::

    python benchmarks/prompt_fidelity.py                          # the bundled teacher, 6 + 6 renders
    python benchmarks/prompt_fidelity.py --model runs/teacher/final --per-benchmark 3
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BUNDLED_TEACHER = REPO / "src" / "metricanything" / "assets" / "models" / "teacher"
BENCHMARKS = ("synthetic_indoor", "synthetic_outdoor")


def prompted_errors(model: object, sample: object, n_points: int, seed: int) -> np.ndarray:
    """Relative errors (float64) of ``model`` at ``n_points`` prompted valid pixels of ``sample``."""
    from metricanything import api
    from metricanything.prompts.prompt import Prompt

    v, u = np.nonzero(sample.valid)
    if len(v) < n_points:
        raise ValueError(f"{sample.sample_id}: {len(v)} valid pixels, fewer than {n_points} prompt points")
    k = np.random.default_rng(seed).choice(len(v), n_points, replace=False)
    z = sample.depth[v[k], u[k]].astype(np.float64)
    h, w = sample.depth.shape
    prompt = Prompt.from_points(np.stack([u[k], v[k], z], axis=1), w, h)
    result = api.infer(model, sample.image, intrinsics=sample.intrinsics, prompt=prompt)
    if not result.valid[v[k], u[k]].all():
        raise ValueError(f"{sample.sample_id}: the model marked prompted pixels invalid")
    pred = result.depth[v[k], u[k]].astype(np.float64)
    return np.abs(pred - z) / z


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(BUNDLED_TEACHER), help="teacher checkpoint (default: bundled)")
    parser.add_argument("--points", type=int, default=500, help="prompt points per render (default 500)")
    parser.add_argument("--per-benchmark", type=int, default=6, help="renders per benchmark (default 6)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)

    import torch

    from metricanything import api
    from metricanything.eval.benchmarks import iter_benchmark_samples, load_benchmark

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model = api.load_model(args.model)
    medians: list[float] = []
    worst = 0.0
    print(f"model: {args.model}; {args.points}-point prompts; relative error |pred - z| / z at the prompted pixels")
    print("| render | median | max |\n|---|---|---|")
    for name in BENCHMARKS:
        for sample in iter_benchmark_samples(load_benchmark(name), limit=args.per_benchmark):
            seed = int(sample.sample_id.rsplit("-", 1)[1])  # render_benchmark_sample names it "<benchmark>-<seed>"
            rel = prompted_errors(model, sample, args.points, seed)
            medians.append(float(np.median(rel)))
            worst = max(worst, float(rel.max()))
            print(f"| {sample.sample_id} | {100 * medians[-1]:.3f} % | {100 * rel.max():.3f} % |")
    arr = np.array(medians)
    print(f"\n{len(arr)} renders: median of the per-render medians {100 * np.median(arr):.3f} %, "
          f"max of the per-render medians {100 * arr.max():.3f} %, max over all prompted pixels {100 * worst:.3f} %")
    print(f"{time.perf_counter() - start:.0f} s on {args.threads} thread(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
