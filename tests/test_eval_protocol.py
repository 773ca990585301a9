"""Protocol knobs of the evaluation harness: each one changes the score exactly as computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metricanything.camera import Intrinsics
from metricanything.data.sample import RGBDSample
from metricanything.errors import DatasetError, InvalidInputError
from metricanything.eval.benchmarks import (
    BenchmarkSpec,
    list_benchmarks,
    load_benchmark,
    resolve_root,
    spec_from_dict,
)
from metricanything.eval.protocol import (
    BenchmarkScorer,
    align_depth,
    crop_box,
    crop_mask,
    range_mask,
    resample_sample,
    resize_depth,
)


def make_sample(gt: np.ndarray, valid: np.ndarray | None = None, name: str = "s") -> RGBDSample:
    gt = np.asarray(gt, dtype=np.float32)
    h, w = gt.shape
    valid = np.ones((h, w), bool) if valid is None else valid
    depth = np.where(valid, gt, 0).astype(np.float32)
    return RGBDSample(np.zeros((h, w, 3), np.uint8), depth, valid, Intrinsics.from_focal(10.0, w, h), sample_id=name)


def spec(**kw) -> BenchmarkSpec:
    base = {"name": "t", "dataset": "synthetic", "depth_range": [0.0, None]}
    base.update(kw)
    return spec_from_dict(base)


def absrel(p, g) -> float:
    p, g = np.asarray(p, np.float64), np.asarray(g, np.float64)
    return float(np.mean(np.abs(p - g) / g))


GT = np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0], [9.0, 10.0, 11.0, 12.0]], np.float32)
PRED = np.array([[1.5, 2.0, 2.0, 4.0], [5.0, 9.0, 7.0, 4.0], [9.0, 12.0, 11.0, 6.0]], np.float32)


# ---------------------------------------------------------------------------------------------- crops
def test_kitti_crops_match_published_fractions():
    # KITTI raw GT 375 x 1242: garg rows [153, 371), cols [44, 1197); eigen rows [124, 342)
    assert crop_box("garg", 1242, 375) == (153, 371, 44, 1197)
    assert crop_box("eigen", 1242, 375) == (124, 342, 44, 1197)
    assert crop_box("none", 1242, 375) is None


def test_nyu_crop_is_the_standard_box_and_scales():
    assert crop_box("nyu", 640, 480) == (45, 471, 41, 601)
    # at half size every edge halves, rounded half up: 22.5 -> 23, 235.5 -> 236, 20.5 -> 21, 300.5 -> 301
    assert crop_box("nyu", 320, 240) == (23, 236, 21, 301)
    m = crop_mask("nyu", 640, 480)
    assert m.sum() == (471 - 45) * (601 - 41) and m[45, 41] and not m[44, 41] and not m[45, 601]


def test_explicit_box_scales_with_crop_size_and_must_fit():
    assert crop_box((1, 3, 2, 6), 8, 4) == (1, 3, 2, 6)
    assert crop_box((1, 3, 2, 6), 16, 8, crop_size=(8, 4)) == (2, 6, 4, 12)
    with pytest.raises(InvalidInputError, match="does not fit"):
        crop_box((1, 5, 2, 6), 8, 4)


def test_crop_changes_score_exactly():
    s = make_sample(GT)
    full = BenchmarkScorer(spec())
    row_full = full.score(PRED, s).metrics
    assert row_full["abs_rel"] == pytest.approx(absrel(PRED, GT), rel=1e-12)
    boxed = BenchmarkScorer(spec(crop=[0, 2, 1, 3]))  # rows 0-1, cols 1-2
    row = boxed.score(PRED, s).metrics
    assert row["n"] == 4
    assert row["abs_rel"] == pytest.approx(absrel(PRED[0:2, 1:3], GT[0:2, 1:3]), rel=1e-12)
    assert row["abs_rel"] != pytest.approx(row_full["abs_rel"])


# ---------------------------------------------------------------------------------------------- range
def test_open_and_closed_bounds_differ_exactly_at_the_edges():
    s = make_sample(GT)
    open_ = BenchmarkScorer(spec(depth_range=[2.0, 11.0], range_bounds="open")).score(PRED, s).metrics
    closed = BenchmarkScorer(spec(depth_range=[2.0, 11.0], range_bounds="closed")).score(PRED, s).metrics
    sel_open = (GT > 2) & (GT < 11)
    sel_closed = (GT >= 2) & (GT <= 11)
    assert open_["n"] == 8 and closed["n"] == 10
    assert open_["abs_rel"] == pytest.approx(absrel(PRED[sel_open], GT[sel_open]), rel=1e-12)
    assert closed["abs_rel"] == pytest.approx(absrel(PRED[sel_closed], GT[sel_closed]), rel=1e-12)


def test_range_mask_never_reads_invalid_depth():
    gt = np.array([[np.nan, 5.0], [np.inf, 0.5]])
    valid = np.array([[False, True], [False, True]])
    np.testing.assert_array_equal(range_mask(gt, valid, (1.0, 10.0), "open"), [[False, True], [False, False]])


# ---------------------------------------------------------------------------------------------- alignment
def test_median_alignment_recovers_scale():
    s = make_sample(GT)
    pred = 2.5 * GT
    none = BenchmarkScorer(spec()).score(pred, s).metrics
    med = BenchmarkScorer(spec(alignment="median")).score(pred, s).metrics
    assert none["abs_rel"] == pytest.approx(1.5, rel=1e-6)
    assert med["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    assert med["scale"] == pytest.approx(1 / 2.5, rel=1e-6)


def test_lstsq_scale_matches_hand_formula():
    s = make_sample(GT)
    sc = BenchmarkScorer(spec(alignment="lstsq_scale")).score(PRED, s)
    p, g = PRED.astype(np.float64).ravel(), GT.astype(np.float64).ravel()
    k = np.dot(p, g) / np.dot(p, p)
    assert sc.metrics["scale"] == pytest.approx(k, rel=1e-9)
    assert sc.metrics["abs_rel"] == pytest.approx(absrel(k * p, g), rel=1e-6)


def test_lstsq_scale_shift_in_depth_and_inverse_space():
    s = make_sample(GT)
    affine_depth = 0.5 * GT + 3.0
    d = BenchmarkScorer(spec(alignment="lstsq_scale_shift")).score(affine_depth, s).metrics
    assert d["abs_rel"] == pytest.approx(0.0, abs=1e-5)
    assert d["scale"] == pytest.approx(2.0, rel=1e-6) and d["shift"] == pytest.approx(-6.0, rel=1e-6)
    # a prediction affine in inverse depth: 1/p = 0.2 / g + 0.05 -> exact in inverse space only
    pred = 1.0 / (0.2 / GT + 0.05)
    inv = BenchmarkScorer(spec(alignment="lstsq_scale_shift", alignment_space="inverse")).score(pred, s).metrics
    dep_spec = spec(alignment="lstsq_scale_shift", alignment_space="depth", nonpositive="clip")
    dep = BenchmarkScorer(dep_spec).score(pred, s).metrics
    assert inv["abs_rel"] == pytest.approx(0.0, abs=1e-5)
    assert dep["abs_rel"] > 1e-3
    # hand check of the inverse-space fit: s, t minimise sum (s/p + t - 1/g)^2
    x, y = 1 / pred.astype(np.float64).ravel(), 1 / GT.astype(np.float64).ravel()
    A = np.stack([x, np.ones_like(x)], 1)
    s_hand, t_hand = np.linalg.lstsq(A, y, rcond=None)[0]
    assert inv["scale"] == pytest.approx(s_hand, rel=1e-6) and inv["shift"] == pytest.approx(t_hand, abs=1e-9)


def test_align_on_prompt_fits_on_prompt_pixels_only():
    s = make_sample(GT)
    pmask = np.zeros_like(GT, bool)
    pmask[0, 0] = pmask[2, 3] = True
    pdepth = np.where(pmask, GT, 0).astype(np.float32)
    pred = GT.copy()
    pred[0, 0], pred[2, 3] = 2.0, 24.0  # prompt pixels say "scale by 1/2"
    sc = BenchmarkScorer(spec(alignment="median", align_on="prompt")).score(pred, s, pdepth, pmask)
    assert sc.metrics["scale"] == pytest.approx(np.median([1.0, 12.0]) / np.median([2.0, 24.0]))
    assert sc.metrics["abs_rel"] == pytest.approx(absrel(0.5 * pred, GT), rel=1e-6)
    with pytest.raises(InvalidInputError, match="aligns on the prompt"):
        BenchmarkScorer(spec(alignment="median", align_on="prompt")).score(pred, s)


def test_inverse_alignment_nonpositive_raises_or_clips():
    g = np.array([[1.0, 2.0, 4.0]])
    pred = np.array([[1.0, 2.0, 100.0]])
    mask = np.ones_like(g, bool)
    fit = np.array([[True, True, False]])
    # fit on two pixels only: 1/p' = s/p + t through (1, 1) and (0.5, 0.2) -> s = 1.6, t = -0.6, so the
    # third pixel (1/p = 0.01) gets 1/p' = -0.584 < 0
    target = np.array([[1.0, 5.0, 1.0]])
    with pytest.raises(InvalidInputError, match="non-positive"):
        align_depth(pred, target, fit, "lstsq_scale_shift", "inverse", "raise", check_mask=mask)
    depth, params = align_depth(pred, target, fit, "lstsq_scale_shift", "inverse", "clip", check_mask=mask)
    assert params["num_clipped"] == 1 and depth[0, 2] == pytest.approx(1000.0)


# ---------------------------------------------------------------------------------------------- aggregation
def test_pooled_and_per_image_differ_as_expected():
    a = make_sample(np.full((1, 1), 1.0), name="a")  # one pixel, AbsRel 1.0
    b = make_sample(np.full((3, 3), 2.0), name="b")  # nine pixels, AbsRel 0
    preds = [np.full((1, 1), 2.0, np.float32), np.full((3, 3), 2.0, np.float32)]
    per = BenchmarkScorer(spec(aggregation="per_image"))
    pooled = BenchmarkScorer(spec(aggregation="pooled"))
    for sc in (per, pooled):
        sc.score(preds[0], a)
        sc.score(preds[1], b)
    assert per.headline()["abs_rel"] == pytest.approx((1.0 + 0.0) / 2)
    assert pooled.headline()["abs_rel"] == pytest.approx((1.0 + 0.0 * 9) / 10)
    # RMSE: per-image mean of sqrt vs sqrt of pooled mean of squares
    assert per.headline()["rmse"] == pytest.approx((1.0 + 0.0) / 2)
    assert pooled.headline()["rmse"] == pytest.approx(math.sqrt(1.0 / 10))
    summary = pooled.summary()
    assert summary["aggregation"] == "pooled" and summary["num_pixels"] == 10


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.integers(0, 2**31 - 1))
def test_equal_pixel_counts_make_both_aggregations_agree_for_means(n_images, seed):
    rng = np.random.default_rng(seed)
    per, pooled = BenchmarkScorer(spec(aggregation="per_image")), BenchmarkScorer(spec(aggregation="pooled"))
    for i in range(n_images):
        g = rng.uniform(0.5, 20, (3, 4)).astype(np.float32)
        p = (g * rng.uniform(0.7, 1.4, g.shape)).astype(np.float32)
        s = make_sample(g, name=str(i))
        per.score(p, s)
        pooled.score(p, s)
    for m in ("abs_rel", "mae", "delta1", "sq_rel"):  # plain means over pixels: identical when counts are equal
        assert per.headline()[m] == pytest.approx(pooled.headline()[m], rel=1e-9, abs=1e-12)


def test_clip_prediction_and_exclude_prompt_pixels():
    s = make_sample(GT)
    pred = GT.copy()
    pred[0, 0] = 50.0  # far outside [1, 12]
    plain = BenchmarkScorer(spec(depth_range=[1.0, 12.0], range_bounds="closed")).score(pred, s).metrics
    clipped = BenchmarkScorer(spec(depth_range=[1.0, 12.0], range_bounds="closed", clip_prediction=True)).score(pred, s)
    assert plain["abs_rel"] == pytest.approx(49.0 / 12)
    assert clipped.metrics["abs_rel"] == pytest.approx(11.0 / 12)
    pmask = np.zeros_like(GT, bool)
    pmask[0, 0] = True
    excl = BenchmarkScorer(spec(exclude_prompt_pixels=True)).score(pred, s, GT * pmask, pmask).metrics
    assert excl["n"] == 11 and excl["abs_rel"] == pytest.approx(0.0)


def test_image_without_scored_pixels_is_skipped_and_reported():
    sc = BenchmarkScorer(spec(depth_range=[100.0, 200.0]))
    out = sc.score(PRED, make_sample(GT, name="far"))
    assert out.metrics is None and sc.num_images == 0
    assert sc.summary()["skipped"] == [["far", "no scored pixel (crop/range/validity)"]]


# ---------------------------------------------------------------------------------------------- resampling
def test_resample_sample_uses_nearest_gt_and_resizes_intrinsics():
    gt = np.arange(1, 17, dtype=np.float32).reshape(4, 4)
    valid = np.ones((4, 4), bool)
    valid[0, 0] = False
    s = make_sample(gt, valid)
    r = resample_sample(s, (2, 2))
    # destination pixel i samples source floor((i + 0.5) * 2) = 1, 3
    np.testing.assert_array_equal(r.depth, [[6, 8], [14, 16]])
    assert r.valid.all()
    assert r.intrinsics.isclose(s.intrinsics.resized(2, 2))
    up = resize_depth(np.array([[1.0, 3.0]], np.float32), 4, 1, "nearest")
    np.testing.assert_array_equal(up, [[1, 1, 3, 3]])


# ---------------------------------------------------------------------------------------------- definitions
def test_every_shipped_benchmark_loads_and_required_ones_exist():
    names = set(list_benchmarks())
    required = {"nyuv2", "kitti_eigen", "kitti_completion_val", "eth3d", "diode", "ibims1", "sunrgbd", "nuscenes",
                "middlebury2014", "booster", "sintel", "synthetic_indoor", "synthetic_outdoor",
                "synthetic_unseen_cameras"}  # fmt: skip
    assert required <= names
    for n in names:
        assert load_benchmark(n).name == n
    kitti = load_benchmark("kitti_eigen")
    assert kitti.crop == "garg" and kitti.depth_range == (1e-3, 80.0) and kitti.range_bounds == "open"
    nyu = load_benchmark("nyuv2")
    assert nyu.crop == "nyu" and nyu.depth_range == (1e-3, 10.0)


def test_bad_definitions_raise_clear_errors():
    with pytest.raises(DatasetError, match="unknown key"):
        spec(crops="garg")
    with pytest.raises(DatasetError, match="crop must be one of"):
        spec(crop="kitti")
    with pytest.raises(DatasetError, match="alignment must be one of"):
        spec(alignment="scale")
    with pytest.raises(DatasetError, match="depth_range"):
        spec(depth_range=[5, 1])
    with pytest.raises(DatasetError, match="primary_metric"):
        spec(primary_metric="accuracy")


def test_missing_root_names_the_folder_and_layout(tmp_path, monkeypatch):
    monkeypatch.delenv("METRICANYTHING_NYU_ROOT", raising=False)
    monkeypatch.delenv("METRICANYTHING_DATA", raising=False)
    nyu = load_benchmark("nyuv2")
    with pytest.raises(DatasetError, match="--root PATH or \\$METRICANYTHING_NYU_ROOT"):
        resolve_root(nyu)
    missing = tmp_path / "nope"
    with pytest.raises(DatasetError) as info:
        resolve_root(nyu, missing)
    assert str(missing) in str(info.value) and "Expected layout" in str(info.value)
    monkeypatch.setenv("METRICANYTHING_NYU_ROOT", str(tmp_path))
    assert resolve_root(nyu) == tmp_path


def test_train_median_is_computed_from_the_training_split(tmp_path):
    from metricanything.data.folder import write_sample
    from metricanything.eval.benchmarks import TRAIN_MEDIAN_STRIDE, training_median

    root = tmp_path / "data"
    values = []
    for i, z in enumerate((1.0, 3.0, 8.0)):
        depth = np.full((4, 8), z, np.float32) + np.arange(32, dtype=np.float32).reshape(4, 8) * 0.01
        s = make_sample(depth, name=f"tr{i}")
        write_sample(root / "train", s)
        values.append(depth.ravel()[::TRAIN_MEDIAN_STRIDE])
    write_sample(root / "test", make_sample(np.full((4, 8), 100.0, np.float32), name="te0"))  # never used
    b = spec(dataset="folder", split="test", train_split="train")
    assert training_median(b, root) == pytest.approx(float(np.median(np.concatenate(values))), rel=1e-6)
    assert training_median(spec(train_median=4.5)) == 4.5
    with pytest.raises(DatasetError, match="baseline:train_median=VALUE"):
        training_median(spec(dataset="folder"))
