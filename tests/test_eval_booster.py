"""The Booster benchmark reproduces the official evaluation arithmetic on a tiny Booster-layout dataset.

Official protocol (MetricAnything ``dataset/eval_booster.py``): train split, balanced scenes, every image of
camera_00; depth = fx * baseline / (disp + 1e-6) / 1000; valid = disp > 0, mask_00 != 0 and
1e-3 <= depth <= 10 m; no crop, no alignment, GT focal, prediction bilinearly upsampled to the GT size; all
valid pixels of the split pooled and every metric computed once.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from metricanything.eval.baselines import Predictor
from metricanything.eval.benchmarks import load_benchmark
from metricanything.eval.runner import evaluate

FX, BASELINE_MM = 1000.0, 100.0  # depth = 100 / disp metres


def write_scene(root, name, disp, mask, n_images):
    scene = root / name
    (scene / "camera_00").mkdir(parents=True)
    h, w = disp.shape
    np.save(scene / "disp_00.npy", disp.astype(np.float32))
    cv2.imwrite(str(scene / "mask_00.png"), (mask * 255).astype(np.uint8))
    cx, cy = (w - 1) / 2, (h - 1) / 2
    data = f"{FX} 0. {cx} 0. 0. {FX} {cy} 0. 0. 0. 1. 0."
    (scene / "calib_00-02.xml").write_text(
        '<?xml version="1.0"?>\n<opencv_storage>\n<proj_matL type_id="opencv-matrix">\n'
        f"  <rows>3</rows>\n  <cols>4</cols>\n  <dt>d</dt>\n  <data>{data}</data></proj_matL>\n"
        f"<baselineLR>{BASELINE_MM}</baselineLR>\n</opencv_storage>\n"
    )
    for i in range(n_images):
        cv2.imwrite(str(scene / "camera_00" / f"im{i}.png"), np.full((h, w, 3), 40 * i, np.uint8))


class FixedPredictor(Predictor):
    """Returns a fixed prediction per scene (possibly at another resolution), receives the GT focal."""

    name = "fixed"
    accepts_prompt = False

    def __init__(self, preds):
        self.preds = preds
        self.focals = []

    def predict(self, sample, prompt, intrinsics_for_model):
        self.focals.append(intrinsics_for_model.fx)
        assert not sample.valid.any()  # the predictor never sees the GT
        return self.preds[sample.sample_id.rsplit("_im", 1)[0]]


def hand_metrics(p, g):
    p, g = np.asarray(p, np.float64), np.asarray(g, np.float64)
    e = np.log(p) - np.log(g)
    ratio = np.maximum(p / g, g / p)
    return {
        "abs_rel": np.mean(np.abs(p - g) / g),
        "sq_rel": np.mean((p - g) ** 2 / g),
        "rmse": math.sqrt(np.mean((p - g) ** 2)),
        "mae": np.mean(np.abs(p - g)),
        "rmse_log": math.sqrt(np.mean(e**2)),
        "log10": np.mean(np.abs(np.log10(p) - np.log10(g))),
        "silog": math.sqrt(np.mean(e**2) - 0.5 * np.mean(e) ** 2),
        "delta1": np.mean(ratio < 1.25),
        "delta2": np.mean(ratio < 1.25**2),
        "delta3": np.mean(ratio < 1.25**3),
    }


def test_booster_definition_is_the_official_protocol():
    b = load_benchmark("booster")
    assert (b.dataset, b.split) == ("booster", "train/balanced")
    assert b.depth_range == (1e-3, 10.0) and b.range_bounds == "closed"
    assert (b.aggregation, b.alignment, b.crop, b.focal_source, b.upsample) == ("pooled", "none", "none", "gt", "bilinear")
    assert not b.clip_prediction and b.eval_resolution is None


def test_booster_pooled_arithmetic_matches_hand_computation(tmp_path):
    rng = np.random.default_rng(0)
    # scene A: 4 x 6, disparities giving 2.5-9.5 m plus one at 20 m, one masked pixel, one zero disparity, 2 images
    disp_a = rng.uniform(10.5, 40.0, (4, 6))
    disp_a[0, 0] = 0.0  # invalid: no disparity
    disp_a[1, 1] = 5.0  # 20 m: outside 10 m
    disp_a[2, 2] = 10.0  # 10 m (just under, by the +1e-6): inside the closed range
    mask_a = np.ones((4, 6), bool)
    mask_a[3, 5] = False
    # scene B: 6 x 8, 1 image, prediction given at half resolution (constant -> bilinear upsampling is exact)
    disp_b = rng.uniform(12.0, 60.0, (6, 8))
    mask_b = np.ones((6, 8), bool)
    root = tmp_path / "booster"
    write_scene(root / "train" / "balanced", "sceneA", disp_a, mask_a, 2)
    write_scene(root / "train" / "balanced", "sceneB", disp_b, mask_b, 1)
    write_scene(root / "train" / "unbalanced", "sceneC", disp_b, mask_b, 1)  # not part of the protocol

    pred_a = (100.0 / disp_a.clip(1.0) * rng.uniform(0.6, 1.5, disp_a.shape)).astype(np.float32)
    pred_b_half = np.full((3, 4), 3.0, np.float32)
    predictor = FixedPredictor({"sceneA": pred_a, "sceneB": pred_b_half})
    results = evaluate({"fixed": predictor}, "booster", None, tmp_path / "out", root=root)

    # hand computation, independent of the loader and of metricanything.metrics
    ps, gs = [], []
    for disp, mask, pred, n_img in ((disp_a, mask_a, pred_a, 2), (disp_b, mask_b, np.full((6, 8), 3.0), 1)):
        d32 = disp.astype(np.float32).astype(np.float64)
        with np.errstate(divide="ignore"):
            z = (FX * BASELINE_MM / (d32 + 1e-6) / 1000.0).astype(np.float32)
        valid = (d32 > 0) & mask & (z >= 1e-3) & (z <= 10.0)
        for _ in range(n_img):
            ps.append(pred[valid])
            gs.append(z[valid])
    expected = hand_metrics(np.concatenate(ps), np.concatenate(gs))
    head = results.headline("fixed", "none")
    assert results.num_samples == 3 and predictor.focals == [FX] * 3
    assert head["n"] == sum(len(g) for g in gs) == 2 * (24 - 3) + 48
    for key, value in expected.items():
        assert head[key] == pytest.approx(value, rel=1e-5, abs=1e-9), key
    # pooled is not the per-image mean here (images have different pixel counts and errors)
    per_image = results.summaries["fixed"]["none"]["per_image_mean"]
    assert per_image["abs_rel"] != pytest.approx(head["abs_rel"], rel=1e-3)
    assert (tmp_path / "out" / "metrics.json").is_file()
