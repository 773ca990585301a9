"""Data-engine throughput: procedural renders per second, and shard decode (+ augmentation) per second.

* render: ``render_sample(seed, size=(256, 256))`` for fresh seeds (random indoor/outdoor scene and camera).
* shards: rendered 512 x 512 samples are packed into PNG tar shards (not timed); the timed part streams them
  with :class:`ShardDataset` (tar read + PNG/npy decode + RGBDSample validation), then again with
  ``transform=random_augment(..., out_size=(512, 512))`` (resize/crop/flip with exact intrinsics + colour
  jitter), then through a DataLoader with ``--workers`` processes.

Single-process figures run with ``torch.set_num_threads(1)`` and are therefore per-core figures; the
DataLoader figure is also divided by the number of worker processes. Targets: >= 20 renders/s (256^2) and
>= 100 decoded samples/s per core (512^2).

Usage: ``.venv/bin/python benchmarks/data_throughput.py [--renders 40] [--samples 96] [--workers 2]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings

import numpy as np
import torch

from metricanything.data.render import render_sample
from metricanything.data.shards import ShardDataset, ShardWriter


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:8.1f} samples/s  ({1000 * seconds / n:6.1f} ms/sample, n={n})"


def bench_render(n: int, size: int) -> None:
    render_sample(10_000, size=(size, size))  # warm-up (allocations, first-call overheads)
    t = time.perf_counter()
    for i in range(n):
        render_sample(i, size=(size, size))
    dt = time.perf_counter() - t
    print(f"render {size}x{size}, 1 thread:            {_rate(n, dt)}")


def bench_shards(n: int, size: int, distinct: int, workers: int, image_format: str) -> None:
    from metricanything.data.augment import random_augment

    print(f"(rendering {distinct} distinct {size}x{size} samples for the shards; not timed)")
    base = [render_sample(50_000 + i, size=(size, size)) for i in range(distinct)]
    with tempfile.TemporaryDirectory() as tmp:
        with ShardWriter(tmp, "shard", max(1, n // 8), image_format=image_format) as writer:
            for i in range(n):
                s = base[i % distinct]
                writer.write(s.replace(sample_id=f"b{i:05d}"))
        mb = sum(os.path.getsize(p) for p in writer.paths) / 2**20
        print(f"shards: {len(writer.paths)} files, {mb:.1f} MiB, {image_format} images")

        list(ShardDataset(tmp))  # warm the page cache
        t = time.perf_counter()
        count = sum(1 for _ in ShardDataset(tmp))
        dt = time.perf_counter() - t
        print(f"shard decode {size}x{size}, 1 thread:      {_rate(count, dt)}")

        def aug(sample, _rng=np.random.default_rng(0)):
            return random_augment(sample, _rng, (size, size))

        t = time.perf_counter()
        count = sum(1 for _ in ShardDataset(tmp, transform=aug, shuffle_buffer=16))
        dt = time.perf_counter() - t
        print(f"shard decode+augment {size}x{size}, 1 thread: {_rate(count, dt)}")

        if workers > 0:
            ds = ShardDataset(tmp, transform=aug)
            loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers)
            t = time.perf_counter()
            count = sum(1 for _ in loader)
            dt = time.perf_counter() - t
            print(
                f"shard decode+augment, DataLoader x{workers} workers: {count / dt:8.1f} samples/s total, "
                f"{count / dt / workers:8.1f} per worker process"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--renders", type=int, default=40, help="renders to time (256^2)")
    parser.add_argument("--render-size", type=int, default=256)
    parser.add_argument("--samples", type=int, default=96, help="shard samples to decode (512^2)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--distinct", type=int, default=12, help="distinct rendered images inside the shards")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for the last figure (0 = skip)")
    parser.add_argument("--image-format", choices=("png", "jpg"), default="png")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", UserWarning)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPU(s) visible, torch threads = {torch.get_num_threads()}")
    bench_render(args.renders, args.render_size)
    bench_shards(args.samples, args.size, args.distinct, args.workers, args.image_format)


if __name__ == "__main__":
    main()
