"""One depth colouring for every picture: near = warm on a log scale, invalid black, the colour bar agrees."""

from __future__ import annotations

import numpy as np
import pytest

from metricanything.depth_io import read_image
from metricanything.vis import (
    DEPTH_LUT,
    MIN_VIS_SIZE,
    colorize_depth,
    colorize_error,
    colour_stops,
    depth_colorbar,
    depth_limits,
    depth_ticks,
    pyplot,
    save_depth_colorbar,
    save_depth_visualisation,
    spread_points,
)


def test_near_is_warm_far_is_cold_and_invalid_is_black():
    depth = np.array([[1.0, 100.0, 5.0, 0.0, np.nan]], np.float32)
    valid = np.array([[True, True, False, True, True]])
    rgb = colorize_depth(depth, valid, 1.0, 100.0)
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 5, 3)
    near, far = rgb[0, 0].astype(int), rgb[0, 1].astype(int)
    assert near[0] > near[2] + 60 and far[2] > far[0]  # the red end vs the blue end of TURBO
    assert np.array_equal(near, DEPTH_LUT[255]) and np.array_equal(far, DEPTH_LUT[0])
    assert not rgb[0, 2:].any()  # masked, zero and NaN depth are black


def test_scale_is_logarithmic_and_the_same_depth_gets_the_same_colour():
    lo, hi = 2.0, 50.0
    mid = np.sqrt(lo * hi)  # the geometric midpoint sits in the middle of the colour map
    rgb = colorize_depth(np.array([[mid, 7.0]]), np.ones((1, 2), bool), lo, hi)
    assert np.abs(rgb[0, 0].astype(int) - DEPTH_LUT[128].astype(int)).max() <= 8
    other = colorize_depth(np.full((3, 3), 7.0), np.ones((3, 3), bool), lo, hi)
    assert (other == rgb[0, 1]).all()
    # beyond the range the colour saturates at the ends
    ends = colorize_depth(np.array([[0.5, 500.0]]), np.ones((1, 2), bool), lo, hi)
    assert np.array_equal(ends[0, 0], DEPTH_LUT[255]) and np.array_equal(ends[0, 1], DEPTH_LUT[0])


def test_depth_limits_use_valid_positive_pixels_only():
    depth = np.concatenate([np.linspace(1.0, 10.0, 100), [0.0, np.inf, 1000.0]]).astype(np.float32)[None]
    valid = np.ones_like(depth, bool)
    valid[0, -1] = False
    lo, hi = depth_limits(depth, valid, (0, 100))
    assert (lo, hi) == (pytest.approx(1.0), pytest.approx(10.0))
    assert depth_limits(np.zeros((2, 2)), np.zeros((2, 2), bool)) == (1.0, 2.0)
    lo, hi = depth_limits(np.full((2, 2), 3.0), np.ones((2, 2), bool))
    assert hi == pytest.approx(3.03)


def test_error_colouring_is_black_at_zero_and_bright_at_the_cap():
    err = np.array([[0.0, 0.25, 0.5, 3.0, 0.4]])
    rgb = colorize_error(err, np.array([[True, True, True, True, False]]), 0.5).astype(int)
    assert rgb[0, 0].max() <= 4 and not rgb[0, 4].any()  # INFERNO starts at (0, 0, 4); unscored is pure black
    assert rgb[0, 1].sum() < rgb[0, 2].sum() == rgb[0, 3].sum()


def test_spread_points_gives_each_grown_pixel_its_nearest_point():
    depth = np.zeros((5, 9), np.float32)
    mask = np.zeros((5, 9), bool)
    depth[2, 2], mask[2, 2] = 3.0, True
    depth[2, 5], mask[2, 5] = 8.0, True
    grown, gmask = spread_points(depth, mask)
    assert gmask.sum() == 18 and gmask[1:4, 1:4].all() and gmask[1:4, 4:7].all()
    assert (grown[1:4, 1:4] == 3.0).all() and (grown[1:4, 4:7] == 8.0).all() and not grown[~gmask].any()
    empty, emask = spread_points(depth, np.zeros_like(mask))
    assert not emask.any() and not empty.any()


def test_colour_bar_shows_the_colours_of_the_image_and_labels_both_ends():
    lo, hi = 1.5, 40.0
    fig = pyplot().figure()
    bar = depth_colorbar(fig, fig.add_axes((0.1, 0.1, 0.1, 0.8)), lo, hi)
    for v in (1.5, 3.0, 7.7, 20.0, 40.0):
        from_bar = np.array(bar.cmap(bar.norm(v))[:3]) * 255
        from_image = colorize_depth(np.array([[v]]), np.ones((1, 1), bool), lo, hi)[0, 0]
        assert np.abs(from_bar - from_image).max() <= 3, v
    labels = [t.get_text() for t in bar.ax.get_yticklabels()]
    assert labels == ["1.5", "2", "5", "10", "20", "40"] and not bar.ax.yaxis.get_minorticklocs().size
    assert bar.ax.get_ylabel() == "depth (m), log scale"
    pyplot().close(fig)


