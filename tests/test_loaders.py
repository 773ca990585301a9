"""Every native-layout loader, on tiny files written here in exactly that dataset's format."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from metricanything.camera import Intrinsics
from metricanything.data.loaders import LOADERS, load_dataset
from metricanything.data.loaders.sunrgbd import decode_sunrgbd_depth
from metricanything.depth_io import write_pfm
from metricanything.errors import DatasetError, InputFileError

H, W = 6, 8


def rgb(h: int = H, w: int = W, seed: int = 0) -> np.ndarray:
    """A smooth image with a recognisable layout: R = column, G = row."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 20 + seed, yy * 30, np.full_like(xx, 90)], axis=-1)
    return img.astype(np.uint8)


def write_rgb(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, 100] if path.suffix.lower() in (".jpg", ".jpeg") else []
    assert cv2.imwrite(str(path), img[..., ::-1], params)


def write_png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), arr)


def ramp_depth(h: int = H, w: int = W, lo: float = 1.0, step: float = 0.25) -> np.ndarray:
    return (lo + step * np.arange(h * w).reshape(h, w)).astype(np.float64)


def only(it) -> list:
    return list(it)


# ---------------------------------------------------------------------------------------------- registry
def test_registry_and_errors(tmp_path: Path) -> None:
    assert {"kitti", "nyu", "eth3d", "diode", "ibims", "middlebury", "booster", "sunrgbd", "scannet", "nuscenes"} <= set(LOADERS)
    with pytest.raises(DatasetError, match="unknown dataset loader 'nope'"):
        load_dataset("nope", tmp_path)
    with pytest.raises(DatasetError, match="missing"):
        load_dataset("kitti", tmp_path / "missing")
    for name in LOADERS:
        with pytest.raises(DatasetError, match=str(tmp_path)):
            load_dataset(name, tmp_path)  # an empty folder is the wrong layout for all of them


# ---------------------------------------------------------------------------------------------- KITTI
def test_kitti_annotated_with_raw_calibration(tmp_path: Path) -> None:
    drive = "2011_09_26_drive_0001_sync"
    depth = ramp_depth(lo=2.0, step=0.5)
    depth[0, 0] = 0  # no LiDAR return
    write_png(tmp_path / "train" / drive / "proj_depth/groundtruth/image_02/0000000005.png", np.round(depth * 256).astype(np.uint16))
    write_rgb(tmp_path / "2011_09_26" / drive / "image_02/data/0000000005.png", rgb())
    (tmp_path / "2011_09_26/calib_cam_to_cam.txt").write_text(
        "calib_time: 09-Jan-2012 13:57:47\n"
        "P_rect_00: 7.0e+02 0 6.0e+02 0 0 7.0e+02 1.7e+02 0 0 0 1 0\n"
        "P_rect_02: 7.215377e+02 0.000000e+00 6.095593e+02 4.485728e+01 0.000000e+00 7.215377e+02 1.728540e+02 2.163791e-01 "
        "0.000000e+00 0.000000e+00 1.000000e+00 2.745884e-03\n"
    )
    (s,) = only(load_dataset("kitti", tmp_path))
    assert s.intrinsics == Intrinsics(721.5377, 721.5377, 609.5593, 172.854, W, H)
    assert not s.valid[0, 0] and s.valid.sum() == H * W - 1
    assert np.allclose(s.depth[s.valid], depth[s.valid], atol=1 / 512)
    assert s.depth[1, 0] == pytest.approx(2.0 + 0.5 * 8)
    assert np.array_equal(s.image, rgb()) and (s.sensor, s.source_kind, s.dataset) == ("lidar", "captured", "kitti")
    assert s.sample_id == f"{drive}_image_02_0000000005"
    with pytest.raises(DatasetError, match="raw frames"):
        load_dataset("kitti", tmp_path, raw_root=tmp_path / "elsewhere")


