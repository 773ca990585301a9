"""Training data: index-addressed determinism, source mixture, training views, label corruption, clean validation."""

from __future__ import annotations

import numpy as np
import torch

from metricanything.camera import Intrinsics
from metricanything.data.sample import RGBDSample
from metricanything.data.sources import SourceMixture, item_rng
from metricanything.train.config import SourceConfig, load_config
from metricanything.train.data import corrupt_labels, square_crop
from metricanything.train.pretrain import PretrainDataset, PretrainTask

TEST_CONFIG = "teacher_test"  # a shipped preset


def _sample(h: int = 24, w: int = 32, seed: int = 0) -> RGBDSample:
    rng = np.random.default_rng(seed)
    depth = rng.uniform(1, 9, (h, w)).astype(np.float32)
    image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    return RGBDSample(image, depth, np.ones((h, w), bool), Intrinsics(40.0, 41.0, 15.5, 11.5, w, h), sample_id=f"s{seed}")


def test_items_are_a_pure_function_of_the_index():
    cfg = load_config(TEST_CONFIG)
    a, b = PretrainDataset(cfg), PretrainDataset(cfg)
    for i in (5, 0, 5):
        x, y = a[i], b[i]
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["depth"], y["depth"])
    assert not torch.equal(a[1]["image"], a[2]["image"])


def test_mixture_weights_pick_sources_in_proportion():
    mix = SourceMixture([SourceConfig(kind="render", weight=3.0), SourceConfig(kind="render", weight=1.0, seed=99)], seed=1)
    picks = np.array([mix.locate(i)[0] for i in range(2000)])
    assert abs((picks == 0).mean() - 0.75) < 0.04
    # an infinite render source renders a new seed per index
    assert mix.locate(17) == (mix.locate(17)[0], 17)


def test_square_crop_keeps_intrinsics_consistent():
    s = _sample()
    out = square_crop(s, 16, None)  # centred: resize 24x32 -> 16x21 (short side 16), crop 16x16 at x=2
    assert out.depth.shape == (16, 16)
    k = s.intrinsics.resized(21, 16).cropped(2, 0, 16, 16)
    assert out.intrinsics.isclose(k)
    flipped = [square_crop(s, 16, item_rng(0, i, 3)) for i in range(8)]
    assert all(f.intrinsics.width == 16 and f.depth.shape == (16, 16) for f in flipped)


def test_corrupt_labels_hits_the_requested_fraction_with_gross_factors():
    s = _sample()
    bad, mask = corrupt_labels(s, 0.1, np.random.default_rng(0))
    assert mask.sum() == round(0.1 * s.valid.sum())
    ratio = np.abs(np.log(bad.depth[mask] / s.depth[mask]))
    assert (ratio >= 0.3 - 1e-6).all() and (ratio <= 1.2 + 1e-6).all()
    assert np.array_equal(bad.depth[~mask], s.depth[~mask])


def test_validation_items_stay_clean_under_label_corruption():
    noisy = load_config(TEST_CONFIG, {"data.label_outlier_fraction": 0.1, "data.label_outlier_sources": ["*"]})
    clean = load_config(TEST_CONFIG)
    a, b = PretrainTask(noisy).validation_items()[0], PretrainTask(clean).validation_items()[0]
    assert torch.equal(a["depth"], b["depth"])
    x, y = PretrainDataset(noisy, augment=False)[3], PretrainDataset(clean, augment=False)[3]
    changed = ((x["depth"] - y["depth"]).abs() > 1e-6) & y["valid"]
    assert 0.05 < changed.float().sum() / y["valid"].sum() < 0.15
