"""The embedded mixture: seed -> (family, source kind, sample), deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from metricanything.data.mixture import (
    DEFAULT_SOURCES,
    MixedRenderDataset,
    derive_seed,
    parse_sources,
    render_mixed_sample,
)
from metricanything.errors import InvalidInputError


def test_same_seed_same_sample_and_the_source_follows_the_seed():
    a = render_mixed_sample(123, size=(32, 24))
    b = render_mixed_sample(123, size=(32, 24))
    assert a.sensor == b.sensor and a.depth.tobytes() == b.depth.tobytes() and a.meta == b.meta
    kinds = {render_mixed_sample(s, size=(16, 12), sources="lidar,sfm").meta["source"] for s in range(12)}
    assert kinds == {"lidar", "sfm"}


def test_short_range_sensors_only_see_rooms():
    for seed in range(4):
        s = render_mixed_sample(seed, size=(24, 16), source="tof")
        assert s.meta["family"] == "indoor" and s.sensor == "tof"
    s = render_mixed_sample(0, size=(24, 16), source="rendered")
    assert s.sensor == "synthetic" and s.source_kind == "rendered" and s.valid.mean() > 0.5


def test_dataset_cycles_sources_and_ids():
    ds = MixedRenderDataset(7, seed=2, size=(16, 12))
    assert len(ds) == 7
    items = list(ds)
    assert [x.meta["source"] for x in items] == [DEFAULT_SOURCES[i % 6] for i in range(7)]
    assert [x.sample_id for x in items] == [f"{i:06d}-{DEFAULT_SOURCES[i % 6]}" for i in range(7)]
    assert np.array_equal(ds[-1].depth, items[6].depth)
    with pytest.raises(IndexError):
        ds[7]
    assert len({derive_seed(2, i) for i in range(1000)}) == 1000 and derive_seed(2, 0) != derive_seed(3, 0)


def test_source_parsing():
    assert parse_sources(None) == DEFAULT_SOURCES
    assert parse_sources(" LiDAR, synthetic ,lidar") == ("lidar", "rendered")
    with pytest.raises(InvalidInputError, match="sonar"):
        parse_sources("lidar,sonar")
    with pytest.raises(InvalidInputError):
        parse_sources(",")
    with pytest.raises(InvalidInputError):
        render_mixed_sample(0, source="radar")
