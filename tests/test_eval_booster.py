"""The Booster benchmark reproduces the official evaluation arithmetic on a tiny Booster-layout dataset.

Official protocol (MetricAnything ``dataset/eval_booster.py``, ``eval.py``): train split, balanced scenes, every
image of camera_00; fx, fy, cx, cy from ``mtxL``; depth = (fx * baseline) / (disp + 1e-6) / 1000 in float32;
valid = disp > 0, mask_00 != 0 and 1e-3 <= depth <= 10 m; no crop, no alignment, GT focal; the student's input is
the uint8 image resized (antialiased) to its square size; the inverse depth is upsampled bilinearly to the GT size;
all valid pixels of the split pooled and every metric computed once.
"""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
import pytest

from metricanything.data.loaders.booster import load_booster, read_booster_calib
from metricanything.errors import InputFileError
from metricanything.eval.baselines import Predictor
from metricanything.eval.benchmarks import load_benchmark
from metricanything.eval.protocol import released_resize, upsample_inverse_depth
from metricanything.eval.report import write_outputs
from metricanything.eval.runner import evaluate

# mtxL (the left camera matrix, what the released evaluation reads) and proj_matL (rectified projection) differ,
# as they do in Booster's own files; the GT depth and the focal given to models must come from mtxL.
FX, FY, BASELINE_MM = 1030.0, 1031.5, 100.0  # depth = 103 / disp metres
FX_PROJ = 1000.0


def _matrix(name, rows, cols, values):
    data = " ".join(f"{v:.10g}" for v in values)
    return (f'<{name} type_id="opencv-matrix">\n  <rows>{rows}</rows>\n  <cols>{cols}</cols>\n  <dt>d</dt>\n'
            f"  <data>\n    {data}</data></{name}>\n")  # fmt: skip


def calib_xml(w, h, *, mtx=True, baseline=True, proj_r=True):
    """An OpenCV FileStorage calibration as Booster ships it: a date string, mtxL / distL, rectified projections
    and baselineLR (the released reader finds ``mtxL`` and ``baselineLR`` at the top level)."""
    cx, cy = (w - 1) / 2 + 0.75, (h - 1) / 2 - 0.5
    parts = ['<?xml version="1.0"?>\n<opencv_storage>\n<calibration_time>"Thu Jan  1 00:00:00 2021"</calibration_time>\n']
    if mtx:
        parts.append(_matrix("mtxL", 3, 3, [FX, 0, cx, 0, FY, cy, 0, 0, 1]))
    parts.append(_matrix("distL", 1, 5, [0.01, -0.02, 0, 0, 0]))
    parts.append(_matrix("proj_matL", 3, 4, [FX_PROJ, 0, cx - 3, 0, 0, FX_PROJ, cy + 2, 0, 0, 0, 1, 0]))
    if proj_r:
        parts.append(_matrix("proj_matR", 3, 4, [FX, 0, cx - 3, -FX * BASELINE_MM, 0, FX, cy + 2, 0, 0, 0, 1, 0]))
    if baseline:
        parts.append(f"<baselineLR>{BASELINE_MM}</baselineLR>\n")
    parts.append("</opencv_storage>\n")
    return "".join(parts)


def write_scene(root, name, disp, mask, n_images, images=None, **calib):
    scene = root / name
    (scene / "camera_00").mkdir(parents=True)
    h, w = disp.shape
    np.save(scene / "disp_00.npy", disp.astype(np.float32))
    cv2.imwrite(str(scene / "mask_00.png"), (mask * 255).astype(np.uint8))
    (scene / "calib_00-02.xml").write_text(calib_xml(w, h, **calib))
    for i in range(n_images):
        img = images[i] if images is not None else np.full((h, w, 3), 40 * i, np.uint8)
        cv2.imwrite(str(scene / "camera_00" / f"im{i}.png"), img[..., ::-1])
    return scene


def released_depth(disp):
    """GT depth the released evaluation computes: float32 disparity, (fx * baseline) / (disp + 1e-6) / 1000."""
    d32 = disp.astype(np.float32)
    with np.errstate(divide="ignore"):
        return (FX * BASELINE_MM) / (d32 + 1e-6) / 1000.0


class FixedPredictor(Predictor):
    """Returns a fixed prediction per scene (possibly at another resolution), receives the GT focal."""

    name = "fixed"
    accepts_prompt = False

    def __init__(self, preds, input_size=None):
        self.preds = preds
        self.focals = []
        self.images = []
        self.input_size = input_size

    def predict(self, sample, prompt, intrinsics_for_model):
        self.focals.append(intrinsics_for_model.fx)
        self.images.append(sample.image)
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
    assert b.input_resize == "released"