def test_kitti_val_selection_cropped(tmp_path: Path) -> None:
    sel = tmp_path / "depth_selection" / "val_selection_cropped"
    stem = "2011_09_26_drive_0002_sync_{}_0000000005_image_03"
    depth = ramp_depth()
    write_png(sel / "groundtruth_depth" / (stem.format("groundtruth_depth") + ".png"), np.round(depth * 256).astype(np.uint16))
    write_rgb(sel / "image" / (stem.format("image") + ".png"), rgb())
    (sel / "intrinsics").mkdir()
    (sel / "intrinsics" / (stem.format("image") + ".txt")).write_text("721.5377 0.0 609.5593 0.0 721.5377 172.854 0.0 0.0 1.0\n")
    (s,) = only(load_dataset("kitti", tmp_path))
    assert s.intrinsics.isclose(Intrinsics(721.5377, 721.5377, 609.5593, 172.854, W, H))
    assert np.array_equal(s.depth, depth.astype(np.float32)) and s.valid.all()
    assert s.camera_id.endswith("cam3")


# ---------------------------------------------------------------------------------------------- NYU
def _write_nyu(path: Path, images: np.ndarray, depths: np.ndarray) -> None:
    import h5py

    with h5py.File(path, "w") as f:  # MATLAB v7.3 = HDF5 with the axes reversed
        f["images"] = images.transpose(0, 3, 2, 1)  # (N, H, W, 3) -> (N, 3, W, H)
        f["depths"] = depths.transpose(0, 2, 1).astype(np.float32)
        raw = depths.copy()
        raw[:, :10, :] = 0
        f["rawDepths"] = raw.transpose(0, 2, 1).astype(np.float32)


def test_nyu_labelled_mat_axes_intrinsics_and_splits(tmp_path: Path) -> None:
    import scipy.io

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 480, 640, 3), dtype=np.uint8)
    depths = rng.uniform(0.7, 9.9, (3, 480, 640))
    _write_nyu(tmp_path / "nyu_depth_v2_labeled.mat", images, depths)
    got = only(load_dataset("nyu", tmp_path))
    assert len(got) == 3
    for i, s in enumerate(got):
        assert np.array_equal(s.image, images[i])  # rows are image rows, columns image columns
        assert np.allclose(s.depth, depths[i], rtol=1e-6) and s.valid.all()
        assert s.intrinsics == Intrinsics(518.8579, 519.4696, 325.5824, 253.7362, 640, 480)
        assert s.sensor == "structured_light" and s.sample_id == f"nyu_{i:04d}"
    ds = load_dataset("nyu", tmp_path)  # an index: random access, and picklable for DataLoader workers
    assert len(ds) == 3 and ds[2].sample_id == "nyu_0002" and ds.where(1).endswith("nyu_depth_v2_labeled.mat[1]")
    assert np.array_equal(pickle.loads(pickle.dumps(ds))[1].image, images[1])
    raw = next(iter(load_dataset("nyu", tmp_path / "nyu_depth_v2_labeled.mat", raw=True)))
    assert not raw.valid[:10].any() and raw.valid[10:].all()
    scipy.io.savemat(tmp_path / "splits.mat", {"trainNdxs": np.array([[1], [3]]), "testNdxs": np.array([[2]])})
    assert [s.meta["index"] for s in load_dataset("nyu", tmp_path, split="train")] == [0, 2]
    assert [s.meta["index"] for s in load_dataset("nyu", tmp_path, split="test")] == [1]


def test_nyu_wrong_size_needs_intrinsics(tmp_path: Path) -> None:
    _write_nyu(tmp_path / "nyu_depth_v2_labeled.mat", np.zeros((1, 6, 8, 3), np.uint8), np.ones((1, 6, 8)))
    with pytest.raises(InputFileError, match="8x6"):
        load_dataset("nyu", tmp_path)
    K = Intrinsics(5, 5, 3.5, 2.5, 8, 6)
    (s,) = only(load_dataset("nyu", tmp_path, intrinsics=K))
    assert s.intrinsics == K and s.depth.shape == (6, 8)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "nyu_depth_v2_labeled.mat").write_bytes(b"MATLAB 5.0 MAT-file, not hdf5")
    with pytest.raises(InputFileError, match="HDF5"):
        load_dataset("nyu", tmp_path / "bad")