@pytest.mark.parametrize("lo, hi", [(0.7, 9.3), (4.9, 63.4), (1.2, 1.5), (0.05, 0.3), (20.0, 900.0), (2.301, 2.3245),
                                    (1.0, 1.011), (123.4, 4567.8)])  # fmt: skip
def test_depth_ticks_label_both_ends_and_round_values_without_overlap(lo, hi):
    ticks = depth_ticks(lo, hi)
    values, labels, pos = (list(x) for x in zip(*ticks, strict=True))
    assert (values[0], pos[0], values[-1], pos[-1]) == (lo, 0.0, hi, 1.0) and len(ticks) >= 3
    assert len(set(labels)) == len(labels)  # end labels get the digits they need to differ
    assert float(labels[0]) == pytest.approx(lo, rel=0.01) and float(labels[-1]) == pytest.approx(hi, rel=0.01)
    assert pos == sorted(pos) and min(np.diff(pos)) >= 0.07 - 1e-9
    for v, t, p in ticks[1:-1]:
        assert float(t) == v and lo < v < hi and p == pytest.approx(np.log(v / lo) / np.log(hi / lo))
        assert float(f"{v:.{1 if hi / lo > 4 else 5}g}") == v  # round values (1-2-5 per decade over a wide range)
    # the positions are where colorize_depth puts these depths
    for v, _, p in ticks:
        rgb = colorize_depth(np.array([[v]]), np.ones((1, 1), bool), lo, hi)[0, 0]
        assert np.abs(rgb.astype(int) - DEPTH_LUT[round(255 * (1 - p))]).max() <= 12


def test_colour_stops_run_from_near_red_to_far_blue():
    stops = colour_stops(16)
    assert len(stops) == 16 and stops[0] == "#" + bytes(DEPTH_LUT[255]).hex() and stops[-1] == "#" + bytes(DEPTH_LUT[0]).hex()


def _margin_is_blank(img: np.ndarray, px: int = 4) -> bool:
    """Nothing drawn in the outer ``px`` pixels: no label runs off the picture."""
    border = np.concatenate([img[:px].reshape(-1, 3), img[-px:].reshape(-1, 3), img[:, :px].reshape(-1, 3),
                             img[:, -px:].reshape(-1, 3)])  # fmt: skip
    return bool((border >= 250).all())


@pytest.mark.parametrize("h, w", [(48, 64), (300, 90), (120, 1000)])
def test_depth_visualisation_png_shows_the_depth_pixel_for_pixel_with_an_unclipped_bar(tmp_path, h, w):
    depth = np.tile(np.geomspace(1.0, 20.0, w, dtype=np.float32), (h, 1))
    valid = np.ones_like(depth, bool)
    valid[:10, :10] = False
    path = save_depth_visualisation(tmp_path / "depth_vis.png", depth, valid)
    img = read_image(path)
    k = max(1, -(-MIN_VIS_SIZE // max(h, w)))
    assert img.shape[0] >= h * k + (30 if w > 2 * h else 0) and img.shape[1] >= w * k + (0 if w > 2 * h else 40)  # + the bar
    assert _margin_is_blank(img)
    # the depth block: find the black (invalid) corner, then compare with the colouring enlarged k times
    black = img.sum(axis=-1) == 0
    y0 = np.nonzero(black.any(axis=1))[0].min()
    x0 = np.nonzero(black[y0])[0].min()
    want = np.repeat(np.repeat(colorize_depth(depth, valid), k, 0), k, 1)
    got = img[y0:y0 + h * k, x0:x0 + w * k].astype(int)
    assert got.shape == want.shape and np.mean(np.abs(got - want) <= 8) > 0.97
    assert not list(tmp_path.glob("*.tmp*"))


def test_stand_alone_colour_bar_is_unclipped(tmp_path):
    img = read_image(save_depth_colorbar(tmp_path / "bar.png", 1.3, 17.0, width_px=500))
    assert 480 <= img.shape[1] <= 600 and _margin_is_blank(img)


def test_training_panel_has_a_metric_legend_strip():
    """The panel ends with a legend: the depth bar (near = the LUT's warm end on the left) under prediction | GT."""
    from metricanything.train.panels import make_panel
    from metricanything.vis import DEPTH_LUT, ERROR_LUT, legend_height

    h, w = 48, 64
    gt = np.linspace(1.0, 4.0, h * w, dtype=np.float32).reshape(h, w)
    panel = make_panel(np.zeros((h, w, 3), np.uint8), None, gt, gt, np.ones((h, w), bool))
    assert panel.shape == (h + legend_height(w), 5 * w, 3)
    strip = panel[h:]
    bar_row = strip[4]  # inside the bar (pad 3, bar >= 6 px)
    np.testing.assert_array_equal(bar_row[2 * w + 2], DEPTH_LUT[255])  # the bar's first pixel: the near end
    np.testing.assert_array_equal(bar_row[4 * w - 3], DEPTH_LUT[0])  # its last pixel: the far end
    np.testing.assert_array_equal(bar_row[4 * w + 2], ERROR_LUT[0])  # the error bar starts at 0
    assert (strip[-4:, 2 * w: 4 * w] < 128).any()  # tick labels drawn under the bar
