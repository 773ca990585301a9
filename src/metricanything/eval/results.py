"""What an evaluation produced, as data: :class:`EvalResults` (every score of every predictor x prompt column),
:class:`PanelData` (the arrays of one qualitative panel), and the strict-JSON helpers every report uses.

:mod:`metricanything.eval.runner` computes them; :mod:`metricanything.eval.report` and
:mod:`metricanything.eval.html` turn them into files. Neither of those is imported by the runner.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from metricanything import __version__
from metricanything.eval.benchmarks import BenchmarkSpec

#: Column name used when no prompt is given.
NO_PROMPT = "none"
#: Name of the per-frame oracle constant (benchmarks with ``oracle_constant``).
ORACLE = "oracle:constant"


@dataclass
class PanelData:
    """Arrays kept for one qualitative panel (one sample, one prompt column, every predictor)."""

    sample_id: str
    column: str
    image: np.ndarray
    gt: np.ndarray
    valid: np.ndarray
    prompt_depth: np.ndarray | None
    prompt_mask: np.ndarray | None
    predictions: dict[str, np.ndarray] = field(default_factory=dict)
    masks: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class EvalResults:
    """Everything :func:`evaluate` computed; ``summaries[predictor][column]`` is a scorer summary.

    ``comparisons[column][predictor]``: the frame-by-frame comparison with the benchmark's ``reference``
    (see :func:`~metricanything.eval.protocol.compare_to_reference`); empty without a reference.
    """

    benchmark: BenchmarkSpec
    predictors: list[str]
    columns: list[str]
    summaries: dict[str, dict[str, dict[str, Any]]]
    records: list[dict[str, Any]]
    timing: dict[str, float]
    num_samples: int
    panels: list[PanelData] = field(default_factory=list)
    out_dir: Path | None = None
    files: dict[str, str] = field(default_factory=dict)
    comparisons: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def headline(self, predictor: str, column: str) -> dict[str, float] | None:
        """The benchmark-aggregated metrics of one cell (None if no image was scored)."""
        return self.summaries[predictor][column].get("headline")

    def to_dict(self) -> dict[str, Any]:
        """The ``metrics.json`` content."""
        return {
            "metricanything_version": __version__,
            "benchmark": self.benchmark.to_dict(),
            "num_samples": self.num_samples,
            "predictors": self.predictors,
            "prompt_columns": self.columns,
            "primary_metric": self.benchmark.primary_metric,
            "aggregation": self.benchmark.aggregation,
            "results": self.summaries,
            "reference": self.benchmark.reference,
            "comparisons": self.comparisons,
            "seconds_per_image": self.timing,
        }

    def per_frame(self, predictor: str, column: str, metric: str = "abs_rel") -> dict[str, float]:
        """``{sample_id: metric}`` of one predictor x column, in evaluation order."""
        return {r["sample_id"]: r[metric] for r in self.records if r["predictor"] == predictor and r["prompt"] == column}


def format_value(value: float | None) -> str:
    """A metric value as printed in tables."""
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"


def plain_json(obj: Any) -> Any:
    """``obj`` as strict-JSON-ready data: numpy scalars/arrays, paths, tuples and dataclasses become plain
    values, and inf/NaN become None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return plain_json(obj.item())
    if isinstance(obj, np.ndarray):
        return plain_json(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return plain_json(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): plain_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain_json(v) for v in obj]
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


def dumps(obj: Any) -> str:
    """Indented, key-sorted strict JSON of :func:`plain_json` (``obj``), with a final newline."""
    return json.dumps(plain_json(obj), indent=2, sort_keys=True, allow_nan=False) + "\n"


__all__ = ["NO_PROMPT", "ORACLE", "EvalResults", "PanelData", "dumps", "format_value", "plain_json"]
