"""``metricanything eval``: evaluate models and baselines on a benchmark protocol.

Examples::

    metricanything eval --model runs/teacher --benchmark synthetic_indoor \\
        --prompt points:500 downsample:8 lidar:16 extreme:5 \\
        --compare baseline:nearest baseline:linear baseline:ipbasic baseline:prompt_median baseline:train_median
    metricanything eval --model runs/student --benchmark booster --root /data/booster
    metricanything eval --list
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from metricanything.errors import InvalidInputError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="CKPT", help="checkpoint folder / file of a teacher or student")
    parser.add_argument("--benchmark", metavar="NAME", help="benchmark name (see --list) or a benchmark YAML path")
    parser.add_argument("--prompt", nargs="+", metavar="PATTERN",
                        help="prompt pattern(s), one result column each (e.g. points:500 downsample:8 lidar:16 "
                             "extreme:5); 'none' is a prompt-free column; default: the benchmark's own")  # fmt: skip
    parser.add_argument("--out", metavar="DIR", help="output folder (default: eval_results/<benchmark>)")
    parser.add_argument("--compare", nargs="+", default=[], metavar="NAME",
                        help="more models/baselines side by side: checkpoint paths or baseline:nearest, "
                             "baseline:linear, baseline:ipbasic, baseline:prompt_median, "
                             "baseline:train_median[=METRES]")  # fmt: skip
    parser.add_argument("--root", metavar="PATH", help="dataset root (overrides the benchmark's environment variable)")
    parser.add_argument("--limit", type=int, metavar="N", help="evaluate only the first N samples")
    parser.add_argument("--panels", type=int, default=3, metavar="N", help="qualitative panels: first N samples")
    parser.add_argument("--device", default="cpu", help="device for models (cpu, cuda, ...)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"), help="model precision")
    parser.add_argument("--list", action="store_true", help="list the shipped benchmarks and exit")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _model_loader(device: str, precision: str):
    """Build predictors for checkpoint paths through the public inference API."""

    def load(path: str):
        from metricanything import api
        from metricanything.eval.baselines import ExternalModel
        from metricanything.models.checkpoint import model_kind

        model = api.load_model(path, device=device, precision=precision)
        kind = model_kind(model)

        def infer(m, image, intrinsics=None, prompt=None):
            return api.infer(m, image, intrinsics=intrinsics, prompt=prompt, precision=precision)

        name = f"{kind}:{Path(path).name or path}"
        return ExternalModel.from_api(model, infer, name, accepts_prompt=kind == "teacher")

    return load


def run(args: argparse.Namespace) -> int:
    from metricanything.eval.benchmarks import list_benchmarks, load_benchmark
    from metricanything.eval.report import summary_table
    from metricanything.eval.runner import build_predictor, evaluate

    if args.list:
        for name in list_benchmarks():
            spec = load_benchmark(name)
            print(f"{name:26s} {spec.description}")
        return 0
    if not args.benchmark:
        raise InvalidInputError("--benchmark NAME is required (see --list)")
    if args.limit is not None and args.limit < 1:
        raise InvalidInputError(f"--limit must be a positive integer, got {args.limit}")
    spec = load_benchmark(args.benchmark)
    names = ([args.model] if args.model else []) + list(args.compare)
    if not names:
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
    out = Path(args.out) if args.out else Path("eval_results") / spec.name
    results = evaluate(predictors, spec, prompts, out, root=args.root, limit=args.limit, num_panels=args.panels,
                       progress=not args.quiet and sys.stderr.isatty())  # fmt: skip
    b = results.benchmark
    print(f"{b.name}: {results.num_samples} images, {b.primary_metric} ({b.aggregation.replace('_', '-')})")
    print(summary_table(results))
    print(f"outputs: {out}/ (metrics.json, report.md, per_image.csv, error_by_distance.png, panels/)")
    return 0
