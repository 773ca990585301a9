"""``metricanything eval``: models and baselines on a benchmark protocol, every output written to one folder.

Checkpoints run through the public API (:func:`model_predictor`: ``api.load_model`` + ``api.infer`` with the
benchmark's prompt and intrinsics), exactly as ``metricanything infer`` runs them; the scoring is
:func:`metricanything.eval.runner.evaluate`, the files :func:`metricanything.eval.report.write_outputs`.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

from metricanything import api
from metricanything.errors import InvalidInputError
from metricanything.eval.baselines import ExternalModel, Predictor
from metricanything.eval.benchmarks import BenchmarkSpec, list_benchmarks, load_benchmark
from metricanything.eval.report import comparison_lines, per_frame_table, summary_table, write_outputs
from metricanything.eval.results import NO_PROMPT, EvalResults
from metricanything.eval.runner import build_predictor, evaluate
from metricanything.models.registry import spec_of
from metricanything.tasks.options import option

#: The protocol a ``--data`` dataset is evaluated with when no ``--benchmark`` is given.
DEFAULT_DATA_PROTOCOL = "real_dev"


@dataclass
class EvalOptions:
    """What ``metricanything eval`` takes (see ``metricanything eval --help``)."""

    models: list[str] = option("--model", factory=list, many="repeat")  # checkpoint paths
    benchmark: str | None = option("--benchmark", None)
    data: str | None = option("--data", None)  # LOADER:PATH, evaluated with the benchmark's protocol
    prompts: list[str] | None = option("--prompt", None, many="nargs")  # None: the benchmark's; "none": prompt-free
    out: Path | None = option("--out", None)  # default eval_results/<benchmark>
    compare: list[str] = option("--compare", factory=list, many="nargs")  # checkpoints or baseline:<kind>[=value]
    root: str | None = option("--root", None)
    limit: int | None = option("--limit", None)
    frames: list[str] | None = option("--frames", None, many="nargs")
    panels: int = option("--panels", 3)
    device: str = option("--device", "cpu")
    precision: str = option("--precision", "fp32")
    list_only: bool = option("--list", False)
    progress: bool = option("--quiet", True, invert=True)


def model_name(path: str | Path, kind: str) -> str:
    """``<kind>:<folder>``; for the ``<run>/model`` folder a training run writes, the run's folder name."""
    p = Path(path)
    return f"{kind}:{(p.parent.name if p.name == 'model' and p.parent.name else p.name) or path}"


def model_predictor(path: str, device: str = "cpu", precision: str = "fp32", name: str | None = None) -> Predictor:
    """A checkpoint as an evaluation predictor that runs through the public API (``api.load_model`` +
    ``api.infer`` with the benchmark's prompt and intrinsics), exactly as ``metricanything infer`` does."""
    model = api.load_model(path, device=device, precision=precision)
    spec = spec_of(model)

    def infer(m, image, intrinsics=None, prompt=None):
        return api.infer(m, image, intrinsics=intrinsics, prompt=prompt, precision=precision)

    size = getattr(model, "network_size", None)  # a fixed network input size (the student's tile)
    return ExternalModel.from_api(model, infer, name or model_name(path, spec.kind), accepts_prompt=spec.takes_prompt,
                                  input_size=(size, size) if size else None)  # fmt: skip


def data_benchmark(data: str, benchmark: str | None) -> BenchmarkSpec:
    """The benchmark for ``--data LOADER:PATH``: the protocol of ``benchmark`` (default ``real_dev``) on that data."""
    kind, sep, path = data.partition(":")
    if not sep or not kind or not path:
        raise InvalidInputError(f"--data {data!r}: expected LOADER:PATH, e.g. folder:../shared/real_frames")
    if not Path(path).exists():
        raise InvalidInputError(f"--data {data!r}: {path} does not exist")
    spec = load_benchmark(benchmark or DEFAULT_DATA_PROTOCOL)
    root = Path(path).resolve()
    return dataclasses.replace(spec, name=f"{spec.name}@{root.name}", dataset=kind, root=str(root), root_env=None,
                               split=None, loader_options={})  # fmt: skip


def _check(o: EvalOptions) -> None:
    if not o.benchmark and not o.data:
        raise InvalidInputError("--benchmark NAME or --data LOADER:PATH is required (see --list)")
    if o.limit is not None and o.limit < 1:
        raise InvalidInputError(f"--limit must be a positive integer, got {o.limit}")
    if o.data and o.root:
        raise InvalidInputError("--data already names the dataset; drop --root")
    names = list(o.models) + list(o.compare)
    if len(set(names)) != len(names):
        raise InvalidInputError(f"a model/baseline is listed twice: {names}")


def run(options: EvalOptions) -> EvalResults | None:
    """Evaluate, write every output into ``out`` and print the summary tables (``list_only``: print the
    shipped benchmarks and return None)."""
    o = options
    if o.list_only:
        for name in list_benchmarks():
            print(f"{name:26s} {load_benchmark(name).description.strip()[:100]}")
        return None
    _check(o)
    spec = data_benchmark(o.data, o.benchmark) if o.data else load_benchmark(o.benchmark)
    if not o.models and not o.compare and not spec.compare:
        raise InvalidInputError("give --model CKPT and/or --compare NAME ...")
    predictors: dict[str, Predictor] = {}
    for n in list(o.models) + list(o.compare):
        p = build_predictor(n, spec, lambda path: model_predictor(path, o.device, o.precision), root=o.root)
        predictors[p.name if p.name not in predictors else n] = p
    prompts = [None if p.lower() == NO_PROMPT else p for p in o.prompts] if o.prompts else None
    out = Path(o.out) if o.out else Path("eval_results") / spec.name.replace("@", "_")
    results = evaluate(predictors, spec, prompts, root=o.root, limit=o.limit, sample_ids=o.frames, num_panels=o.panels,
                       progress=o.progress and sys.stderr.isatty())  # fmt: skip
    write_outputs(results, out)
    b = results.benchmark
    print(f"{b.name}: {results.num_samples} images, {b.primary_metric} ({b.aggregation.replace('_', '-')})")
    print(summary_table(results))
    if b.reference is not None or b.oracle_constant:
        for col in results.columns:
            print(f"\nprompt: {col}\n{per_frame_table(results, col)}")
        print("\nsummary:\n" + "\n".join(comparison_lines(results)))
    print(f"outputs: {out}/ (metrics.json, report.md, per_image.csv, error_by_distance.png, panels/)")
    return results


__all__ = ["DEFAULT_DATA_PROTOCOL", "EvalOptions", "data_benchmark", "model_name", "model_predictor", "run"]
