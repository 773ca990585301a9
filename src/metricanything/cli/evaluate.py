"""``metricanything eval``: evaluate models and baselines on a benchmark protocol.

Examples::

    metricanything eval --model runs/teacher --benchmark synthetic_indoor \\
        --prompt points:500 downsample:8 lidar:16 extreme:5 \\
        --compare baseline:nearest baseline:linear baseline:ipbasic baseline:prompt_median baseline:train_median
    metricanything eval --model runs/student --benchmark booster --root /data/booster
    metricanything eval --model teacher_dir --model student_dir --data folder:../shared/real_frames
    metricanything eval --list
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from metricanything.errors import InvalidInputError

#: The protocol a ``--data`` dataset is evaluated with when no ``--benchmark`` is given.
DEFAULT_DATA_PROTOCOL = "real_dev"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", default=[], metavar="CKPT",
                        help="checkpoint folder / file of a teacher or student (repeatable)")  # fmt: skip
    parser.add_argument("--benchmark", metavar="NAME", help="benchmark name (see --list) or a benchmark YAML path")
    parser.add_argument("--data", metavar="LOADER:PATH",
                        help="evaluate this dataset (e.g. folder:PATH for any folder-format dataset) with the "
                             f"--benchmark protocol, by default {DEFAULT_DATA_PROTOCOL!r}: completion at 1 %% and "
                             "0.1 %% random prompts and a 16-beam LiDAR on held-out pixels next to linear / nearest "
                             "interpolation, and monocular depth next to the per-frame oracle constant")  # fmt: skip
    parser.add_argument("--prompt", nargs="+", metavar="PATTERN",
                        help="prompt pattern(s), one result column each (e.g. points:500 downsample:8 lidar:16 "
                             "extreme:5 frac:0.01); 'none' is a prompt-free column; default: the benchmark's own")  # fmt: skip
    parser.add_argument("--out", metavar="DIR", help="output folder (default: eval_results/<benchmark>)")
    parser.add_argument("--compare", nargs="+", default=[], metavar="NAME",
                        help="more models/baselines side by side: checkpoint paths or baseline:nearest, "
                             "baseline:linear, baseline:ipbasic, baseline:prompt_median, "
                             "baseline:train_median[=METRES]")  # fmt: skip
    parser.add_argument("--root", metavar="PATH", help="dataset root (overrides the benchmark's environment variable)")
    parser.add_argument("--limit", type=int, metavar="N", help="evaluate only the first N samples")
    parser.add_argument("--frames", nargs="+", metavar="ID", help="evaluate only these sample ids")
    parser.add_argument("--panels", type=int, default=3, metavar="N", help="qualitative panels: first N samples")
    parser.add_argument("--device", default="cpu", help="device for models (cpu, cuda, ...)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"), help="model precision")
    parser.add_argument("--list", action="store_true", help="list the shipped benchmarks and exit")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def model_predictor(path: str, device: str = "cpu", precision: str = "fp32", name: str | None = None):
    """A checkpoint as an evaluation predictor that runs through the public API (``api.load_model`` +
    ``api.infer`` with the benchmark's prompt and intrinsics), exactly as ``metricanything infer`` does."""
    from metricanything import api
    from metricanything.eval.baselines import ExternalModel
    from metricanything.models.checkpoint import model_kind

    model = api.load_model(path, device=device, precision=precision)
    kind = model_kind(model)

    def infer(m, image, intrinsics=None, prompt=None):
        return api.infer(m, image, intrinsics=intrinsics, prompt=prompt, precision=precision)

    size = getattr(model, "network_size", None) if kind == "student" else None
    name = name or f"{kind}:{Path(path).name or path}"
    return ExternalModel.from_api(model, infer, name, accepts_prompt=kind == "teacher",
                                  input_size=(size, size) if size else None)  # fmt: skip


def _model_loader(device: str, precision: str):
    """Build predictors for checkpoint paths through the public inference API."""
    return lambda path: model_predictor(path, device, precision)


def data_benchmark(data: str, benchmark: str | None):
    """The benchmark for ``--data LOADER:PATH``: the protocol of ``benchmark`` (default ``real_dev``) on that data."""
    from metricanything.eval.benchmarks import load_benchmark

    kind, sep, path = data.partition(":")
    if not sep or not kind or not path:
        raise InvalidInputError(f"--data {data!r}: expected LOADER:PATH, e.g. folder:../shared/real_frames")
    if not Path(path).exists():
        raise InvalidInputError(f"--data {data!r}: {path} does not exist")
    spec = load_benchmark(benchmark or DEFAULT_DATA_PROTOCOL)
    name = f"{spec.name}@{Path(path).resolve().name}"
    return spec.with_overrides(name=name, dataset=kind, root=str(Path(path).resolve()), root_env=None, split=None,
                               loader_options={})  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from metricanything.eval.benchmarks import list_benchmarks, load_benchmark
    from metricanything.eval.report import comparison_lines, per_frame_table, summary_table
    from metricanything.eval.runner import build_predictor, evaluate

    if args.list:
        for name in list_benchmarks():
            spec = load_benchmark(name)
            print(f"{name:26s} {spec.description.strip()[:100]}")
        return 0
    if not args.benchmark and not args.data:
        raise InvalidInputError("--benchmark NAME or --data LOADER:PATH is required (see --list)")
    if args.limit is not None and args.limit < 1:
        raise InvalidInputError(f"--limit must be a positive integer, got {args.limit}")
    if args.data and args.root:
        raise InvalidInputError("--data already names the dataset; drop --root")
    spec = data_benchmark(args.data, args.benchmark) if args.data else load_benchmark(args.benchmark)
    names = list(args.model) + list(args.compare)
    if not names and not spec.compare:
        raise InvalidInputError("give --model CKPT and/or --compare NAME ...")
    if len(set(names)) != len(names):
        raise InvalidInputError(f"a model/baseline is listed twice: {names}")
    prompts = None
    if args.prompt:
        prompts = [None if p.lower() == "none" else p for p in args.prompt]
    loader = _model_loader(args.device, args.precision)
    predictors = {}
    for n in names:
        p = build_predictor(n, spec, loader, root=args.root)
        key = p.name if p.name not in predictors else n
        predictors[key] = p
    out = Path(args.out) if args.out else Path("eval_results") / spec.name.replace("@", "_")
    results = evaluate(predictors, spec, prompts, out, root=args.root, limit=args.limit, sample_ids=args.frames,
                       num_panels=args.panels, progress=not args.quiet and sys.stderr.isatty())  # fmt: skip
    b = results.benchmark
    print(f"{b.name}: {results.num_samples} images, {b.primary_metric} ({b.aggregation.replace('_', '-')})")
    print(summary_table(results))
    if b.reference is not None or b.oracle_constant:
        for col in results.columns:
            print(f"\nprompt: {col}")
            print(per_frame_table(results, col))
        print("\nsummary:")
        print("\n".join(comparison_lines(results)))
    print(f"outputs: {out}/ (metrics.json, report.md, per_image.csv, error_by_distance.png, panels/)")
    return 0
