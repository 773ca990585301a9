"""Cost of the ``knn_plane`` prompt fill, and of the whole bundled-teacher ``infer``, as the image and prompt grow.

Every prompt point is used (there is no cap), so this prints what that costs on CPU: seconds (median of
``--repeats`` runs after one warm-up) and peak memory. Peak memory is the growth of the process's maximum
resident set size (``resource.getrusage``) over one cold call, measured in a fresh subprocess per case and per
function after the inputs are built (so it counts torch/NumPy/SciPy allocations that tracemalloc cannot see).

Cases: 640x480 with 1 % random points (3,072); 1242x375 with ~20k LiDAR-like points (64 scan rows in the lower
part of the image, 25 % of each row's pixels); 1920x1080 with 2 % random points (41,472); 1920x1080 with 10
points; 640x480 with 0.1 % (307).

    python benchmarks/prompt_fill_scaling.py                 # 1 torch thread
    python benchmarks/prompt_fill_scaling.py --threads 2 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEACHER = ROOT / "src" / "metricanything" / "assets" / "models" / "teacher"

#: name -> (width, height, pattern, count or fraction)
CASES: dict[str, tuple[int, int, str, float]] = {
    "640x480, 1 %": (640, 480, "random", 0.01),
    "640x480, 0.1 %": (640, 480, "random", 0.001),
    "1242x375, LiDAR ~20k": (1242, 375, "lidar", 20_000),
    "1920x1080, 2 %": (1920, 1080, "random", 0.02),
    "1920x1080, 10 points": (1920, 1080, "count", 10),
}


def make_prompt(width: int, height: int, pattern: str, amount: float, seed: int = 0):
    """(depth H x W float32 metres, mask H x W bool) of a case; depth from a tilted plane + a box."""
    import numpy as np

    rng = np.random.default_rng(seed)
    mask = np.zeros((height, width), bool)
    if pattern == "random":
        idx = rng.choice(width * height, size=int(amount * width * height), replace=False)
        mask.reshape(-1)[idx] = True
    elif pattern == "count":
        idx = rng.choice(width * height, size=int(amount), replace=False)
        mask.reshape(-1)[idx] = True
    elif pattern == "lidar":
        rows = np.round(np.linspace(0.45 * height, height - 1, 64)).astype(int)
        keep = rng.random((64, width)) < amount / (64 * width)
        for r, k in zip(rows, keep, strict=True):
            mask[r, k] = True
    else:
        raise ValueError(pattern)
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    inv = 0.1 + 0.3 * (v / height) + 0.05 * (u / width)  # a floor-like plane in inverse depth
    inv[(u > 0.3 * width) & (u < 0.5 * width) & (v > 0.4 * height)] = 0.5  # a box in front
    return (1.0 / inv).astype(np.float32), mask


def _child(case: str, what: str, repeats: int, threads: int) -> dict:
    """Runs in the subprocess: build the inputs, then one cold call (peak RSS growth) and timed repeats."""
    import resource

    import numpy as np
    import torch

    torch.set_num_threads(threads)
    w, h, pattern, amount = CASES[case]
    depth, mask = make_prompt(w, h, pattern, amount)
    if what == "fill":
        from metricanything.models.prompt_fill import knn_plane_fill

        m = torch.from_numpy(mask)[None, None]
        ls = float(np.median(np.log(depth[mask])))
        val = torch.where(m, torch.from_numpy(np.log(depth) - ls)[None, None], torch.zeros(1, 1, h, w))

        def call():
            return knn_plane_fill(val, m)
    else:
        from metricanything.api import infer, load_model
        from metricanything.camera import Intrinsics
        from metricanything.prompts.prompt import Prompt

        model = load_model(TEACHER)
        image = np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)
        vv, uu = np.nonzero(mask)
        prompt = Prompt.from_points(np.stack([uu, vv, depth[vv, uu]], axis=1), w, h)
        K = Intrinsics(fx=0.8 * w, fy=0.8 * w, cx=w / 2, cy=h / 2, width=w, height=h)

        def call():
            return infer(model, image, intrinsics=K, prompt=prompt)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
    t0 = time.perf_counter()
    call()
    cold = time.perf_counter() - t0
    peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024.0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return {"points": int(mask.sum()), "seconds": float(np.median(times)) if times else cold, "cold_seconds": cold,
            "peak_mb": peak_mb}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads [1]")
    p.add_argument("--repeats", type=int, default=3, help="timed runs after the cold one [3]")
    p.add_argument("--no-infer", action="store_true", help="skip the bundled-teacher infer timings")
    p.add_argument("--child", nargs=2, metavar=("CASE", "WHAT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child[0], args.child[1], args.repeats, args.threads)))
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "OPENBLAS_NUM_THREADS": str(args.threads)}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    whats = ["fill"] + ([] if args.no_infer else ["infer"])
    print(f"knn_plane_fill (every prompt point) and bundled-teacher infer, CPU, {args.threads} torch thread(s), "
          f"median of {args.repeats} runs after a cold one; peak = growth of max RSS in a fresh process")  # fmt: skip
    header = ["case", "points"] + [c for w in whats for c in (f"{w} s", f"{w} peak MB")]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for case in CASES:
        row = [case]
        for what in whats:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", case, what,
                   "--repeats", str(args.repeats), "--threads", str(args.threads)]  # fmt: skip
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            if out.returncode != 0:
                raise SystemExit(f"{case} / {what} failed:\n{out.stderr}")
            r = json.loads(out.stdout.strip().splitlines()[-1])
            if len(row) == 1:
                row.append(f"{r['points']:,}")
            row += [f"{r['seconds']:.2f}", f"{r['peak_mb']:.0f}"]
        print("| " + " | ".join(row) + " |", flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"({os.cpu_count()} CPU(s), 1-min load average at the end: {load:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
