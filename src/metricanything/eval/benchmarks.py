"""Benchmark definitions as data: one YAML file per benchmark, shipped inside the package
(``metricanything/configs/benchmarks/<name>.yaml``, found with :func:`metricanything.config.find_config`).

A benchmark fixes *every* knob that changes a reported depth number, so a score from
``metricanything eval`` means exactly one thing:

==================  =====================================================================================
key                 meaning
==================  =====================================================================================
``dataset``         loader name in ``metricanything.data.loaders.LOADERS``, or ``synthetic`` (rendered on
                    the fly, see ``synthetic``)
``split``           split passed to the loader (``null`` = the loader's default)
``loader_options``  extra keyword arguments of the loader (e.g. nuScenes ``cameras``)
``root_env``        environment variable holding the dataset root (the ``--root`` flag overrides it;
                    otherwise ``root``, then ``$METRICANYTHING_DATA/<dataset>`` is tried)
``root``            default dataset root; a relative path is looked up from the current directory, then
                    from the source checkout's root (the folder holding ``pyproject.toml``), if any
``layout``          the expected folder layout, quoted in the error when the root is missing
``crop``            ``none`` | ``eigen`` | ``garg`` | ``nyu`` | ``[top, bottom, left, right]`` (an
                    evaluation mask; the model always sees the whole image)
``crop_size``       ``[W, H]`` at which an explicit box is defined; it is scaled to other GT sizes
``depth_range``     ``[min, max]`` metres; GT outside is not scored
``range_bounds``    ``open`` (min < z < max) or ``closed`` (min <= z <= max)
``alignment``       ``none`` | ``median`` | ``lstsq_scale`` | ``lstsq_scale_shift``
``alignment_space`` ``depth`` | ``inverse``
``align_on``        ``gt`` (fit on the scored GT pixels) or ``prompt`` (fit on the prompt pixels only)
``nonpositive``     ``raise`` | ``clip``: what a non-positive aligned (inverse) depth on a scored pixel does
``aggregation``     ``per_image`` (metric per image, then the mean) | ``pooled`` (every scored pixel of
                    the whole benchmark in one set)
``prompts``         default prompt patterns for completion benchmarks (``--prompt`` overrides)
``focal_source``    ``gt`` (the model gets the GT intrinsics) | ``predicted`` (it gets none)
``eval_resolution`` ``null`` (native GT size) or ``[W, H]``: the sample (image, depth, mask, intrinsics) is
                    resampled to this size first (GT by nearest neighbour)
``model_resolution`` ``null`` (the model sees the evaluation-size image) or ``[W, H]``: the image is resized
                    for the model and the prediction resized back to the evaluation size (``upsample``)
``upsample``        ``bilinear`` | ``nearest``: how a prediction of another size reaches the GT size
``clip_prediction`` clamp predictions to ``depth_range`` before scoring (off by default: no hidden clamps)
``exclude_prompt_pixels`` do not score the pixels that were given as prompt
``primary_metric``  the metric of the one-number summary table
``distance_bins``   GT-depth bin edges (m) of the per-range breakdown and the error-by-distance plot
``limit``           default number of samples (``null`` = all; ``--limit`` overrides)
``seed``            base seed of the prompt patterns (prompt of sample i = pattern seeded by seed + i)
``seed_per_sample`` ``false``: every sample's prompt uses ``seed`` itself (the real-frames recipe)
``input_resize``    ``native`` | ``released``: with ``released``, a model with a fixed square input (a student)
                    gets the uint8 image resized to that size as the authors' released evaluation does it
                    (bilinear with antialiasing on uint8, rounded; then scaled to [0, 1] and normalised), its
                    intrinsics resized with it, and its prediction is brought back to the GT size in inverse
                    depth (bilinear, ``align_corners=False``, then 1 / clamp(inverse, 1e-3, 1e3))
``compare``         predictors always evaluated next to the user's (e.g. ``baseline:linear``)
``reference``       a predictor (one of ``compare``) every other one is compared to, frame by frame: the
                    geometric mean over frames of AbsRel / reference AbsRel, frames worse, worst ratio
``oracle_constant`` add ``oracle:constant`` to the prompt-free column: per frame, the single depth value
                    with the highest delta1 on the scored pixels (it sees the GT; an upper bound for any
                    prediction that only knows the scale), see :func:`~metricanything.eval.protocol.oracle_constant`
``skip_incompatible`` a predictor that cannot run a column (a prompt-free student in a prompted column, a
                    prompt-only baseline in the prompt-free one) is left out of it instead of refused
``train_median``    training-set median depth (m) for the ``baseline:train_median`` constant, if known
``train_split``     else the loader split whose median GT depth is that constant (computed on demand)
``synthetic``       for ``dataset: synthetic``: ``family``, ``num``, ``seed_offset``, ``size`` ``[W, H]``,
                    ``fov_ranges`` and ``principal_offset`` (unseen cameras, see
                    :func:`render_benchmark_sample`) and ``train_seeds`` (training-set median)
``source``          where the protocol comes from (paper, official code), free text
==================  =====================================================================================
"""