def test_calibration_is_read_from_mtxL_as_the_released_reader_does(tmp_path):
    path = tmp_path / "calib_00-02.xml"
    path.write_text(calib_xml(40, 30))
    fx, fy, cx, cy, baseline = read_booster_calib(path)
    assert (fx, fy, cx, cy, baseline) == (FX, FY, 20.25, 14.0, BASELINE_MM)  # mtxL, not proj_matL's 1000
    # without baselineLR: -proj_matR[0, 3] / fx, as the released reader falls back
    path.write_text(calib_xml(40, 30, baseline=False))
    assert read_booster_calib(path)[4] == pytest.approx(BASELINE_MM, rel=1e-12)
    path.write_text(calib_xml(40, 30, mtx=False))
    with pytest.raises(InputFileError, match=r"calib_00-02\.xml.*no mtxL"):
        read_booster_calib(path)
    path.write_text(calib_xml(40, 30, baseline=False, proj_r=False))
    with pytest.raises(InputFileError, match="baselineLR"):
        read_booster_calib(path)


def test_loader_depth_and_intrinsics_come_from_mtxL(tmp_path):
    disp = np.random.default_rng(1).uniform(11.0, 50.0, (6, 8))
    write_scene(tmp_path / "train" / "balanced", "s", disp, np.ones((6, 8), bool), 1)
    (sample,) = list(load_booster(tmp_path, split="train/balanced"))
    K = sample.intrinsics
    assert (K.fx, K.fy, K.cx, K.cy, K.width, K.height) == (FX, FY, 4.25, 2.0, 8, 6)
    np.testing.assert_array_equal(sample.depth, released_depth(disp))  # bit-exact float32 arithmetic
    # with proj_matL's focal the depth would be 1000 / 1030 = 0.97 x this
    assert float(np.median(sample.depth / (FX_PROJ * BASELINE_MM / disp / 1000.0))) == pytest.approx(FX / FX_PROJ, rel=1e-5)


def test_loader_without_mtxL_names_the_calibration_file(tmp_path):
    write_scene(tmp_path, "s", np.full((4, 4), 20.0), np.ones((4, 4), bool), 1, mtx=False)
    with pytest.raises(InputFileError, match=r"s/calib_00-02\.xml.*mtxL"):
        list(load_booster(tmp_path))


def test_booster_pooled_arithmetic_matches_hand_computation(tmp_path):
    rng = np.random.default_rng(0)
    # scene A: 4 x 6, disparities giving 2.5-9.5 m plus one at 20 m, one masked pixel, one zero disparity, 2 images
    disp_a = rng.uniform(10.7, 40.0, (4, 6))
    disp_a[0, 0] = 0.0  # invalid: no disparity
    disp_a[1, 1] = 5.0  # 20.6 m: outside 10 m
    disp_a[2, 2] = 10.3  # 10 m (just under, by the +1e-6): inside the closed range
    mask_a = np.ones((4, 6), bool)
    mask_a[3, 5] = False
    # scene B: 6 x 8, 1 image, prediction given at half resolution (constant -> bilinear upsampling is exact)
    disp_b = rng.uniform(12.0, 60.0, (6, 8))
    mask_b = np.ones((6, 8), bool)
    root = tmp_path / "booster"
    write_scene(root / "train" / "balanced", "sceneA", disp_a, mask_a, 2)
    write_scene(root / "train" / "balanced", "sceneB", disp_b, mask_b, 1)
    write_scene(root / "train" / "unbalanced", "sceneC", disp_b, mask_b, 1)  # not part of the protocol

    pred_a = (103.0 / disp_a.clip(1.0) * rng.uniform(0.6, 1.5, disp_a.shape)).astype(np.float32)
    pred_b_half = np.full((3, 4), 3.0, np.float32)
    predictor = FixedPredictor({"sceneA": pred_a, "sceneB": pred_b_half})
    results = evaluate({"fixed": predictor}, "booster", None, root=root)
    write_outputs(results, tmp_path / "out")

    # hand computation, independent of the loader and of metricanything.metrics
    ps, gs = [], []
    for disp, mask, pred, n_img in ((disp_a, mask_a, pred_a, 2), (disp_b, mask_b, np.full((6, 8), 3.0), 1)):
        z = released_depth(disp)
        valid = (disp.astype(np.float32) > 0) & mask & (z >= 1e-3) & (z <= 10.0)
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


