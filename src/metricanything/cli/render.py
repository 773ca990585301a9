"""``metricanything render``: write a heterogeneous synthetic RGB-D dataset in the folder format."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from metricanything.errors import InvalidInputError

if TYPE_CHECKING:
    from metricanything.data.mixture import MixedRenderDataset


def parse_size(text: str) -> tuple[int, int]:
    """``"WxH"`` -> (W, H)."""
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError as exc:
        raise InvalidInputError(f"--size must look like WIDTHxHEIGHT (e.g. 256x192), got {text!r}") from exc
    if w < 8 or h < 8 or w > 8192 or h > 8192:
        raise InvalidInputError(f"--size must be between 8 and 8192 pixels per side, got {w}x{h}")
    return w, h


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (folder dataset format)")
    parser.add_argument("--num", type=int, default=200, help="number of samples (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="seed; the same seed gives byte-identical output")
    parser.add_argument("--size", default=None, help="force WIDTHxHEIGHT (default: random per sample, ~256^2)")
    parser.add_argument(
        "--sources", default=None,
        help="comma-separated source kinds, sample i gets kind i mod K (default rendered,lidar,tof,stereo,sfm,mvs; "
        "also structured_light)",
    )
    parser.add_argument("--fov-deg", type=float, nargs=2, metavar=("LO", "HI"), default=None,
                        help="horizontal field of view range in degrees (default 25 100: wide to tele); e.g. "
                        "55 65 for one camera rig")
    parser.add_argument("--depth-format", choices=("npy", "png"), default="npy", help="depth file format")
    parser.add_argument("--workers", type=int, default=1, help="parallel render processes (default 1)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _render_one(job: tuple[MixedRenderDataset, int, str, str]) -> tuple[str, str]:
    dataset, i, out, depth_format = job
    from metricanything.data.folder import write_sample

    sample = dataset[i]
    write_sample(out, sample, depth_format=depth_format)
    return sample.sample_id, sample.sensor


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from metricanything.data.folder import write_index
    from metricanything.data.mixture import MixedRenderDataset

    if args.num < 1:
        raise InvalidInputError(f"--num must be >= 1, got {args.num}")
    if args.seed < 0:
        raise InvalidInputError(f"--seed must be >= 0, got {args.seed}")
    if args.workers < 1:
        raise InvalidInputError(f"--workers must be >= 1, got {args.workers}")
    size = parse_size(args.size) if args.size else None
    dataset = MixedRenderDataset(args.num, args.seed, size, args.sources, fov_deg=args.fov_deg)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"--out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(dataset, i, str(out), args.depth_format) for i in range(len(dataset))]
    counts: Counter[str] = Counter()
    ids = []
    # one intra-op thread per process: the renderer's tensors are small, extra threads only contend
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tqdm(total=len(jobs), desc="render", unit="sample", disable=args.no_progress) as bar:
            if args.workers == 1:
                for sid, sensor in map(_render_one, jobs):
                    ids.append(sid)
                    counts[sensor] += 1
                    bar.update(1)
            else:
                import multiprocessing as mp

                ctx = mp.get_context("spawn")
                with ctx.Pool(args.workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
                    for sid, sensor in pool.imap(_render_one, jobs, chunksize=4):  # ordered
                        ids.append(sid)
                        counts[sensor] += 1
                        bar.update(1)
    finally:
        torch.set_num_threads(threads)
    write_index(out, ids)
    print(f"wrote {len(ids)} samples to {out} ({', '.join(f'{k}: {v}' for k, v in sorted(counts.items()))})")
    return 0
