"""Training logs (rank 0): TensorBoard scalars and images, ``log.jsonl``, panel PNGs and the progress display.

Used by :func:`metricanything.train.loop.train`; every method is a no-op on ranks other than 0.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from metricanything.atomic import write_text_atomic
from metricanything.extras import missing_extra_message
from metricanything.progress import NORMAL, VERBOSE, Progress
from metricanything.train.config import TrainConfig

if TYPE_CHECKING:
    from metricanything.train.loop import Dist

#: skipped samples printed per process (all of them are in log.jsonl)
MAX_FAULT_MESSAGES = 20


class Logger:
    """Rank-0 TensorBoard scalars/images, a JSON-lines log and the progress bar; silent on other ranks."""

    def __init__(self, cfg: TrainConfig, d: Dist, out: Path, start_step: int) -> None:
        self.enabled = d.main
        self.tb = None
        self.faults_printed = 0
        self.bar = None
        self.jsonl = out / "log.jsonl"
        if not self.enabled:
            return
        self.bar = Progress(cfg.train.steps, cfg.stage, "step", bar=cfg.train.progress, initial=start_step,
                            interval_s=60.0)  # fmt: skip
        self._trim_jsonl(start_step)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(log_dir=str(out / "tb"), purge_step=start_step if start_step else None)
        except ImportError as exc:  # the optional extra: without it log.jsonl still gets every scalar
            if importlib.util.find_spec("tensorboard") is None:
                self.message(f"[train] {missing_extra_message('tensorboard', 'TensorBoard logging')}; scalars still "
                             f"go to {self.jsonl}")  # fmt: skip
            else:
                self.message(f"[train] TensorBoard disabled ({exc})")
        except Exception as exc:  # noqa: BLE001 - TensorBoard is optional at runtime
            self.message(f"[train] TensorBoard disabled ({exc})")

    def _trim_jsonl(self, start_step: int) -> None:
        """A fresh run starts an empty log; a resumed one keeps only records up to its checkpoint's step."""
        if not self.jsonl.is_file():
            return
        kept = []
        if start_step > 0:
            for line in self.jsonl.read_text(encoding="utf-8").splitlines():
                try:
                    if int(json.loads(line).get("step", 0)) <= start_step:
                        kept.append(line)
                except (ValueError, AttributeError):
                    continue
        write_text_atomic(self.jsonl, "".join(f"{line}\n" for line in kept))

    def scalars(self, step: int, values: dict[str, Any], prefix: str) -> None:
        """TensorBoard ``prefix/<key>`` for the numbers among ``values``; all of them to ``log.jsonl``."""
        if not self.enabled:
            return
        if self.tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(f"{prefix}/{k}", v, step)
        self.record(step, prefix, values)
        if prefix != "val":
            shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
                              if not isinstance(v, (list, dict)))  # fmt: skip
            self.message(f"[{prefix}] step {step}: {shown}", VERBOSE)

    def record(self, step: int, kind: str, values: dict[str, Any]) -> None:
        """One ``log.jsonl`` line ``{"step", "kind", **values}``."""
        if self.enabled:
            with open(self.jsonl, "a", encoding="utf-8") as f:
                f.write(json.dumps({"step": step, "kind": kind, **values}, sort_keys=True) + "\n")

    def fault_message(self, text: str) -> None:
        """A data-fault message; after :data:`MAX_FAULT_MESSAGES` they are only counted and logged."""
        self.faults_printed += 1
        if self.faults_printed <= MAX_FAULT_MESSAGES:
            self.message(text)
        if self.faults_printed == MAX_FAULT_MESSAGES:
            self.message("[data] further skipped samples are not printed (all are in log.jsonl)")

    def image(self, step: int, name: str, img: np.ndarray | None, out: Path) -> None:
        if not self.enabled or img is None:
            return
        if self.tb is not None:
            self.tb.add_image(name, img, step, dataformats="HWC")
        import cv2

        from metricanything.atomic import atomic_path

        with atomic_path(out / "panels" / f"step_{step:08d}.png") as tmp:
            cv2.imwrite(str(tmp), np.ascontiguousarray(img[..., ::-1]))

    def checkpointed(self, step: int) -> None:
        """Show the newest checkpoint's step with the progress (the line itself is verbose-only)."""
        if self.bar is not None:
            self.bar.fields["checkpoint"] = step

    def progress(self, step: int, loss: float, sps: float) -> None:
        if self.bar is not None:
            self.bar.set(step, loss=float(loss), samples_s=round(float(sps), 1))

    def message(self, text: str, level: int = NORMAL) -> None:
        """A line for the user (rank 0), printed when the verbosity is at least ``level``."""
        if self.enabled:
            if self.bar is not None:
                self.bar.write(text, level)
            else:
                from metricanything.progress import say

                say(text, level)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.flush()
            self.tb.close()
