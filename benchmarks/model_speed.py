"""Forward latency and peak memory of the teacher and student presets.

CPU (default): teacher and student ``tiny`` / ``small`` at 256^2 and 518^2 input images, batch 1, fp32,
``--threads`` threads (2). Each configuration runs in a fresh subprocess so that peak memory is meaningful:
memory = peak RSS during the timed forwards (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) minus the resident
set after the model was built (``/proc/self/statm``), i.e. the activation/workspace memory of inference.

* Teacher: ``Teacher.forward`` with ``image_size`` set to the input's long side (so the ViT runs at that size,
  padded to a patch multiple; the padded network size is printed) and 64 prompt points.
* Student: ``Student.infer`` (the official conventions): the image is squashed to the fixed network input
  S = 4 x tile (printed), whatever the input size, and the prediction resized back.

``--cuda``: S / B / L / H+ presets in bf16 autocast on the GPU, latency with ``torch.cuda.synchronize`` and peak
memory from ``torch.cuda.max_memory_allocated``.

Usage::

    python benchmarks/model_speed.py                       # CPU table
    python benchmarks/model_speed.py --cuda                # GPU table (bf16)
    python benchmarks/model_speed.py --presets tiny --sizes 256 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

CPU_PRESETS = ("tiny", "small")
CUDA_PRESETS = ("small", "base", "large", "huge_plus")
STUDENT_PRESET = {"tiny": "tiny", "small": "small", "base": "base", "large": "large", "huge_plus": "official"}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _build(kind: str, preset: str, size: int):
    from metricanything.models.student import Student, student_config
    from metricanything.models.teacher import Teacher, teacher_config

    if kind == "teacher":
        model = Teacher(teacher_config(preset, image_size=size))
        ps = model.patch_size
        side = -(-size // ps) * ps
        net = f"{side}x{side}"
    else:
        model = Student(student_config(STUDENT_PRESET[preset]))
        net = f"{model.network_size}x{model.network_size} (fixed)"
    return model.eval(), net


def _inputs(kind: str, size: int, device):
    import torch

    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, size, size, generator=g).to(device)
    if kind == "student":
        return (x,), {"f_px": float(size)}
    pd = torch.zeros(1, 1, size, size)
    pm = torch.zeros(1, 1, size, size, dtype=torch.bool)
    idx = torch.randperm(size * size, generator=g)[:64]
    pm.view(-1)[idx] = True
    pd.view(-1)[idx] = 1 + 5 * torch.rand(64, generator=g)
    return (x, pd.to(device), pm.to(device)), {"f_px": float(size)}


def child(kind: str, preset: str, size: int, repeats: int, threads: int) -> dict:
    """Measure one configuration on CPU (run in a fresh process)."""
    import torch

    torch.set_num_threads(threads)
    model, net = _build(kind, preset, size)
    params = sum(p.numel() for p in model.parameters())
    args, kw = _inputs(kind, size, "cpu")
    fn = model.infer if kind == "student" else model
    base = _rss_bytes()
    times = []
    with torch.inference_mode():
        fn(*args, **kw)  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(*args, **kw)
            times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "model": kind, "preset": preset, "input": f"{size}x{size}", "network": net, "params_M": params / 1e6,
        "median_ms": 1e3 * statistics.median(times), "min_ms": 1e3 * min(times),
        "peak_mem_MiB": max(peak - base, 0) / 2**20, "threads": threads, "repeats": repeats,
    }


def run_cpu(args: argparse.Namespace) -> None:
    print(f"CPU, fp32, batch 1, {args.threads} threads, median of {args.repeats} (after 1 warm-up)")
    print(f"{'model':8} {'preset':6} {'input':>8} {'network input':>20} {'params':>8} {'median':>10} {'min':>10} "
          f"{'peak mem':>10}")
    for kind in args.models:
        for preset in args.presets:
            for size in args.sizes:
                cmd = [sys.executable, __file__, "--_child", kind, preset, str(size), str(args.repeats),
                       str(args.threads)]
                out = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if out.returncode != 0:
                    print(f"{kind:8} {preset:6} {size:>8} FAILED: {out.stderr.strip().splitlines()[-1:]}")
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"{r['model']:8} {r['preset']:6} {r['input']:>8} {r['network']:>20} {r['params_M']:7.1f}M "
                      f"{r['median_ms']:8.0f}ms {r['min_ms']:8.0f}ms {r['peak_mem_MiB']:8.0f}MiB", flush=True)


def run_cuda(args: argparse.Namespace) -> None:
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("--cuda: no CUDA device available")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    dev = torch.device("cuda")
    print(f"{torch.cuda.get_device_name(0)}, bf16 autocast, batch {args.batch}, median of {args.repeats}")
    print(f"{'model':8} {'preset':10} {'input':>8} {'network input':>20} {'params':>8} {'median':>10} {'peak mem':>10}")
    presets = args.presets if args.presets_given else CUDA_PRESETS
    for kind in args.models:
        for preset in presets:
            for size in args.sizes:
                model, net = _build(kind, preset, size)
                model = model.to(dev)
                params = sum(p.numel() for p in model.parameters())
                a, kw = _inputs(kind, size, dev)
                a = tuple(t.expand(args.batch, *t.shape[1:]).contiguous() for t in a)
                fn = model.infer if kind == "student" else model
                torch.cuda.reset_peak_memory_stats()
                times = []
                with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
                    for _ in range(2):
                        fn(*a, **kw)
                    torch.cuda.synchronize()
                    for _ in range(args.repeats):
                        t0 = time.perf_counter()
                        fn(*a, **kw)
                        torch.cuda.synchronize()
                        times.append(time.perf_counter() - t0)
                peak = torch.cuda.max_memory_allocated() / 2**20
                print(f"{kind:8} {preset:10} {size:>8} {net:>20} {params / 1e6:7.1f}M "
                      f"{1e3 * statistics.median(times):8.1f}ms {peak:8.0f}MiB", flush=True)
                del model
                torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_child"]:
        kind, preset, size, repeats, threads = argv[1], argv[2], int(argv[3]), int(argv[4]), int(argv[5])
        print(json.dumps(child(kind, preset, size, repeats, threads)))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["teacher", "student"], choices=["teacher", "student"])
    p.add_argument("--presets", nargs="+", default=None, help="default: tiny small (CPU), small base large huge_plus (CUDA)")
    p.add_argument("--sizes", nargs="+", type=int, default=[256, 518])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=1, help="batch size (CUDA mode)")
    p.add_argument("--cuda", action="store_true", help="GPU benchmark in bf16")
    args = p.parse_args(argv)
    args.presets_given = args.presets is not None
    if args.presets is None:
        args.presets = list(CUDA_PRESETS if args.cuda else CPU_PRESETS)
    run_cuda(args) if args.cuda else run_cpu(args)


if __name__ == "__main__":
    main()
