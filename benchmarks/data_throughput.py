"""Data-engine throughput: procedural renders per second, and shard decode (+ augmentation) per second.

* render: ``render_sample(seed, size=(256, 256))`` for fresh seeds (random indoor/outdoor scene and camera).
* shards: rendered 512 x 512 samples are packed into PNG tar shards (not timed); the timed part reads every
  sample by index with :class:`ShardIndex` (tar read + PNG/npy decode + RGBDSample validation), then again
  through ``random_augment(..., out_size=(512, 512))`` (resize/crop/flip with exact intrinsics + colour
  jitter), then through a DataLoader with ``--workers`` processes.

Single-process figures run with ``torch.set_num_threads(1)``; each line prints the wall-clock rate and the
rate per CPU-second of the process (= the per-core figure, and the one that stays meaningful when other jobs
share the machine). The DataLoader line reports the workers' CPU time the same way. Targets: >= 20 renders/s (256^2) and
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
from metricanything.data.shards import ShardIndex, ShardWriter


class Clock:
    """Wall time and this process's CPU time; CPU-time rates stay meaningful on a shared, loaded machine."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def _rate(n: int, c: Clock) -> str:
    return (
        f"{n / c.wall:7.1f} samples/s wall, {n / c.cpu:7.1f} samples/s per CPU-second "
        f"({1000 * c.cpu / n:6.1f} ms CPU/sample, n={n})"
    )


def bench_render(n: int, size: int) -> None:
    render_sample(10_000, size=(size, size))  # warm-up (allocations, first-call overheads)
    with Clock() as c:
        for i in range(n):
            render_sample(i, size=(size, size))
    print(f"render {size}x{size}, 1 thread:               {_rate(n, c)}")


def bench_shards(n: int, size: int, distinct: int, workers: int, image_format: str) -> None:

    print(f"(rendering {distinct} distinct {size}x{size} samples for the shards; not timed)")
    base = [render_sample(50_000 + i, size=(size, size)) for i in range(distinct)]
    with tempfile.TemporaryDirectory() as tmp:
        with ShardWriter(tmp, "shard", max(1, n // 8), image_format=image_format) as writer:
            for i in range(n):
                s = base[i % distinct]
                writer.write(s.replace(sample_id=f"b{i:05d}"))
        mb = sum(os.path.getsize(p) for p in writer.paths) / 2**20
        print(f"shards: {len(writer.paths)} files, {mb:.1f} MiB, {image_format} images")

        index = ShardIndex(tmp)
        for k in range(len(index)):  # warm the page cache
            index.get(k)
        with Clock() as c:
            count = sum(1 for k in range(len(index)) if index.get(k) is not None)
        print(f"shard decode {size}x{size}, 1 thread:         {_rate(count, c)}")

        augmented = Augmented(index, size)
        with Clock() as c:
            count = sum(1 for k in range(len(augmented)) if augmented[k] is not None)
        print(f"shard decode+augment {size}x{size}, 1 thread: {_rate(count, c)}")

        if workers > 0:
            loader = torch.utils.data.DataLoader(augmented, batch_size=None, num_workers=workers)
            import resource

            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            count = sum(1 for _ in loader)
            dt = time.perf_counter() - t
            del loader  # workers exit and are reaped, so their CPU time is counted below
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
            per_cpu = f", {count / cpu:7.1f} samples/s per worker CPU-second" if cpu > 0 else ""
            print(f"shard decode+augment, DataLoader x{workers} workers: {count / dt:7.1f} samples/s wall total{per_cpu}")


class Augmented(torch.utils.data.Dataset):
    """Sample k of a shard index through ``random_augment`` with a generator seeded by k (as training does)."""

    def __init__(self, index: ShardIndex, size: int) -> None:
        self.index, self.size = index, size

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, k: int):
        from metricanything.data.augment import random_augment

        return random_augment(self.index.get(k), np.random.default_rng(k), (self.size, self.size))


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
