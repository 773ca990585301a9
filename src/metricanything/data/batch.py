"""The one item / batch layout of training, validation and the benchmarks that share them.

An item (:func:`to_item`) is one training view as tensors plus bookkeeping:

===================== =========================================================================
``image``             float32 3 x H x W in [0, 1]
``depth``             float32 1 x H x W metres, 0 where invalid
``valid``             bool 1 x H x W
``fx``                float32 () focal length in pixels of this view
``metric_scale_trusted`` bool () False for depth known only up to scale (SfM/MVS, unprepared)
``fov_known``         bool () False when the sample's intrinsics are a guess (``meta["intrinsics_known"]``)
``index``, ``source`` int64 () global item index and source position in the mixture
``sensor``            str
``data_faults``       list of :class:`~metricanything.data.sources.Fault`: samples skipped for this item
===================== =========================================================================

:func:`collate_items` stacks tensors along a new batch dimension and keeps the rest as lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from metricanything.data.sample import RGBDSample

#: the batch key holding, per item, the faults skipped while drawing it
FAULTS_KEY = "data_faults"


def to_item(sample: RGBDSample, index: int, source: int, faults: Sequence[Any] = ()) -> dict[str, Any]:
    """Tensors of one training view (image float [0, 1], depth 0 where invalid) plus bookkeeping."""
    valid = sample.valid
    return {
        "image": torch.from_numpy(np.ascontiguousarray(sample.image.transpose(2, 0, 1))).float() / 255.0,
        "depth": torch.from_numpy(np.where(valid, sample.depth, np.float32(0)).astype(np.float32))[None],
        "valid": torch.from_numpy(valid.copy())[None],
        "fx": torch.tensor(sample.intrinsics.fx, dtype=torch.float32),
        "metric_scale_trusted": torch.tensor(bool(sample.metric_scale_trusted)),
        "index": torch.tensor(int(index), dtype=torch.int64),
        "source": torch.tensor(int(source), dtype=torch.int64),
        "fov_known": torch.tensor(bool(sample.meta.get("intrinsics_known", True))),
        "sensor": sample.sensor,
        FAULTS_KEY: list(faults),
    }


def collate_items(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Items of one size -> a batch: tensors stacked (B x ...), everything else as a list of B values."""
    out: dict[str, Any] = {}
    for k in items[0]:
        vals = [it[k] for it in items]
        out[k] = torch.stack(vals) if isinstance(vals[0], torch.Tensor) else vals
    return out