from __future__ import annotations

import math
import os
import types
import typing
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from metricanything.camera import Intrinsics
from metricanything.config import find_config, from_mapping, packaged_config_dir, read_yaml
from metricanything.data.sample import RGBDSample
from metricanything.errors import DatasetError
from metricanything.metrics import METRIC_NAMES

CROPS = ("none", "eigen", "garg", "nyu")
ALIGNMENTS = ("none", "median", "lstsq_scale", "lstsq_scale_shift")
ALIGNMENT_SPACES = ("depth", "inverse")
AGGREGATIONS = ("per_image", "pooled")
FOCAL_SOURCES = ("gt", "predicted")
RANGE_BOUNDS = ("open", "closed")
UPSAMPLE_MODES = ("bilinear", "nearest")
ALIGN_ON = ("gt", "prompt")
INPUT_RESIZES = ("native", "released")

#: Environment variable naming an extra folder of benchmark YAML files (searched first).
BENCHMARK_DIR_ENV = "METRICANYTHING_BENCHMARKS"
#: Environment variable naming a folder that holds one sub-folder per dataset (``<dir>/<dataset>``).
DATA_ROOT_ENV = "METRICANYTHING_DATA"


@dataclass(frozen=True)
class SyntheticSpec:
    """How a synthetic held-out benchmark is rendered (deterministic: sample i uses seed ``seed_offset + i``)."""

    family: str | None = None
    num: int = 16
    seed_offset: int = 1_000_000
    size: tuple[int, int] = (160, 120)
    #: Unseen camera models: horizontal FoV ranges (degrees) to draw the camera from (one range chosen
    #: uniformly, then a FoV uniformly inside it); ``None`` = the renderer's own camera distribution.
    fov_ranges: tuple[tuple[float, float], ...] | None = None
    #: With ``fov_ranges``: the principal point is moved by up to this fraction of W and H from the centre.
    principal_offset: float = 0.0
    #: Seeds of the *training* distribution used by ``baseline:train_median`` (``range(train_seeds)``).
    train_seeds: int = 16


