"""Real-frame benchmark: the bundled teacher and student (and any ``--model``) on ``../shared/real_frames``.

The protocol is the ``real_dev`` benchmark (``src/metricanything/configs/benchmarks/real_dev.yaml``, the frames' README):

* completion with ``frac:0.01`` / ``frac:0.001`` prompts (``numpy.random.default_rng(0)``, ``int(F*H*W)``
  valid pixels drawn over ``numpy.nonzero(valid)``) and a 16-beam LiDAR-like prompt (``lidar:16``), scored on
  the held-out valid pixels, no alignment, next to Delaunay-linear (nearest outside the hull) and nearest
  interpolation of the same prompt;
* monocular (``none``): the frame's intrinsics, every valid pixel, no alignment, next to the per-frame oracle
  constant (the delta1-optimal single depth, which sees the GT);
* summaries: geometric mean over frames of model AbsRel / linear AbsRel, frames worse than linear, worst ratio;
  mean delta1 against the oracle's.

Models run through ``metricanything.api.load_model`` / ``api.infer`` with a ``Prompt`` and the given
intrinsics, the path ``metricanything infer --prompt`` takes. Exit 0 with a message when the frames are absent.

Usage::

    python benchmarks/real_frames.py                                 # bundled teacher + student, all 13 frames
    python benchmarks/real_frames.py --model runs/teacher/final --json runs/real_frames.json
    python benchmarks/real_frames.py --frames lingbot_0 nyu_00000 --skip-bundled --model runs/student/final
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUNDLED = {
    "teacher": REPO / "src" / "metricanything" / "assets" / "models" / "teacher",
    "student": REPO / "src" / "metricanything" / "assets" / "models" / "student",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames-root", metavar="DIR",
                        help="frames folder (default: the real_dev benchmark's root, ../shared/real_frames)")  # fmt: skip
    parser.add_argument("--model", action="append", default=[], metavar="PATH", help="another checkpoint (repeatable)")
    parser.add_argument("--skip-bundled", action="store_true", help="leave out the bundled teacher and student")
    parser.add_argument("--frames", nargs="+", metavar="ID", help="only these frame ids")
    parser.add_argument("--limit", type=int, metavar="N", help="only the first N frames")
    parser.add_argument("--prompt", nargs="+", metavar="PATTERN", help="prompt columns (default: the benchmark's)")
    parser.add_argument("--json", metavar="OUT", help="write the machine-readable results (metrics.json content + per-frame rows)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args(argv)

    from metricanything.errors import DatasetError
    from metricanything.eval.benchmarks import load_benchmark, resolve_root

    spec = load_benchmark("real_dev")
    try:
        root = resolve_root(spec, args.frames_root)
    except DatasetError as exc:
        print(f"SKIP: the real frames are not available here ({exc}).")
        return 0

    import torch

    from metricanything.eval.report import comparison_lines, json_ready, per_frame_table, summary_table
    from metricanything.eval.runner import evaluate
    from metricanything.tasks.evaluate import model_predictor

    torch.set_num_threads(args.threads)
    paths = {} if args.skip_bundled else dict(BUNDLED)
    predictors = {}
    for kind, path in paths.items():
        predictors[kind] = model_predictor(str(path), name=kind)
    for path in args.model:
        p = model_predictor(path)
        if p.name in predictors:
            p = model_predictor(path, name=f"{p.name}#{len(predictors)}")
        predictors[p.name] = p
    if not predictors:
        parser.error("nothing to evaluate: give --model PATH or drop --skip-bundled")
    t0 = time.perf_counter()
    results = evaluate(predictors, spec, args.prompt, root=root, limit=args.limit, sample_ids=args.frames,
                       num_panels=0)  # fmt: skip
    wall = time.perf_counter() - t0

    models = {k: _shown(p) for k, p in paths.items()} | {m: m for m in args.model}
    print(f"real frames: {_shown(root)} ({results.num_samples} frames), protocol real_dev; models: "
          + ", ".join(f"{k} = {v}" for k, v in models.items()))
    print(f"\nAbsRel, mean over frames (held-out valid pixels; none = monocular, all valid pixels)\n{summary_table(results)}")
    print(f"\nδ1, mean over frames\n{summary_table(results, 'delta1')}")
    for col in results.columns:
        print(f"\nper frame, prompt {col}:\n{per_frame_table(results, col)}")
    print("\nsummary:")
    print("\n".join(comparison_lines(results)))
    print(f"\n{wall:.0f} s on {args.threads} thread(s); seconds per frame and column: "
          + ", ".join(f"{k} {t:.2f}" for k, t in results.timing.items()))  # fmt: skip
    if args.json:
        data = json_ready(results, records=True)
        data["frames_root"] = _shown(root)
        data["models"] = models
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        print(f"results: {out}")
    return 0


def _shown(path: Path | str) -> str:
    """A path relative to the repository when it is inside (or next to) it, else as given."""
    path = Path(path).resolve()
    try:
        return os.path.relpath(path, REPO) if path.is_relative_to(REPO.parent) else str(path)
    except ValueError:
        return str(path)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
