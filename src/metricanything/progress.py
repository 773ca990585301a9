"""What the commands print: one verbosity setting and progress that suits where the output goes.

* Verbosity (``metricanything --quiet`` / ``--verbose``, :func:`set_verbosity`): ``QUIET`` prints errors,
  warnings that bear on the result (e.g. a fallback focal length) and the final summary only; ``NORMAL`` adds
  progress and one line per item or notable event; ``VERBOSE`` adds detail (per-item facts, timings, every
  logged training scalar).
* :class:`Progress`: a tqdm bar when standard output is a terminal; otherwise (a pipe, a file, a CI log) plain
  lines at a fixed interval (every ``max(1, total // 20)`` units, and at least every ``interval_s`` seconds), each
  with the count, the caller's fields (e.g. the loss), the rate and the ETA, so a log of any length stays short
  and carries no carriage-return debris. Nothing under ``QUIET``.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

QUIET, NORMAL, VERBOSE = 0, 1, 2
_state = {"level": NORMAL}


def set_verbosity(level: int) -> None:
    """Set the process-wide verbosity (``QUIET``, ``NORMAL`` or ``VERBOSE``)."""
    _state["level"] = max(QUIET, min(VERBOSE, int(level)))


def verbosity() -> int:
    """The process-wide verbosity."""
    return _state["level"]


def is_terminal(stream: TextIO | None = None) -> bool:
    """True when ``stream`` (default: standard output) is an interactive terminal."""
    stream = sys.stdout if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def say(text: str, level: int = NORMAL, *, err: bool = False) -> None:
    """Print one line when the verbosity is at least ``level`` (``err``: on standard error)."""
    if verbosity() >= level:
        print(text, file=sys.stderr if err else sys.stdout, flush=True)


def format_seconds(s: float) -> str:
    """``H:MM:SS`` (or ``M:SS`` under an hour); ``?`` when unknown."""
    if not (s >= 0) or s == float("inf"):
        return "?"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class Progress:
    """Progress of ``total`` units (None: unknown): a bar on a terminal, plain lines elsewhere, nothing if quiet.

    ``bar=False`` never draws a bar (plain lines even on a terminal). ``every`` (units) and ``interval_s``
    (seconds) set how often a plain line is printed; the last unit always prints one.
    """

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str = "it",
        *,
        bar: bool = True,
        initial: int = 0,
        every: int | None = None,
        interval_s: float = 30.0,
        lines: bool = True,
    ) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.n = self.initial = int(initial)
        self.fields: dict[str, Any] = {}
        self.t0 = self.t_line = time.monotonic()
        remaining = (total - initial) if total is not None else None
        self.every = every if every is not None else (max(1, remaining // 20) if remaining else None)
        self.next_line = self.n + self.every if self.every else None
        self.interval_s = interval_s
        self.lines_printed = 0
        self._bar = None
        if verbosity() == QUIET:
            self.mode = "off"
        elif bar and is_terminal():
            from tqdm import tqdm

            self.mode = "bar"
            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True)
        else:
            self.mode = "lines" if lines else "off"

    # ------------------------------------------------------------------ updates
    def update(self, n: int = 1, **fields: Any) -> None:
        """Advance by ``n`` units; ``fields`` (e.g. ``loss=0.12``) are shown with the progress."""
        self.set(self.n + n, **fields)

    def set(self, n: int, **fields: Any) -> None:
        """Set the count to ``n`` (e.g. the training step)."""
        self.n = int(n)
        self.fields.update(fields)
        if self.mode == "bar":
            self._bar.n = self.n
            if self.fields:
                self._bar.set_postfix({k: _fmt(v) for k, v in self.fields.items()}, refresh=False)
            self._bar.refresh()
        elif self.mode == "lines":
            now = time.monotonic()
            due = (self.next_line is not None and self.n >= self.next_line) or (now - self.t_line >= self.interval_s)
            if due or (self.total is not None and self.n >= self.total):
                self._line(now)

    def _line(self, now: float) -> None:
        done = self.n - self.initial
        elapsed = now - self.t0
        rate = done / elapsed if elapsed > 0 and done > 0 else 0.0
        parts = [f"{self.desc} {self.n}" + (f"/{self.total} ({100.0 * self.n / max(1, self.total):.0f}%)" if self.total else "")]
        parts += [f"{k} {_fmt(v)}" for k, v in self.fields.items()]
        parts.append(f"{rate:.3g} {self.unit}/s")
        if self.total is not None:
            eta = (self.total - self.n) / rate if rate > 0 else float("nan")
            parts.append(f"ETA {format_seconds(eta)}" if self.n < self.total else f"took {format_seconds(elapsed)}")
        print(", ".join(parts), file=sys.stdout, flush=True)
        self.lines_printed += 1
        self.t_line = now
        if self.every:
            while self.next_line is not None and self.next_line <= self.n:
                self.next_line += self.every

    def write(self, text: str, level: int = NORMAL, *, err: bool = False) -> None:
        """A message line, kept clear of the bar; printed when the verbosity is at least ``level``."""
        if verbosity() < level:
            return
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr if err else sys.stdout)
        else:
            print(text, file=sys.stderr if err else sys.stdout, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


__all__ = ["NORMAL", "Progress", "QUIET", "VERBOSE", "format_seconds", "is_terminal", "say", "set_verbosity", "verbosity"]
