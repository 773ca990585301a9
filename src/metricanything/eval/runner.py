"""Run predictors over a benchmark and score them (:class:`~metricanything.eval.results.EvalResults`).

:func:`evaluate` is the one entry point (``metricanything eval`` runs it through
:func:`metricanything.tasks.evaluate.run`, which writes the files with :mod:`metricanything.eval.report`).
For each sample (in the benchmark's fixed order) and each prompt column:

1. the sample is brought to ``eval_resolution`` (:func:`~metricanything.eval.protocol.resample_sample`);
2. the prompt is built from the GT by :func:`~metricanything.prompts.patterns.make_prompt` (or, for
   ``frac:F``, by :func:`~metricanything.eval.protocol.fraction_prompt`) with seed ``benchmark.seed +
   sample index`` (``benchmark.seed`` itself when ``seed_per_sample`` is false); the same prompt goes to every
   predictor of the column;
3. each predictor gets the image with the GT removed, the prompt, and the GT intrinsics (focal source
   ``gt``) or None (``predicted``); with ``model_resolution`` the image, prompt and intrinsics are resized
   first and the prediction is resized back with ``upsample``; with ``input_resize: released`` a predictor
   with a fixed square input gets the image resized the released evaluation's way
   (:func:`~metricanything.eval.protocol.released_resize`) and its prediction comes back through
   :func:`~metricanything.eval.protocol.upsample_inverse_depth`;
4. the prediction is scored by :class:`~metricanything.eval.protocol.BenchmarkScorer`;
5. with ``oracle_constant``, the prompt-free column also scores ``oracle:constant`` (the frame's
   delta1-optimal constant depth, from the GT); with ``reference``, every predictor is compared to the
   reference frame by frame (:func:`~metricanything.eval.protocol.compare_to_reference`), per column.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from metricanything.data.sample import RGBDSample
from metricanything.errors import InvalidInputError
from metricanything.eval.baselines import (
    BASELINES,
    ConstantDepth,
    Predictor,
    as_depth_array,
    check_prompt_compatibility,
)
from metricanything.eval.benchmarks import (
    BenchmarkSpec,
    iter_benchmark_samples,
    load_benchmark,
    resolve_root,
    training_median,
)
from metricanything.eval.protocol import (
    BenchmarkScorer,
    compare_to_reference,
    fraction_prompt,
    oracle_constant,
    parse_fraction_pattern,
    released_resize,
    resample_sample,
    resize_depth,
    resize_image,
    scoring_mask,
    upsample_inverse_depth,
)
from metricanything.eval.results import NO_PROMPT, ORACLE, EvalResults, PanelData, format_value
from metricanything.prompts.patterns import make_prompt, parse_pattern
from metricanything.prompts.prompt import Prompt

# ---------------------------------------------------------------------------------------------- predictors
ModelLoader = Callable[[str], Predictor]


def build_predictor(
    name: str, spec: BenchmarkSpec, model_loader: ModelLoader | None = None, root: str | os.PathLike | None = None
) -> Predictor:
    """A predictor from a ``--compare`` name: ``baseline:<kind>[=value]`` or a checkpoint (``model_loader``).

    Baselines: ``nearest``, ``linear``, ``ipbasic``, ``knn_plane``, ``knn_plane_guided``, ``prompt_median``,
    ``train_median`` (value in metres, or
    the benchmark's training median, see :func:`~metricanything.eval.benchmarks.training_median`; ``root``
    is the dataset root used when it is computed from a training split).
    """
    if name.startswith("baseline:"):
        kind, _, arg = name[len("baseline:"):].partition("=")
        if kind == "train_median":
            if arg:
                try:
                    value = float(arg)
                except ValueError:
                    raise InvalidInputError(f"{name}: the value after '=' must be a depth in metres") from None
            else:
                value = training_median(spec, root)
            return ConstantDepth(value, name="baseline:train_median")
        if kind not in BASELINES:
            valid = ", ".join(f"baseline:{k}" for k in [*BASELINES, "train_median"])
            raise InvalidInputError(f"unknown baseline {name!r}; valid baselines: {valid}")
        if arg:
            raise InvalidInputError(f"{name}: baseline:{kind} takes no value")
        return BASELINES[kind](None)
    if model_loader is None:
        raise InvalidInputError(f"{name!r} is not a baseline and no model loader was given")
    return model_loader(name)


# ---------------------------------------------------------------------------------------------- prompts
def build_prompt(pattern: str, sample: RGBDSample, seed: int) -> Prompt:
    """The prompt of ``pattern`` for ``sample``, drawn from its GT (validity, intrinsics, image) with ``seed``.

    ``frac:F`` is the real-frames recipe (:func:`~metricanything.eval.protocol.fraction_prompt`); every other
    pattern is one of :mod:`metricanything.prompts.patterns`.
    """
    frac = parse_fraction_pattern(pattern)
    if frac is not None:
        return fraction_prompt(sample.depth, sample.valid, frac, seed)
    return make_prompt(pattern, sample.depth, sample.valid, sample.intrinsics, image=sample.image, seed=seed)


def check_pattern(pattern: str) -> None:
    """Raise :class:`InvalidInputError` (the pattern module's message) for a malformed prompt pattern."""
    if parse_fraction_pattern(pattern) is not None:
        return
    parse_pattern(pattern)


def _blank_gt(sample: RGBDSample) -> RGBDSample:
    """The sample a predictor sees: the image and camera, never the GT."""
    return sample.replace(depth=np.zeros_like(sample.depth), valid=np.zeros_like(sample.valid))


def _resized_view(sample: RGBDSample, image: np.ndarray) -> RGBDSample:
    """What a predictor sees of ``sample`` when its image is resized to ``image`` (no GT, intrinsics resized)."""
    h, w = image.shape[:2]
    return RGBDSample(
        image=image, depth=np.zeros((h, w), np.float32), valid=np.zeros((h, w), bool),
        intrinsics=sample.intrinsics.resized(w, h), camera_id=sample.camera_id, scene_id=sample.scene_id,
        dataset=sample.dataset, sample_id=sample.sample_id,
    )  # fmt: skip


def run_predictor(
    predictor: Predictor, sample: RGBDSample, prompt: Prompt | None, spec: BenchmarkSpec
) -> np.ndarray:
    """One prediction at the sample's size under ``spec``'s focal source / model resolution / upsampling."""
    K = sample.intrinsics if spec.focal_source == "gt" else None
    view = _blank_gt(sample)
    if spec.input_resize == "released" and predictor.input_size is not None:
        w, h = predictor.input_size
        view = _resized_view(sample, released_resize(sample.image, w, h))
        K = view.intrinsics if K is not None else None
        prompt = prompt.resized(w, h) if prompt is not None else None
        out = predictor.predict(view, prompt, K)
        depth = as_depth_array(out, w, h, predictor.name, spec.upsample)
        return upsample_inverse_depth(depth, sample.width, sample.height)
    if spec.model_resolution is not None and spec.model_resolution != (sample.width, sample.height):
        w, h = spec.model_resolution
        view = _resized_view(sample, resize_image(sample.image, w, h))
        K = view.intrinsics if K is not None else None
        prompt = prompt.resized(w, h) if prompt is not None else None
    out = predictor.predict(view, prompt, K)
    depth = as_depth_array(out, view.width, view.height, predictor.name, spec.upsample)
    return resize_depth(depth, sample.width, sample.height, spec.upsample)


# ---------------------------------------------------------------------------------------------- evaluate
def evaluate(
    predictors: Mapping[str, Predictor],
    benchmark: BenchmarkSpec | str,
    prompts: Iterable[str | None] | None = None,
    *,
    root: str | os.PathLike | None = None,
    limit: int | None = None,
    sample_ids: Sequence[str] | None = None,
    num_panels: int = 3,
    progress: bool = False,
) -> EvalResults:
    """Evaluate every predictor on ``benchmark`` with each prompt pattern (one column each).

    ``prompts``: patterns such as ``points:500``; None/empty -> the benchmark's default prompts, or one
    prompt-free column when it has none (a ``None`` entry is a prompt-free column). The benchmark's
    ``compare`` predictors are added when missing. Mismatches (a prompt-free model with a prompt, a
    prompt-only baseline without) raise :class:`InvalidInputError` before any work, unless the benchmark
    has ``skip_incompatible`` (then the cell is left out and recorded as not applicable; a predictor with no
    column it can run still raises). ``sample_ids`` keeps only those samples. Nothing is written:
    :func:`metricanything.eval.report.write_outputs` writes the files of the returned results.
    """
    spec = benchmark if isinstance(benchmark, BenchmarkSpec) else load_benchmark(benchmark)
    # a predictor that is one of the benchmark's compare entries is known by that name (the reference is one)
    predictors = {(p.name if p.name in spec.compare else k): p for k, p in predictors.items()}
    present = set(predictors)
    for extra in spec.compare:
        if extra not in present:
            predictors[extra] = build_predictor(extra, spec, None, root)
    if not predictors:
        raise InvalidInputError("nothing to evaluate: give at least one model or baseline")
    if ORACLE in predictors:
        raise InvalidInputError(f"{ORACLE!r} is reserved for the benchmark's oracle constant")
    patterns: list[str | None] = list(prompts) if prompts else list(spec.prompts) or [None]
    patterns = [None if p is None or p.lower() == NO_PROMPT else p for p in patterns]
    columns = [p if p is not None else NO_PROMPT for p in patterns]
    if len(set(columns)) != len(columns):
        raise InvalidInputError(f"prompt patterns repeat: {columns}")
    for p in patterns:
        if p is not None:
            check_pattern(p)  # a bad pattern fails now, with the pattern module's message
    runs: dict[str, list[str]] = {}  # predictor -> the columns it runs
    not_applicable: dict[str, dict[str, str]] = {}
    for name, pred in predictors.items():
        runs[name], not_applicable[name] = [], {}
        for p, col in zip(patterns, columns, strict=True):
            try:
                check_prompt_compatibility(pred, p)
                runs[name].append(col)
            except InvalidInputError as exc:
                if not spec.skip_incompatible:
                    raise
                not_applicable[name][col] = str(exc)
        if not runs[name]:
            raise InvalidInputError(f"{pred.name} can run none of the columns {columns}: " + "; ".join(not_applicable[name].values()))
    if not spec.is_synthetic:
        resolve_root(spec, root)  # a missing dataset fails before any model work
    oracle = spec.oracle_constant and NO_PROMPT in columns
    names = list(predictors) + ([ORACLE] if oracle else [])

    scorers = {name: {col: BenchmarkScorer(spec) for col in columns} for name in names}
    timing = {name: 0.0 for name in predictors}
    calls = {name: 0 for name in predictors}
    records: list[dict[str, Any]] = []
    panels: list[PanelData] = []
    samples = iter_benchmark_samples(spec, root, limit, sample_ids)
    bar = _progress(samples, spec, limit, progress)
    n = 0
    for index, raw in enumerate(bar):
        sample = resample_sample(raw, spec.eval_resolution)
        n += 1
        seed = spec.seed + index if spec.seed_per_sample else spec.seed
        for pattern, col in zip(patterns, columns, strict=True):
            prompt = build_prompt(pattern, sample, seed) if pattern is not None else None
            pdepth, pmask = prompt.to_map() if prompt is not None else (None, None)
            if prompt is not None and not pmask.any():
                prompt = None  # an empty prompt (e.g. no keypoints) is a prompt-free input; recorded below
            panel = None
            if index < num_panels:
                panel = PanelData(sample.sample_id, col, sample.image, sample.depth, sample.valid, pdepth, pmask)
                panels.append(panel)
            n_points = int(pmask.sum()) if pmask is not None else 0
            for name, predictor in predictors.items():
                if col not in runs[name]:
                    continue
                if prompt is None and predictor.needs_prompt:
                    scorers[name][col].skipped.append((sample.sample_id, "empty prompt"))
                    continue
                t0 = time.perf_counter()
                pred = run_predictor(predictor, sample, prompt, spec)
                timing[name] += time.perf_counter() - t0
                calls[name] += 1
                score = scorers[name][col].score(pred, sample, pdepth, pmask)
                if score.metrics is not None:
                    records.append({"predictor": name, "prompt": col, "sample_id": sample.sample_id,
                                    "prompt_points": n_points, **score.metrics})  # fmt: skip
                if panel is not None:
                    panel.predictions[name] = score.pred
                    panel.masks[name] = score.mask
            if oracle and pattern is None:
                _score_oracle(scorers[ORACLE][col], sample, spec, records)
    if n == 0:
        raise InvalidInputError(f"benchmark {spec.name!r} yielded no sample")
    summaries = {name: {col: scorers[name][col].summary() for col in columns} for name in names}
    for name, cols in not_applicable.items():
        for col, why in cols.items():
            summaries[name][col] = {"aggregation": spec.aggregation, "num_images": 0, "headline": None,
                                    "skipped": [], "not_applicable": why}  # fmt: skip
    if oracle:
        for col in columns:
            if col != NO_PROMPT:
                summaries[ORACLE][col] = {"aggregation": spec.aggregation, "num_images": 0, "headline": None,
                                          "skipped": [], "not_applicable": "prompt-free column only"}  # fmt: skip
    results = EvalResults(
        benchmark=spec,
        predictors=names,
        columns=columns,
        summaries=summaries,
        records=records,
        timing={name: timing[name] / max(calls[name], 1) for name in predictors},
        num_samples=n,
        panels=panels,
    )
    results.comparisons = _comparisons(results)
    return results


def _score_oracle(scorer: BenchmarkScorer, sample: RGBDSample, spec: BenchmarkSpec, records: list[dict[str, Any]]) -> None:
    """Score the frame's oracle constant (prompt-free column) and record both constants."""
    mask = scoring_mask(spec, sample)
    if not mask.any():
        scorer.skipped.append((sample.sample_id, "no scored pixel (crop/range/validity)"))
        return
    best = oracle_constant(sample.depth[mask])
    const = np.full(sample.depth.shape, best["constant"], dtype=np.float32)
    score = scorer.score(const, sample)
    extra = {"constant": best["constant"], "abs_rel_constant": best["abs_rel_constant"],
             "abs_rel_at_abs_rel_constant": best["abs_rel_at_abs_rel_constant"]}  # fmt: skip
    scorer.records[-1].update(extra)
    records.append({"predictor": ORACLE, "prompt": NO_PROMPT, "sample_id": sample.sample_id, "prompt_points": 0,
                    **score.metrics, **extra})  # fmt: skip


def _comparisons(results: EvalResults) -> dict[str, dict[str, dict[str, Any]]]:
    """Per column: every predictor against the benchmark's reference (AbsRel, frame by frame)."""
    ref = results.benchmark.reference
    out: dict[str, dict[str, dict[str, Any]]] = {}
    if ref is None:
        return out
    for col in results.columns:
        reference = results.per_frame(ref, col)
        if not reference:
            continue
        for name in results.predictors:
            if name == ref:
                continue
            cmp = compare_to_reference(results.per_frame(name, col), reference)
            if cmp is not None:
                out.setdefault(col, {})[name] = cmp
    return out


def _progress(samples, spec: BenchmarkSpec, limit: int | None, enabled: bool):
    if not enabled:
        return samples
    total = limit if limit is not None else spec.limit
    if total is None and spec.synthetic is not None:
        total = spec.synthetic.num
    return tqdm(samples, total=total, desc=f"eval {spec.name}", unit="img", leave=False)


__all__ = [
    "NO_PROMPT",
    "ORACLE",
    "EvalResults",
    "PanelData",
    "build_predictor",
    "build_prompt",
    "check_pattern",
    "evaluate",
    "format_value",
    "run_predictor",
]
