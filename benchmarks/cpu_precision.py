"""Why ``infer`` refuses fp16 on the CPU: one student forward in fp32, bf16 and fp16 on the CPU.

CPUs have no fp16 matrix/convolution units, so PyTorch runs fp16 there through slow fallback kernels; bf16
is the CPU's low-precision format. This times ``Student.infer`` (network input S = 4 x tile, whatever the
image size) with the weights and input cast to each dtype directly (the public API refuses fp16 on the CPU,
so it is bypassed here), after one warm-up forward, and prints seconds per forward and the ratio to fp32.

Usage: ``python benchmarks/cpu_precision.py [--preset tiny] [--threads 1] [--repeats 2]``
(``--preset official`` is the full-size student: minutes per forward on a CPU.)
"""

from __future__ import annotations

import argparse
import time

import torch

from metricanything.models.student import Student, student_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base = Student(student_config(args.preset)).eval()
    x = torch.rand(1, 3, 384, 512)
    fp32 = None
    print(f"student {args.preset!r}, CPU, {args.threads} thread(s), 384x512 image, {args.repeats} timed forward(s)")
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
        model = base.to(dtype)
        xi = x.to(dtype)
        with torch.no_grad():
            model.infer(xi, f_px=400.0)  # warm-up
            t0 = time.perf_counter()
            for _ in range(args.repeats):
                model.infer(xi, f_px=400.0)
            sec = (time.perf_counter() - t0) / args.repeats
        fp32 = sec if fp32 is None else fp32
        print(f"{name}: {sec:8.2f} s/forward  ({sec / fp32:5.1f}x fp32)", flush=True)


if __name__ == "__main__":
    main()
