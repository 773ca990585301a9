"""Data sources and their index-addressed mixture: what training (and pseudo-labelling) reads.

A source is one of (``kind`` of a training config's ``data.sources`` entry):

* ``render``: the embedded renderer; item k is rendered from seed ``seed + k`` (finite with ``num_samples``);
* ``folder``: a folder dataset (:mod:`metricanything.data.folder`) at ``path``;
* ``shards``: tar shards (:class:`~metricanything.data.shards.ShardIndex`) at ``path`` (folder, tar, glob);
* ``loader``: a native dataset at ``path`` read by the registered loader ``name`` (``split``, ``options``;
  :mod:`metricanything.data.loaders`), without packing it first.

Every source has ``name``, ``length`` (None = endless), ``get(k)``, ``where(k)`` (the file(s) of item k) and
``notes`` (damage found while indexing, e.g. a truncated shard).

:class:`SourceMixture` maps a global item index to (source, item) with a generator seeded by (seed, index):
the source is drawn with probability proportional to its weight; finite sources are sampled uniformly *with
replacement*; an endless ``render`` source renders item ``index``. A file-backed sample that fails to decode
is skipped and replaced by the draw of attempt 1, 2, ... (generators seeded by (seed, index, attempt)), and
the item reports what it skipped (:class:`Fault`), so an item stays a pure function of (seed, index) and a
resumed run reads exactly what an uninterrupted one reads. :class:`DataFaults` counts draws and failures
per source and stops a run whose failure rate passes the source's ``max_bad_fraction``.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np

from metricanything.data.sample import RGBDSample
from metricanything.errors import DatasetError, InvalidInputError, MetricAnythingError

#: what a file-backed sample may raise when its bytes are bad (it is then skipped and replaced)
DECODE_ERRORS: tuple[type[BaseException], ...] = (MetricAnythingError, OSError, ValueError, EOFError, zlib.error)
#: draws of one item before giving up (all of them bad means the data, not one sample, is broken)
MAX_DRAWS = 16


def item_rng(seed: int, index: int, stream: int, *more: int) -> np.random.Generator:
    """The generator of one purpose (``stream``) for item ``index`` of a run seeded with ``seed``."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(index), int(stream), *(int(m) for m in more)])


class SourceSpec(Protocol):
    """The fields of one source entry (``metricanything.train.config.SourceConfig``) read here."""

    kind: str
    path: str | None
    name: str | None
    split: str | None
    options: dict[str, Any]
    weight: float
    num_samples: int
    seed: int
    render_size: list[int] | None
    sources: list[str] | None
    fov_deg: list[float] | None
    metric_scale_trusted: bool | None
    max_bad_fraction: float
    min_draws: int


# ---------------------------------------------------------------------------------------------- sources
class RenderSource:
    """The embedded renderer: item k is ``render_mixed_sample(seed + k, size, sources, fov_deg)`` (exact depth
    through the simulated sensors of the mixture). Never skipped: a failure here is a bug, not bad data."""

    catches: tuple[type[BaseException], ...] = ()
    notes: list[str] = []

    def __init__(self, cfg: SourceSpec) -> None:
        self.cfg = cfg
        self.name = "render" + (f"[{','.join(cfg.sources)}]" if cfg.sources else "")
        self.size = tuple(cfg.render_size) if cfg.render_size else None
        if self.size is not None and len(self.size) != 2:
            raise InvalidInputError(f"render_size must be [W, H], got {cfg.render_size}")
        if cfg.fov_deg is not None:
            from metricanything.data.render import check_fov_range

            check_fov_range(cfg.fov_deg)

    @property
    def length(self) -> int | None:
        return self.cfg.num_samples or None

    def get(self, k: int) -> RGBDSample:
        from metricanything.data.mixture import render_mixed_sample

        return render_mixed_sample(self.cfg.seed + int(k), size=self.size, sources=self.cfg.sources, fov_deg=self.cfg.fov_deg)

    def where(self, k: int) -> str:
        return f"{self.name} seed {self.cfg.seed + int(k)}"


class IndexedSource:
    """A finite, file-backed source: any dataset with ``len``, ``[k]`` and (optionally) ``where(k)``/``notes``."""

    catches = DECODE_ERRORS

    def __init__(self, name: str, data: Sequence[RGBDSample]) -> None:
        self.name = name
        self.data = data
        self.notes: list[str] = list(getattr(data, "notes", []))
        if len(data) == 0:
            raise DatasetError(f"{name}: no samples")

    @property
    def length(self) -> int:
        return len(self.data)

    def get(self, k: int) -> RGBDSample:
        return self.data[int(k)]

    def where(self, k: int) -> str:
        where = getattr(self.data, "where", None)
        return where(int(k)) if where is not None else f"{self.name}[{int(k)}]"