def _checkerboard(h, w):
    yy, xx = np.mgrid[0:h, 0:w]
    board = ((yy + xx) % 2 * 255).astype(np.uint8)
    return np.stack([board, 255 - board, board // 2], axis=2)


def test_released_resize_is_torchvision_antialiased_uint8_bilinear():
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (45, 70, 3), dtype=np.uint8)
    t = torch.from_numpy(img).permute(2, 0, 1)[None]
    native = F.interpolate(t, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
    floated = F.interpolate(t.float(), size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
    np.testing.assert_array_equal(released_resize(img, 32, 32, native_uint8=True), native[0].permute(1, 2, 0).numpy())
    np.testing.assert_array_equal(released_resize(img, 32, 32, native_uint8=False),
                                  floated.round()[0].permute(1, 2, 0).numpy().astype(np.uint8))  # fmt: skip
    both = released_resize(img, 32, 32, native_uint8=True).astype(int) - released_resize(img, 32, 32, native_uint8=False)
    assert np.abs(both).max() <= 1  # the two torchvision paths agree to one grey level
    up = released_resize(img, 96, 80)
    assert up.shape == (80, 96, 3) and up.dtype == np.uint8
    # antialiasing: shrinking pixel noise ~4.3x averages it out; plain bilinear (2 taps per axis) does not
    noise = rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)
    aa = released_resize(noise, 70, 70).astype(float)
    plain = F.interpolate(torch.from_numpy(noise).permute(2, 0, 1)[None].float(), size=(70, 70), mode="bilinear",
                          align_corners=False)[0].numpy()  # fmt: skip
    assert aa.std() < 0.5 * plain.std()


def test_released_protocol_resizes_the_input_and_upsamples_inverse_depth(tmp_path):
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(4)
    h, w, s = 30, 40, 16
    disp = rng.uniform(11.0, 60.0, (h, w))
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    root = tmp_path / "booster"
    write_scene(root / "train" / "balanced", "scene", disp, np.ones((h, w), bool), 1, images=[image])
    pred_s = rng.uniform(1.5, 6.0, (s, s)).astype(np.float32)
    predictor = FixedPredictor({"scene": pred_s}, input_size=(s, s))
    results = evaluate({"fixed": predictor}, "booster", None, root=root)

    np.testing.assert_array_equal(predictor.images[0], released_resize(image, s, s))
    assert predictor.focals == [pytest.approx(FX * s / w)]
    # the released output path, written out with torch: inverse depth, bilinear to GT size, clamp, invert
    inv = F.interpolate(torch.from_numpy(1.0 / pred_s)[None, None], size=(h, w), mode="bilinear", align_corners=False)
    full = (1.0 / inv.clamp(1e-3, 1e3))[0, 0].numpy()
    np.testing.assert_allclose(upsample_inverse_depth(pred_s, w, h), full, rtol=1e-6)
    z = released_depth(disp)
    valid = (z >= 1e-3) & (z <= 10.0)
    expected = hand_metrics(full[valid], z[valid])
    head = results.headline("fixed", "none")
    for key in ("abs_rel", "rmse", "delta1"):
        assert head[key] == pytest.approx(expected[key], rel=1e-5), key

    # the native protocol hands the model the image at its own size (the model resizes it itself)
    native = FixedPredictor({"scene": pred_s}, input_size=(s, s))
    evaluate({"fixed": native}, dataclasses.replace(load_benchmark("booster"), input_resize="native"), None, root=root)
    np.testing.assert_array_equal(native.images[0], image)


def test_released_protocol_feeds_the_student_the_antialiased_uint8_resize():
    """Through the public API path (api.infer on a Student), the network input is the released one."""
    import torch
    import torch.nn.functional as F

    from metricanything import api
    from metricanything.camera import Intrinsics
    from metricanything.data.sample import RGBDSample
    from metricanything.eval.baselines import ExternalModel
    from metricanything.eval.runner import run_predictor
    from metricanything.models.student import Student, student_config

    torch.manual_seed(0)
    model = Student(student_config("fixture_tiny")).eval()
    s = model.network_size
    seen = []
    model.encoder.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach().clone()))
    predictor = ExternalModel.from_api(model, api.infer, "student", accepts_prompt=False, input_size=(s, s))
    h, w = 600, 800  # larger than the network input: antialiasing matters when shrinking
    image = _checkerboard(h, w)
    K = Intrinsics(FX, FX, w / 2, h / 2, w, h)
    sample = RGBDSample(image, np.ones((h, w), np.float32), np.ones((h, w), bool), K, sample_id="x")
    spec = load_benchmark("booster")
    depth = run_predictor(predictor, sample, None, spec)

    mean = torch.tensor(api.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(api.IMAGENET_STD).view(1, 3, 1, 1)
    resized = torch.from_numpy(released_resize(image, s, s)).permute(2, 0, 1)[None].float() / 255.0
    torch.testing.assert_close(seen[-1], (resized - mean) / std, rtol=0, atol=1e-6)
    at_s = api.infer(model, released_resize(image, s, s), intrinsics=K.resized(s, s)).depth
    np.testing.assert_allclose(depth, upsample_inverse_depth(at_s, w, h), rtol=1e-6)
    assert depth.shape == (h, w)

    run_predictor(predictor, sample, None, dataclasses.replace(spec, input_resize="native"))
    plain = F.interpolate(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0, size=(s, s),
                          mode="bilinear", align_corners=False)  # fmt: skip
    torch.testing.assert_close(seen[-1], (plain - mean) / std, rtol=0, atol=1e-5)
    assert float((seen[-1] - seen[0]).abs().max()) > 1.0  # the checkerboard aliases without antialiasing