# ---------------------------------------------------------------------------------------------- ETH3D
def test_eth3d_raw_depth_colmap_cameras_and_poses(tmp_path: Path) -> None:
    scene = tmp_path / "courtyard"
    calib = scene / "dslr_calibration_undistorted"
    calib.mkdir(parents=True)
    (calib / "cameras.txt").write_text(
        "# Camera list with one line of data per camera:\n#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n"
        f"1 PINHOLE {W} {H} 10 11 4.5 3.5\n2 PINHOLE {2 * W} {2 * H} 20 22 8.5 6.5\n"
    )
    c, s_ = math.cos(math.pi / 4), math.sin(math.pi / 4)
    (calib / "images.txt").write_text(
        "# Image list with two lines of data per image:\n"
        "1 1 0 0 0 0.5 0 0 1 dslr_images_undistorted/DSC_0001.JPG\n\n"
        f"2 {c} 0 0 {s_} 0 0 2 2 dslr_images_undistorted/DSC_0002.JPG\n1.0 2.0 -1\n"
    )
    depth = ramp_depth()
    depth[2, 3] = np.inf
    depth[0, 0] = 0
    for name in ("DSC_0001.JPG", "DSC_0002.JPG"):
        write_rgb(scene / "images/dslr_images_undistorted" / name, rgb())
        out = scene / "ground_truth_depth/dslr_images" / name
        out.parent.mkdir(parents=True, exist_ok=True)
        depth.astype("<f4").tofile(out)
    a, b = only(load_dataset("eth3d", tmp_path))
    assert a.intrinsics == Intrinsics(10, 11, 4.0, 3.0, W, H)  # COLMAP's +0.5 pixel centres removed
    assert not a.valid[2, 3] and not a.valid[0, 0] and a.valid.sum() == H * W - 2
    assert np.array_equal(a.depth[a.valid], depth[a.valid].astype(np.float32))
    assert np.allclose(a.pose, [[1, 0, 0, -0.5], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    # camera 2 is 16x12 but image and depth are 8x6: intrinsics rescaled to the depth's resolution
    assert b.intrinsics.isclose(Intrinsics(20, 22, 8.0, 6.0, 2 * W, 2 * H).resized(W, H))
    # world-to-camera = Rz(90) with t = (0, 0, 2): camera centre = -R^T t
    assert np.allclose(b.pose[:3, 3], [0, 0, -2]) and np.allclose(b.pose[:3, :3], [[0, 1, 0], [-1, 0, 0], [0, 0, 1]])
    assert a.scene_id == "courtyard" and a.sample_id == "courtyard_DSC_0001"
    (scene / "ground_truth_depth/dslr_images/DSC_0001.JPG").write_bytes(b"\0" * 12)
    with pytest.raises(InputFileError, match="DSC_0001.JPG: 12 bytes"):
        only(load_dataset("eth3d", tmp_path))


# ---------------------------------------------------------------------------------------------- DIODE
def test_diode_npy_depth_mask_and_intrinsics(tmp_path: Path) -> None:
    scan = tmp_path / "val/outdoor/scene_00022/scan_00193"
    stem = "00022_00193_outdoor_000_000"
    write_rgb(scan / f"{stem}.png", rgb())
    depth = ramp_depth(lo=5.0)
    np.save(scan / f"{stem}_depth.npy", depth[..., None].astype(np.float32))
    mask = np.ones((H, W), np.float32)
    mask[1, :] = 0
    np.save(scan / f"{stem}_depth_mask.npy", mask)
    (s,) = only(load_dataset("diode", tmp_path, split="val"))
    assert s.intrinsics.isclose(Intrinsics(886.81, 886.81, 512, 384, 1024, 768).resized(W, H))
    assert not s.valid[1].any() and s.valid.sum() == H * W - W
    assert np.array_equal(s.depth[s.valid], depth[s.valid].astype(np.float32))
    assert s.meta["environment"] == "outdoor" and s.sample_id == stem
    with pytest.raises(DatasetError, match="train"):
        load_dataset("diode", tmp_path, split="train")


# ---------------------------------------------------------------------------------------------- iBims-1
def test_ibims_raw_png_layout(tmp_path: Path) -> None:
    (tmp_path / "imagelist.txt").write_text("corridor_01\n")
    write_rgb(tmp_path / "rgb/corridor_01.png", rgb())
    values = (np.arange(H * W).reshape(H, W) * 1000 + 500).astype(np.uint16)
    values[0, 0] = 0
    write_png(tmp_path / "depth/corridor_01.png", values)
    invalid = np.full((H, W), 255, np.uint8)
    invalid[5, :] = 0
    transp = np.full((H, W), 255, np.uint8)
    transp[:, 7] = 0
    write_png(tmp_path / "mask_invalid/corridor_01.png", invalid)
    write_png(tmp_path / "mask_transp/corridor_01.png", transp)
    (tmp_path / "calib").mkdir()
    (tmp_path / "calib/corridor_01.txt").write_text("559.62,558.14,361.87,241.97\n")
    (s,) = only(load_dataset("ibims", tmp_path))
    assert s.intrinsics == Intrinsics(559.62, 558.14, 361.87, 241.97, W, H)
    assert s.depth[2, 3] == pytest.approx(((2 * W + 3) * 1000 + 500) * 50 / 65535, rel=1e-6)
    assert not s.valid[0, 0] and not s.valid[5].any() and not s.valid[:, 7].any()
    assert s.valid.sum() == (H - 1) * (W - 1) - 1
    (t,) = only(load_dataset("ibims", tmp_path, keep_transparent=True))
    assert t.valid[:5, 7].all()


def test_ibims_mat_layout(tmp_path: Path) -> None:
    import scipy.io

    depth = ramp_depth().astype(np.float32)
    depth[0, 1] = 0
    invalid = np.ones((H, W), np.uint8)
    invalid[3, 3] = 0
    data = {"rgb": rgb(), "depth": depth, "mask_invalid": invalid, "mask_transp": np.ones((H, W), np.uint8),
            "calib": np.array([[500.0, 0, 4.0], [0, 501.0, 3.0], [0, 0, 1]]), "edges": np.zeros((H, W), np.uint8)}
    scipy.io.savemat(tmp_path / "office_02.mat", {"data": data})
    (s,) = only(load_dataset("ibims1", tmp_path))
    assert s.intrinsics == Intrinsics(500, 501, 4, 3, W, H) and s.sample_id == "office_02"
    assert np.array_equal(s.image, rgb()) and not s.valid[0, 1] and not s.valid[3, 3] and s.valid.sum() == H * W - 2
    assert np.array_equal(s.depth[s.valid], depth[s.valid])


# ---------------------------------------------------------------------------------------------- Middlebury
def _middlebury_calib(width: int, height: int) -> str:
    return (
        "cam0=[3997.684 0 1176.728; 0 3997.684 1011.728; 0 0 1]\n"
        "cam1=[3997.684 0 1307.839; 0 3997.684 1011.728; 0 0 1]\n"
        f"doffs=131.111\nbaseline=193.001\nwidth={width}\nheight={height}\nndisp=280\nisint=0\nvmin=31\nvmax=257\n"
    )


def test_middlebury_pfm_disparity_to_metric_depth(tmp_path: Path) -> None:
    scene = tmp_path / "Adirondack-perfect"
    scene.mkdir()
    disp = (40.0 + np.arange(H * W).reshape(H, W)).astype(np.float32)
    disp[1, 2] = np.inf
    write_pfm(scene / "disp0.pfm", disp)
    write_rgb(scene / "im0.png", rgb())
    (scene / "calib.txt").write_text(_middlebury_calib(W, H))
    (s,) = only(load_dataset("middlebury", tmp_path))
    expected = 193.001 * 3997.684 / (disp.astype(np.float64) + 131.111) / 1000
    assert not s.valid[1, 2] and s.valid.sum() == H * W - 1
    assert np.allclose(s.depth[s.valid], expected[s.valid], rtol=1e-6)
    assert s.depth[0, 0] == pytest.approx(193.001 * 3997.684 / (40 + 131.111) / 1000, rel=1e-6)
    assert s.intrinsics == Intrinsics(3997.684, 3997.684, 1176.728, 1011.728, W, H)
    # a half-resolution copy (calib.txt still full size): same metric depth
    half = tmp_path / "half" / "Adirondack-perfect"
    half.mkdir(parents=True)
    write_pfm(half / "disp0.pfm", disp / 2)
    write_rgb(half / "im0.png", rgb())
    (half / "calib.txt").write_text(_middlebury_calib(2 * W, 2 * H))
    (h,) = only(load_dataset("middlebury", tmp_path / "half"))
    assert np.allclose(h.depth[h.valid], expected[s.valid], rtol=1e-6)
    assert h.intrinsics.isclose(Intrinsics(3997.684, 3997.684, 1176.728, 1011.728, 2 * W, 2 * H).resized(W, H))
    with pytest.raises(DatasetError, match="no Middlebury samples"):
        load_dataset("middlebury", tmp_path, split="imperfect")


# ---------------------------------------------------------------------------------------------- Booster
def test_booster_disparity_xml_calibration_and_mask(tmp_path: Path) -> None:
    scene = tmp_path / "train/balanced/Bottle"
    for i in range(2):
        write_rgb(scene / f"camera_00/im{i}.png", rgb(seed=i))
    disp = (100.0 + 10 * np.arange(H * W).reshape(H, W)).astype(np.float32)
    disp[0, 0] = 0
    np.save(scene / "disp_00.npy", disp)
    mask = np.full((H, W), 255, np.uint8)
    mask[4, 4] = 0
    write_png(scene / "mask_00.png", mask)
    # intrinsics come from mtxL (as the authors' released evaluation reads them), not from proj_matL
    (scene / "calib_00-02.xml").write_text(
        '<?xml version="1.0"?>\n<opencv_storage>\n'
        '<mtxL type_id="opencv-matrix">\n  <rows>3</rows>\n  <cols>3</cols>\n  <dt>d</dt>\n'
        "  <data>\n    2.4e+03 0. 1.9e+03 0. 2.4e+03 1.5e+03 0. 0. 1.</data></mtxL>\n"
        '<proj_matL type_id="opencv-matrix">\n  <rows>3</rows>\n  <cols>4</cols>\n  <dt>d</dt>\n'
        "  <data>\n    2.3e+03 0. 1.8e+03 0. 0. 2.3e+03 1.4e+03 0. 0. 0. 1. 0.</data></proj_matL>\n"
        "<baselineLR>7.8e+01</baselineLR>\n</opencv_storage>\n"
    )
    a, b = only(load_dataset("booster", tmp_path, split="train"))
    assert a.intrinsics == Intrinsics(2400, 2400, 1900, 1500, W, H)
    expected = 2400 * 78.0 / (disp.astype(np.float64) + 1e-6) / 1000
    assert not a.valid[0, 0] and not a.valid[4, 4] and a.valid.sum() == H * W - 2
    assert np.allclose(a.depth[a.valid], expected[a.valid], rtol=1e-6)
    assert a.depth[0, 1] == pytest.approx(2400 * 78 / 110 / 1000, rel=1e-5)
    assert np.array_equal(a.depth, b.depth) and not np.array_equal(a.image, b.image)
    assert (a.sensor, a.sample_id) == ("stereo", "Bottle_im0")


# ---------------------------------------------------------------------------------------------- SUN RGB-D
@given(st.integers(0, 65535))
def test_sunrgbd_bit_rotation_inverts_the_stored_value(mm: int) -> None:
    stored = np.array([[((mm << 3) | (mm >> 13)) & 0xFFFF]], dtype=np.uint16)
    assert decode_sunrgbd_depth(stored)[0, 0] == np.float32(mm / 1000.0)


def test_sunrgbd_frame_folder(tmp_path: Path) -> None:
    frame = tmp_path / "SUNRGBD/kv2/kinect2data/000002_2014-05-26_rgbf000103-resize"
    write_rgb(frame / "image/0000103.jpg", rgb())
    mm = (800 + 37 * np.arange(H * W).reshape(H, W)).astype(np.uint32)
    mm[0, 0] = 0
    write_png(frame / "depth/0000103.png", (((mm << 3) | (mm >> 13)) & 0xFFFF).astype(np.uint16))
    (frame / "intrinsics.txt").write_text("529.5 0 365\n0 529.5 265\n0 0 1\n")
    (s,) = only(load_dataset("sunrgbd", tmp_path))
    assert s.intrinsics == Intrinsics(529.5, 529.5, 365, 265, W, H)
    assert not s.valid[0, 0] and np.allclose(s.depth[s.valid], mm[s.valid] / 1000.0)
    assert s.sensor == "tof" and s.meta["device"] == "kv2"
    (c,) = only(load_dataset("sunrgbd", tmp_path, max_depth=1.0))
    assert c.valid.sum() == ((mm > 0) & (mm <= 1000)).sum()


# ---------------------------------------------------------------------------------------------- ScanNet
def test_scannet_style_mm_depth_intrinsic_depth_and_pose(tmp_path: Path) -> None:
    scene = tmp_path / "scene0000_00"
    for i in range(2):
        write_rgb(scene / f"color/{i}.jpg", np.repeat(np.repeat(rgb(), 2, 0), 2, 1))  # colour at twice the size
        mm = (500 + 100 * np.arange(H * W).reshape(H, W) + i).astype(np.uint16)
        mm[2, 2] = 0
        write_png(scene / f"depth/{i}.png", mm)
    (scene / "intrinsic").mkdir()
    (scene / "intrinsic/intrinsic_depth.txt").write_text("577.59 0 318.9 0\n0 578.73 242.68 0\n0 0 1 0\n0 0 0 1\n")
    (scene / "pose").mkdir()
    (scene / "pose/0.txt").write_text("1 0 0 1.5\n0 1 0 2\n0 0 1 0.5\n0 0 0 1\n")
    (scene / "pose/1.txt").write_text("-inf -inf -inf -inf\n" * 4)
    a, b = only(load_dataset("scannet", tmp_path))
    assert a.intrinsics == Intrinsics(577.59, 578.73, 318.9, 242.68, W, H) and a.image.shape == (H, W, 3)
    assert np.abs(a.image.astype(int) - rgb().astype(int)).max() <= 6  # area-resized JPEG colour
    assert a.depth[0, 1] == pytest.approx(0.6) and not a.valid[2, 2] and a.valid.sum() == H * W - 1
    assert np.allclose(a.pose[:3, 3], [1.5, 2, 0.5]) and b.pose is None
    assert a.sample_id == "scene0000_00_0" and a.meta["color_resized_to_depth"]
    (tmp_path / "scannetv2_val.txt").write_text("scene0000_00\n")
    assert len(only(load_dataset("scannet", tmp_path, split="val", frame_stride=2))) == 1
    with pytest.raises(DatasetError, match="train"):
        load_dataset("scannet", tmp_path, split="train")


# ---------------------------------------------------------------------------------------------- nuScenes
def _quat(R: np.ndarray) -> list[float]:
    w = math.sqrt(max(0.0, 1 + R[0, 0] + R[1, 1] + R[2, 2])) / 2
    return [w, (R[2, 1] - R[1, 2]) / (4 * w), (R[0, 2] - R[2, 0]) / (4 * w), (R[1, 0] - R[0, 1]) / (4 * w)]


def _T(R: np.ndarray, t) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    return T


def test_nuscenes_lidar_projection_through_ego_poses(tmp_path: Path) -> None:
    meta = tmp_path / "v1.0-mini"
    meta.mkdir()
    R_ego_cam = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], dtype=float)  # camera looks along ego +x
    Rz = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=float)  # the ego turned 90 degrees (global frame)
    cam_cs = {"token": "cs_cam", "sensor_token": "s_cam", "translation": [1.5, 0.0, 1.5], "rotation": _quat(R_ego_cam),
              "camera_intrinsic": [[16.0, 0, 3.5], [0, 16.0, 2.5], [0, 0, 1]]}
    lidar_cs = {"token": "cs_lidar", "sensor_token": "s_lidar", "translation": [0.0, 0.0, 2.0], "rotation": [1, 0, 0, 0],
                "camera_intrinsic": []}
    ep_l = {"token": "ep_l", "translation": [10.0, 5.0, 0.0], "rotation": _quat(Rz), "timestamp": 0}
    ep_c = {"token": "ep_c", "translation": [10.0, 5.5, 0.0], "rotation": _quat(Rz), "timestamp": 1}
    T_cam_lidar = (
        np.linalg.inv(_T(Rz, ep_c["translation"]) @ _T(R_ego_cam, cam_cs["translation"]))
        @ _T(Rz, ep_l["translation"]) @ _T(np.eye(3), lidar_cs["translation"])
    )
    cam_pts = np.array([[0, 0, 9.5], [0, 0, 19.5], [1.0, 0.5, 10.0], [0.1, 0.1, 0.6], [0, 0, -5.0], [50, 0, 1.0]])
    lidar_pts = (np.c_[cam_pts, np.ones(len(cam_pts))] @ np.linalg.inv(T_cam_lidar).T)[:, :3]
    rec = np.c_[lidar_pts, np.full(len(cam_pts), 7.0), np.arange(len(cam_pts))].astype("<f4")
    (tmp_path / "samples/LIDAR_TOP").mkdir(parents=True)
    rec.tofile(tmp_path / "samples/LIDAR_TOP/n008__LIDAR_TOP__1.pcd.bin")
    write_rgb(tmp_path / "samples/CAM_FRONT/n008__CAM_FRONT__1.jpg", rgb())
    tables = {
        "sensor": [{"token": "s_cam", "channel": "CAM_FRONT", "modality": "camera"},
                   {"token": "s_lidar", "channel": "LIDAR_TOP", "modality": "lidar"}],
        "calibrated_sensor": [cam_cs, lidar_cs],
        "ego_pose": [ep_l, ep_c],
        "sample": [{"token": "smp", "scene_token": "scene-1"}],
        "sample_data": [
            {"token": "sd_c", "sample_token": "smp", "ego_pose_token": "ep_c", "calibrated_sensor_token": "cs_cam",
             "filename": "samples/CAM_FRONT/n008__CAM_FRONT__1.jpg", "is_key_frame": True},
            {"token": "sd_l", "sample_token": "smp", "ego_pose_token": "ep_l", "calibrated_sensor_token": "cs_lidar",
             "filename": "samples/LIDAR_TOP/n008__LIDAR_TOP__1.pcd.bin", "is_key_frame": True},
            {"token": "sd_x", "sample_token": "smp", "ego_pose_token": "ep_c", "calibrated_sensor_token": "cs_cam",
             "filename": "sweeps/CAM_FRONT/missing.jpg", "is_key_frame": False},
        ],
    }
    for name, rows in tables.items():
        (meta / f"{name}.json").write_text(json.dumps(rows))
    (s,) = only(load_dataset("nuscenes", tmp_path))
    assert s.intrinsics == Intrinsics(16, 16, 3.5, 2.5, W, H)
    assert s.valid.sum() == 2  # centre (nearest of two wins) + one off-centre; near/behind/outside dropped
    cu, cv = int(np.floor(3.5 + 0.5)), int(np.floor(2.5 + 0.5))
    assert s.depth[cv, cu] == pytest.approx(9.5, abs=1e-4)
    u, v = int(np.floor(16 * 0.1 + 3.5 + 0.5)), int(np.floor(16 * 0.05 + 2.5 + 0.5))
    assert s.depth[v, u] == pytest.approx(10.0, abs=1e-4)
    assert s.scene_id == "scene-1" and s.meta["channel"] == "CAM_FRONT" and s.sensor == "lidar"
    assert np.allclose(s.pose, _T(Rz, ep_c["translation"]) @ _T(R_ego_cam, cam_cs["translation"]))
    with pytest.raises(DatasetError, match="v1.0-trainval"):
        load_dataset("nuscenes", tmp_path, split="v1.0-trainval")
    assert len(only(load_dataset("nuscenes", tmp_path, cameras=["CAM_FRONT"], min_depth=0.5))) == 1
    (s2,) = only(load_dataset("nuscenes", tmp_path, min_depth=0.5))
    assert s2.valid.sum() == 3