def build_source(cfg: SourceSpec) -> RenderSource | IndexedSource:
    """The source described by one config entry (see the module docstring)."""
    if cfg.kind == "render":
        return RenderSource(cfg)
    if not cfg.path:
        raise InvalidInputError(f"a {cfg.kind!r} source needs a path")
    if cfg.kind == "folder":
        from metricanything.data.folder import FolderDataset

        return IndexedSource(f"folder:{cfg.path}", FolderDataset(cfg.path))
    if cfg.kind == "shards":
        from metricanything.data.shards import ShardIndex

        return IndexedSource(f"shards:{cfg.path}", ShardIndex(cfg.path))
    if cfg.kind == "loader":
        from metricanything.data.loaders import load_dataset

        if not cfg.name:
            raise InvalidInputError(f"a 'loader' source needs a name (the loader of {cfg.path})")
        data = load_dataset(cfg.name, cfg.path, split=cfg.split, **(cfg.options or {}))
        return IndexedSource(f"{cfg.name}{'@' + cfg.split if cfg.split else ''}:{cfg.path}", data)
    raise InvalidInputError(f"unknown source kind {cfg.kind!r} (render, folder, shards or loader)")


def parse_loader_spec(text: str) -> tuple[str, str | None, str] | None:
    """``"name:root"`` / ``"name@split:root"`` -> (name, split, root); None for anything else (e.g. a path)."""
    if ":" not in text or Path(text).exists():
        return None
    name, _, root = text.partition(":")
    name, _, split = name.partition("@")
    if not name or not root or os.sep in name or "/" in name:
        return None
    return name, split or None, root


def open_samples(spec: str | os.PathLike) -> Sequence[RGBDSample]:
    """The samples of a folder dataset path or of ``"loader[@split]:root"`` (what ``pack`` accepts)."""
    text = os.fspath(spec)
    path = Path(text)
    if path.is_dir():
        from metricanything.data.folder import FolderDataset, is_folder_dataset

        if is_folder_dataset(path):
            return FolderDataset(path)
        raise DatasetError(f"{path}: not a folder dataset (no index.json and no sample folder with meta.json)")
    loader = parse_loader_spec(text)
    if loader is not None:
        from metricanything.data.loaders import load_dataset

        return load_dataset(loader[0], loader[2], split=loader[1])
    raise DatasetError(f"{text}: source does not exist (give a folder dataset or 'loader_name:root')")


# ---------------------------------------------------------------------------------------------- mixture
class Fault(NamedTuple):
    """A sample skipped because it failed to decode: its source (position in the mixture), file(s), error."""

    source: int
    where: str
    error: str


class Draw(NamedTuple):
    """What :meth:`SourceMixture.get` returns: the sample, its source and the faults skipped on the way."""

    sample: RGBDSample
    source: int
    faults: list[Fault]


class SourceMixture:
    """Index -> sample over weighted sources (see the module docstring)."""

    def __init__(self, cfgs: Sequence[SourceSpec], seed: int) -> None:
        self.cfgs = list(cfgs)
        self.sources = [build_source(c) for c in self.cfgs]
        w = np.array([c.weight for c in self.cfgs], dtype=np.float64)
        if not (w >= 0).all() or w.sum() <= 0:
            raise InvalidInputError(f"source weights must be >= 0 and not all 0, got {w.tolist()}")
        self.p = w / w.sum()
        self.seed = seed

    @property
    def notes(self) -> list[str]:
        return [note for src in self.sources for note in src.notes]

    def locate(self, index: int, attempt: int = 0) -> tuple[int, int]:
        """(source, item) of draw ``attempt`` of item ``index``."""
        rng = item_rng(self.seed, index, 0) if attempt == 0 else item_rng(self.seed, index, 0, attempt)
        s = int(rng.choice(len(self.sources), p=self.p)) if len(self.sources) > 1 else 0
        length = self.sources[s].length
        if length is not None:
            return s, int(rng.integers(length))
        return s, int(index) if attempt == 0 else int(rng.integers(1 << 40, 1 << 62))

    def get(self, index: int) -> Draw:
        faults: list[Fault] = []
        for attempt in range(MAX_DRAWS):
            s, k = self.locate(index, attempt)
            src = self.sources[s]
            try:
                sample = src.get(k)
            except src.catches as exc:
                faults.append(Fault(s, src.where(k), str(exc)))
                continue
            forced = self.cfgs[s].metric_scale_trusted
            if forced is not None and sample.metric_scale_trusted != forced:
                sample = sample.replace(metric_scale_trusted=bool(forced))
            return Draw(sample, s, faults)
        raise DatasetError(
            f"item {index}: {MAX_DRAWS} draws in a row failed to decode; the last: {faults[-1].where}: {faults[-1].error}"
        )

    def fault_counter(self, option: str = "data.sources") -> DataFaults:
        """A :class:`DataFaults` for these sources (``option`` names the config list in messages)."""
        limits = [(float(c.max_bad_fraction), int(c.min_draws)) for c in self.cfgs]
        return DataFaults([s.name for s in self.sources], limits, self.notes, option)


