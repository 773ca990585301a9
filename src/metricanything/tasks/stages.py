"""A resumable sequence of stages: each one is timed and recorded, and a finished one is reused on a re-run.

A stage that finishes writes ``<folder>/<stage>.json`` (wall time, the fingerprint of the options it depends on,
its facts). On a re-run a stage is skipped when that record exists with the same fingerprint and its outputs
are still complete; once a stage runs again, every later one runs too. Used by ``metricanything quickstart``.
"""

from __future__ import annotations

import contextlib
import json
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metricanything.atomic import write_text_atomic
from metricanything.eval.results import dumps


@dataclass
class StageRecord:
    """What one stage did: wall time, whether it was reused from an earlier run, its facts and its error."""

    name: str
    seconds: float = 0.0
    reused: bool = False
    status: str = "pending"  # pending | done | failed
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


class StageRunner:
    """Runs stages in order into ``records``; ``fresh`` re-runs every stage; ``log`` gets one line per event."""

    def __init__(self, folder: Path, names: Sequence[str], log: Callable[[str], None], fresh: bool = False) -> None:
        self.folder, self.log, self.invalidated = Path(folder), log, fresh
        self.records = {n: StageRecord(n) for n in names}

    def reusable(self, stage: str, fingerprint: str, complete: Callable[[], bool]) -> StageRecord | None:
        """The stored record of ``stage`` when it can be reused (same fingerprint, outputs still complete)."""
        with contextlib.suppress(OSError, json.JSONDecodeError, KeyError, ValueError):
            data = json.loads((self.folder / f"{stage}.json").read_text(encoding="utf-8"))
            if not self.invalidated and data["fingerprint"] == fingerprint and complete():
                return StageRecord(stage, float(data["seconds"]), True, "done", data.get("info", {}))
        return None

    def run(self, stage: str, fn: Callable[[], dict[str, Any]], complete: Callable[[], bool] | None = None,
            fingerprint: str | None = None) -> StageRecord:  # fmt: skip
        """Run ``fn`` (its return value is the stage's facts) unless a finished run can be reused; without
        ``fingerprint`` the stage always runs and leaves no record."""
        rec = self.reusable(stage, fingerprint, complete or (lambda: True)) if fingerprint is not None else None
        if rec is not None:
            self.records[stage] = rec
            self.log(f"{stage}: already complete ({rec.seconds:.1f}s in an earlier run), skipped")
            return rec
        self.invalidated = True  # every later stage re-runs
        with contextlib.suppress(FileNotFoundError):
            (self.folder / f"{stage}.json").unlink()
        self.log(f"{stage}: start")
        rec, t = self.records[stage], time.perf_counter()
        try:
            rec.info = fn()
        except BaseException as exc:
            rec.seconds, rec.status, rec.error = time.perf_counter() - t, "failed", f"{type(exc).__name__}: {exc}"
            rec.info["traceback"] = traceback.format_exc(limit=8)
            self.log(f"{stage}: FAILED ({rec.error})")
            raise
        rec.seconds, rec.status = time.perf_counter() - t, "done"
        if fingerprint is not None:
            record = {"stage": stage, "seconds": rec.seconds, "fingerprint": fingerprint, "info": rec.info}
            write_text_atomic(self.folder / f"{stage}.json", dumps(record))
        self.log(f"{stage}: done in {rec.seconds:.1f}s")
        return rec

    def reused_seconds(self) -> float:
        """The recorded wall time of the stages reused from an earlier run."""
        return sum(r.seconds for r in self.records.values() if r.reused)

    def failed(self) -> str | None:
        """The name of the stage that failed, if one did."""
        return next((n for n, r in self.records.items() if r.status == "failed"), None)


__all__ = ["StageRecord", "StageRunner"]