@dataclass(frozen=True)
class BenchmarkSpec:
    """One benchmark protocol (see the module docstring for every key)."""

    name: str
    dataset: str
    description: str = ""
    source: str = ""
    split: str | None = None
    loader_options: dict[str, Any] = field(default_factory=dict)
    root_env: str | None = None
    root: str | None = None
    layout: str = ""
    crop: str | tuple[int, int, int, int] = "none"
    crop_size: tuple[int, int] | None = None
    depth_range: tuple[float, float] = (1e-3, math.inf)
    range_bounds: str = "open"
    alignment: str = "none"
    alignment_space: str = "depth"
    align_on: str = "gt"
    nonpositive: str = "raise"
    aggregation: str = "per_image"
    prompts: tuple[str, ...] = ()
    focal_source: str = "gt"
    eval_resolution: tuple[int, int] | None = None
    model_resolution: tuple[int, int] | None = None
    upsample: str = "bilinear"
    clip_prediction: bool = False
    exclude_prompt_pixels: bool = False
    primary_metric: str = "abs_rel"
    distance_bins: tuple[float, ...] = (0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
    limit: int | None = None
    seed: int = 0
    seed_per_sample: bool = True
    input_resize: str = "native"
    compare: tuple[str, ...] = ()
    reference: str | None = None
    oracle_constant: bool = False
    skip_incompatible: bool = False
    train_median: float | None = None
    train_split: str | None = None
    synthetic: SyntheticSpec | None = None

    @property
    def is_synthetic(self) -> bool:
        return self.dataset == "synthetic"

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (what ``metrics.json`` records as the protocol)."""
        d = asdict(self)
        d["depth_range"] = [float(v) if math.isfinite(v) else None for v in self.depth_range]
        return d


# ---------------------------------------------------------------------------------------------- loading
#: kind of shipped config (sub-folder of ``metricanything/configs``) holding the benchmark definitions
BENCHMARK_KIND = "benchmarks"


def benchmark_dirs() -> list[Path]:
    """Folders searched for ``<name>.yaml``, in order: ``$METRICANYTHING_BENCHMARKS``, then the shipped ones."""
    dirs: list[Path] = []
    extra = os.environ.get(BENCHMARK_DIR_ENV)
    if extra:
        dirs.append(Path(extra))
    dirs.append(packaged_config_dir(BENCHMARK_KIND))
    return [d for d in dirs if d.is_dir()]


def list_benchmarks() -> list[str]:
    """Names of every shipped (and ``$METRICANYTHING_BENCHMARKS``) benchmark, sorted."""
    names: set[str] = set()
    for d in benchmark_dirs():
        names.update(p.stem for p in d.glob("*.yaml"))
    return sorted(names)


def load_benchmark(name_or_path: str | os.PathLike) -> BenchmarkSpec:
    """Load a benchmark by name (``nyuv2``) or from a YAML path.

    An unknown name raises :class:`DatasetError` listing the valid names and the closest match.
    """
    extra = os.environ.get(BENCHMARK_DIR_ENV)
    path = find_config(name_or_path, BENCHMARK_KIND, what="benchmark", error=DatasetError,
                       search_dirs=[extra] if extra else [])  # fmt: skip
    return _load_yaml(path)


def _load_yaml(path: Path) -> BenchmarkSpec:
    raw = read_yaml(path, error=DatasetError, what="benchmark")
    raw.setdefault("name", path.stem)
    return spec_from_dict(raw, where=f"benchmark file {path}")


def _choice(value: Any, key: str, options: tuple[str, ...], where: str) -> str:
    if value not in options:
        raise DatasetError(f"{where}: {key} must be one of {', '.join(options)}, got {value!r}")
    return value


def _admits_none(tp: Any) -> bool:
    return tp is Any or (typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp))


def spec_from_dict(raw: dict[str, Any], where: str = "benchmark") -> BenchmarkSpec:
    """Validate a raw mapping (from YAML) into a :class:`BenchmarkSpec`; unknown keys are errors.

    Types go through the shared strict validator (:func:`metricanything.config.from_mapping`); the checks
    below it are the ones types cannot express (choices, ranges, cross-key rules).
    """
    if not isinstance(raw, dict):
        raise DatasetError(f"{where}: expected a mapping, got {type(raw).__name__}")
    raw = dict(raw)
    for key in ("name", "dataset"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise DatasetError(f"{where}: {key!r} is required and must be a string")
    # spellings YAML allows, normalised before the typed check: null = the default, a single string for a
    # list, null ends of depth_range = open (0 / infinity)
    hints = typing.get_type_hints(BenchmarkSpec)
    raw = {k: v for k, v in raw.items() if v is not None or k not in hints or _admits_none(hints[k])}
    for key in ("prompts", "compare"):
        if isinstance(raw.get(key), str):
            raw[key] = [raw[key]]
    dr = raw.get("depth_range")
    if isinstance(dr, (list, tuple)) and len(dr) == 2:
        raw["depth_range"] = [0.0 if dr[0] is None else dr[0], math.inf if dr[1] is None else dr[1]]
    if raw["dataset"] == "synthetic":
        raw["synthetic"] = raw.get("synthetic") or {}
    elif raw.get("synthetic") is not None:
        raise DatasetError(f"{where}: 'synthetic' is only valid with dataset: synthetic")
    spec = from_mapping(BenchmarkSpec, raw, origin=where, error=DatasetError)

    if isinstance(spec.crop, str):
        _choice(spec.crop, "crop", CROPS, where)
    else:
        top, bottom, left, right = spec.crop
        if not (0 <= top < bottom and 0 <= left < right):
            raise DatasetError(f"{where}: crop box [top, bottom, left, right] must satisfy 0 <= top < bottom "
                               f"and 0 <= left < right, got {list(spec.crop)}")
    lo, hi = spec.depth_range
    if not (0.0 <= lo < hi):
        raise DatasetError(f"{where}: depth_range must satisfy 0 <= min < max, got {raw['depth_range']!r}")
    for key, options in (
        ("range_bounds", RANGE_BOUNDS), ("alignment", ALIGNMENTS), ("alignment_space", ALIGNMENT_SPACES),
        ("align_on", ALIGN_ON), ("aggregation", AGGREGATIONS), ("focal_source", FOCAL_SOURCES),
        ("upsample", UPSAMPLE_MODES), ("nonpositive", ("raise", "clip")), ("input_resize", INPUT_RESIZES),
        ("primary_metric", tuple(METRIC_NAMES)),
    ):
        _choice(getattr(spec, key), key, options, where)
    if not all(spec.prompts):
        raise DatasetError(f"{where}: prompts must be a list of pattern strings, got {list(spec.prompts)!r}")
    if not all(spec.compare) or len(set(spec.compare)) != len(spec.compare):
        raise DatasetError(f"{where}: compare must be a list of distinct predictor names, got {list(spec.compare)!r}")
    if spec.reference is not None and spec.reference not in spec.compare:
        raise DatasetError(f"{where}: reference {spec.reference!r} must be one of compare ({list(spec.compare)})")
    if spec.root is not None and not spec.root:
        raise DatasetError(f"{where}: root must be a path string, got {spec.root!r}")
    for key in ("eval_resolution", "model_resolution"):
        size = getattr(spec, key)
        if size is not None and min(size) < 1:
            raise DatasetError(f"{where}: {key} must be positive, got {list(size)!r}")
    bins = spec.distance_bins
    if len(bins) < 2 or any(b1 <= b0 for b0, b1 in zip(bins, bins[1:], strict=False)):
        raise DatasetError(f"{where}: distance_bins must be at least two increasing edges, got {list(bins)!r}")
    if spec.limit is not None and spec.limit < 1:
        raise DatasetError(f"{where}: limit must be a positive integer or null, got {spec.limit!r}")
    if spec.train_median is not None and not spec.train_median > 0:
        raise DatasetError(f"{where}: train_median must be > 0, got {spec.train_median!r}")
    if spec.synthetic is not None:
        _check_synthetic(spec.synthetic, where)
    return spec


def _check_synthetic(syn: SyntheticSpec, where: str) -> None:
    if syn.fov_ranges is not None:
        if not syn.fov_ranges:
            raise DatasetError(f"{where}: synthetic.fov_ranges must be a list of [min, max] degree pairs")
        for lo, hi in syn.fov_ranges:
            if not 0 < lo < hi < 180:
                raise DatasetError(f"{where}: synthetic.fov_ranges must be increasing degrees in (0, 180), got {[lo, hi]}")
    if not 0 <= syn.principal_offset < 0.5:
        raise DatasetError(f"{where}: synthetic.principal_offset must be in [0, 0.5), got {syn.principal_offset!r}")
    for key in ("num", "train_seeds"):
        if getattr(syn, key) < 1:
            raise DatasetError(f"{where}: synthetic.{key} must be a positive integer")


# ---------------------------------------------------------------------------------------------- roots
def checkout_root() -> Path | None:
    """The source checkout's root (``<root>/pyproject.toml`` + ``<root>/src/metricanything``), or None when installed."""
    root = Path(__file__).resolve().parents[3]
    return root if (root / "pyproject.toml").is_file() and (root / "src" / "metricanything").is_dir() else None


def spec_root_candidates(spec: BenchmarkSpec) -> list[Path]:
    """Where the benchmark's own ``root`` is looked up, in order (absolute: itself only)."""
    if spec.root is None:
        return []
    path = Path(os.path.expanduser(spec.root))
    if path.is_absolute():
        return [path]
    out = [Path.cwd() / path]
    checkout = checkout_root()
    if checkout is not None and (checkout / path).resolve() != (Path.cwd() / path).resolve():
        out.append(checkout / path)
    return out


def resolve_root(spec: BenchmarkSpec, root: str | os.PathLike | None = None) -> Path | None:
    """The dataset root: ``root`` (CLI) > ``$<root_env>`` > the spec's ``root`` > ``$METRICANYTHING_DATA/<dataset>``.

    Usually a folder; some loaders also take a file (NYU's ``.mat``).

    Synthetic benchmarks need no root (returns None). A missing folder raises :class:`DatasetError` naming
    the folder, where it came from and the expected layout.
    """
    if spec.is_synthetic:
        return None
    check_loader(spec)
    origin = ""
    if root is not None:
        path, origin = Path(root), "--root"
    elif spec.root_env and os.environ.get(spec.root_env):
        path, origin = Path(os.environ[spec.root_env]), f"${spec.root_env}"
    elif spec.root is not None:
        candidates = spec_root_candidates(spec)
        for path in candidates:
            if path.exists():
                return path
        tried = " and ".join(str(p) for p in candidates)
        how = f"--root PATH or ${spec.root_env}" if spec.root_env else "--root PATH"
        raise DatasetError(
            f"dataset folder {spec.root!r} of benchmark {spec.name!r} does not exist (looked for {tried}); "
            f"pass {how}.{_layout_hint(spec)}"
        )
    elif os.environ.get(DATA_ROOT_ENV):
        path, origin = Path(os.environ[DATA_ROOT_ENV]) / spec.dataset, f"${DATA_ROOT_ENV}/{spec.dataset}"
    else:
        how = f"--root PATH or ${spec.root_env}" if spec.root_env else "--root PATH"
        raise DatasetError(
            f"benchmark {spec.name!r} needs the {spec.dataset} dataset: pass {how} "
            f"(or set ${DATA_ROOT_ENV} to a folder containing '{spec.dataset}/').{_layout_hint(spec)}"
        )
    if not path.exists():
        raise DatasetError(
            f"dataset folder {path} (from {origin}) for benchmark {spec.name!r} does not exist.{_layout_hint(spec)}"
        )
    return path


def _layout_hint(spec: BenchmarkSpec) -> str:
    layout = spec.layout.strip()
    if not layout:
        try:
            import sys  # noqa: PLC0415

            from metricanything.data import loaders  # noqa: PLC0415 - only for the message

            loader = loaders.LOADERS.get(loaders.ALIASES.get(spec.dataset, spec.dataset))
            module = sys.modules.get(getattr(loader, "__module__", ""), None)
            layout = (getattr(module, "__doc__", None) or "").strip()
        except Exception:  # pragma: no cover - loaders unavailable: the message just has no layout
            layout = ""
    return f"\nExpected layout ({spec.dataset} loader):\n{layout}" if layout else ""


def check_loader(spec: BenchmarkSpec) -> None:
    """Raise :class:`DatasetError` when no loader reads the benchmark's dataset (before touching any file)."""
    if spec.is_synthetic:
        return
    from metricanything.data import loaders  # noqa: PLC0415

    key = loaders.ALIASES.get(spec.dataset.lower(), spec.dataset.lower())
    if key not in loaders.LOADERS:
        raise DatasetError(
            f"benchmark {spec.name!r} needs a {spec.dataset!r} loader, which metricanything does not have yet; "
            f"available loaders: {', '.join(sorted(loaders.LOADERS))}"
        )


# ---------------------------------------------------------------------------------------------- samples
def iter_benchmark_samples(
    spec: BenchmarkSpec,
    root: str | os.PathLike | None = None,
    limit: int | None = None,
    sample_ids: Sequence[str] | None = None,
) -> Iterator[RGBDSample]:
    """Yield the benchmark's samples in a fixed order (at most ``limit``, else ``spec.limit``).

    ``sample_ids`` keeps only those samples (in the benchmark's order); an id the benchmark does not hold
    raises :class:`DatasetError` listing the ids it has.
    """
    limit = limit if limit is not None else spec.limit
    wanted = set(sample_ids) if sample_ids is not None else None
    if spec.is_synthetic:
        source: Iterator[RGBDSample] = _iter_synthetic(spec, None if wanted else limit)
    else:
        path = resolve_root(spec, root)
        from metricanything.data.loaders import load_dataset  # noqa: PLC0415 - heavy; real datasets only

        dataset = load_dataset(spec.dataset, path, split=spec.split, **spec.loader_options)
        ids = getattr(dataset, "sample_ids", None)
        if wanted and ids is not None:  # folder datasets know their ids: read only the wanted samples
            missing = sorted(wanted - set(ids))
            if missing:
                raise DatasetError(f"benchmark {spec.name!r} has no sample {', '.join(missing)}; it has: {', '.join(ids)}")
            source = (dataset[i] for i, sid in enumerate(ids) if sid in wanted)
        else:
            source = iter(dataset)
    count, seen = 0, set()
    for sample in source:
        if limit is not None and count >= limit:
            break
        if wanted is not None:
            if sample.sample_id not in wanted:
                continue
            seen.add(sample.sample_id)
        count += 1
        yield sample
    if wanted is not None and (limit is None or count < limit) and seen != wanted:
        missing = sorted(wanted - seen)
        raise DatasetError(f"benchmark {spec.name!r} has no sample {', '.join(missing)}")


def _iter_synthetic(spec: BenchmarkSpec, limit: int | None) -> Iterator[RGBDSample]:
    syn = spec.synthetic or SyntheticSpec()
    n = syn.num if limit is None else min(limit, syn.num)
    for i in range(n):
        yield render_benchmark_sample(syn, syn.seed_offset + i, name=spec.name)


def render_benchmark_sample(syn: SyntheticSpec, seed: int, name: str = "synthetic") -> RGBDSample:
    """Render one deterministic held-out sample for a synthetic benchmark.

    Without ``fov_ranges`` this is ``render_sample(seed, family, size)`` (the renderer's own cameras). With
    them, the scene and pose come from the renderer's public pieces (``make_scene``, ``sample_pose``,
    ``render_view``) and the camera is drawn here: a FoV from one of the ranges, square pixels, and the
    principal point moved by up to ``principal_offset`` x (W, H) from the centre (unseen camera models).
    """
    from metricanything.data import render  # noqa: PLC0415 - torch renderer, lazy

    w, h = syn.size
    if syn.fov_ranges is None:
        sample = render.render_sample(seed, family=syn.family, size=(w, h))
    else:
        rng = np.random.default_rng([7_919, int(seed)])  # our own stream: never a training render's
        family = syn.family or str(rng.choice(render.FAMILIES))
        scene = render.make_scene(family, rng)
        lo, hi = syn.fov_ranges[int(rng.integers(len(syn.fov_ranges)))]
        fov = float(rng.uniform(lo, hi))
        f = w / (2.0 * math.tan(math.radians(fov) / 2.0))
        off = syn.principal_offset
        cx = (w - 1) / 2.0 + float(rng.uniform(-off, off)) * w
        cy = (h - 1) / 2.0 + float(rng.uniform(-off, off)) * h
        K = Intrinsics(f, f, cx, cy, w, h)
        pose = render.sample_pose(scene, rng)
        rgb, depth, valid = render.render_view(scene, K, pose)
        sample = RGBDSample(
            image=rgb, depth=depth, valid=valid, intrinsics=K, source_kind="rendered", sensor="synthetic",
            camera_id=render.camera_id_for(K), scene_id=f"{family}-unseen-{int(seed)}", pose=pose,
            meta={"family": family, "seed": int(seed), "fov_x": fov},
        )
    return sample.replace(dataset=name, sample_id=f"{name}-{int(seed)}")


#: ``training_median`` keeps every this-many-th valid pixel of each real training image (memory bound).
TRAIN_MEDIAN_STRIDE = 16


def training_median(spec: BenchmarkSpec, root: str | os.PathLike | None = None) -> float:
    """Median valid GT depth of the *training* distribution for ``baseline:train_median``.

    In order: ``spec.train_median`` when given; else, with ``train_split``, the pooled median over that
    split of the dataset (every ``TRAIN_MEDIAN_STRIDE``-th valid pixel of each image, in raster order);
    else, for synthetic benchmarks, renders with the training seeds ``0 .. train_seeds-1`` of the same
    family and size (the renderer's own cameras).
    """
    if spec.train_median is not None:
        return float(spec.train_median)
    if spec.train_split is not None and not spec.is_synthetic:
        from metricanything.data.loaders import load_dataset  # noqa: PLC0415

        path = resolve_root(spec, root)
        values = [s.depth[s.valid][::TRAIN_MEDIAN_STRIDE]
                  for s in load_dataset(spec.dataset, path, split=spec.train_split, **spec.loader_options)]  # fmt: skip
        values = [v for v in values if v.size]
        if not values:
            raise DatasetError(f"benchmark {spec.name!r}: split {spec.train_split!r} of {path} has no valid depth")
        return float(np.median(np.concatenate(values)))
    if not spec.is_synthetic:
        raise DatasetError(
            f"benchmark {spec.name!r} has no train_median or train_split; give one as "
            "baseline:train_median=VALUE (metres)"
        )
    syn = spec.synthetic or SyntheticSpec()
    train = SyntheticSpec(family=syn.family, num=syn.train_seeds, seed_offset=0, size=syn.size)
    values = [s.depth[s.valid] for s in (render_benchmark_sample(train, i) for i in range(train.num))]
    return float(np.median(np.concatenate(values)))


__all__ = [
    "AGGREGATIONS",
    "ALIGNMENTS",
    "ALIGNMENT_SPACES",
    "ALIGN_ON",
    "CROPS",
    "FOCAL_SOURCES",
    "BenchmarkSpec",
    "SyntheticSpec",
    "benchmark_dirs",
    "check_loader",
    "checkout_root",
    "iter_benchmark_samples",
    "list_benchmarks",
    "load_benchmark",
    "render_benchmark_sample",
    "resolve_root",
    "spec_from_dict",
    "spec_root_candidates",
    "training_median",
]