# ---------------------------------------------------------------------------------------------- fault counts
class DataFaultError(DatasetError):
    """A source's share of samples that fail to decode passed its ``max_bad_fraction``."""


class DataFaults:
    """Per-source counts of draws and of bad (skipped) samples, for a training run's log and summary.

    ``tally(sources, faults)`` turns one batch's ``source`` ids and ``data_faults`` lists into a count vector
    (draws per source, then bad per source) that the caller sums over ranks and hands to ``add``. ``check``
    raises :class:`DataFaultError` when a source with at least ``min_draws`` draws has more than
    ``max_bad_fraction`` of them bad. The state (``state_dict``) travels in checkpoints.
    """

    def __init__(self, names: Sequence[str], limits: Sequence[tuple[float, int]], notes: Sequence[str], option: str) -> None:
        self.names, self.limits, self.notes, self.option = list(names), list(limits), list(notes), option
        self.draws = np.zeros(len(self.names), dtype=np.int64)
        self.bad = np.zeros(len(self.names), dtype=np.int64)
        self.first: list[str | None] = [None] * len(self.names)

    def tally(self, sources: Sequence[int], faults: Sequence[Sequence[Fault]]) -> np.ndarray:
        n = len(self.names)
        counts = np.zeros(2 * n, dtype=np.int64)
        for s in sources:
            counts[int(s)] += 1
        for item_faults in faults:
            for f in item_faults:
                counts[f.source] += 1
                counts[n + f.source] += 1
                if self.first[f.source] is None:
                    self.first[f.source] = f"{f.where}: {f.error}"
        return counts

    def add(self, counts: np.ndarray) -> None:
        n = len(self.names)
        self.draws += counts[:n].astype(np.int64)
        self.bad += counts[n:].astype(np.int64)

    def check(self) -> None:
        for s, (limit, min_draws) in enumerate(self.limits):
            draws, bad = int(self.draws[s]), int(self.bad[s])
            if draws >= max(1, min_draws) and bad > limit * draws:
                first = f"; first: {self.first[s]}" if self.first[s] else ""
                raise DataFaultError(
                    f"data source {s} ({self.names[s]}): {bad} of {draws} samples failed to decode "
                    f"({bad / draws:.1%}), more than {self.option}.{s}.max_bad_fraction={limit:g} (checked after "
                    f"{self.option}.{s}.min_draws={min_draws} draws). Repair or drop the bad files, or raise the "
                    f"threshold{first}"
                )

    def record(self) -> dict[str, Any]:
        """Plain counts for ``log.jsonl`` and ``summary.json`` (which adds ``notes``)."""
        return {
            "draws": int(self.draws.sum()),
            "bad": int(self.bad.sum()),
            "sources": [
                {"name": name, "draws": int(d), "bad": int(b), "bad_fraction": float(b / d) if d else 0.0}
                for name, d, b in zip(self.names, self.draws, self.bad, strict=True)
            ],
        }

    def state_dict(self) -> dict[str, Any]:
        return {"draws": self.draws.tolist(), "bad": self.bad.tolist(), "first": list(self.first)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state.get("draws", [])) != len(self.names):
            return  # another source list (the config changed): counting starts afresh
        self.draws = np.asarray(state["draws"], dtype=np.int64)
        self.bad = np.asarray(state["bad"], dtype=np.int64)
        self.first = list(state["first"])
