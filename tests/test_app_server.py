"""The web app's JSON API (no browser): FastAPI's TestClient against the real app and the bundled models."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the web app needs the [app] extra (fastapi, uvicorn, python-multipart)")
pytest.importorskip("multipart", reason="the web app needs python-multipart (the [app] extra)")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx (in the dev extra)")

from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from metricanything.app.engine import Limits  # noqa: E402
from metricanything.app.server import AppSettings, create_app  # noqa: E402
from metricanything.camera import Intrinsics, unproject  # noqa: E402
from metricanything.depth_io import FULL_FRAME_DIAGONAL_MM  # noqa: E402

W, H = 160, 120
MAX_PIXELS = 170 * 130  # the 160 x 120 render fits, a 200 x 150 image does not


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def csv_bytes(points: np.ndarray) -> bytes:
    rows = ["u,v,z"] + [f"{int(u)},{int(v)},{z:.4f}" for u, v, z in points]
    return ("\n".join(rows) + "\n").encode()


def prompt_from_gt(sample, stride: int = 3) -> np.ndarray:
    """(u, v, z) at every ``stride``-th valid pixel of the render (a dense-ish metric prompt)."""
    v, u = np.mgrid[0:H:stride, 0:W:stride]
    u, v = u.ravel(), v.ravel()
    keep = sample.valid[v, u]
    return np.stack([u[keep], v[keep], np.round(sample.depth[v[keep], u[keep]].astype(np.float64), 4)], axis=1)


@pytest.fixture(scope="module")
def scene():
    from metricanything.data.render import render_sample

    return render_sample(11, "indoor", size=(W, H))


@pytest.fixture(scope="module")
def teacher():
    from metricanything.api import load_model
    from metricanything.models.bundled import bundled_model_dir

    return load_model(bundled_model_dir("teacher"))


@pytest.fixture(scope="module")
def client():
    app = create_app(AppSettings(limits=Limits(max_pixels=MAX_PIXELS)))
    with TestClient(app) as c:
        yield c


def post(client, files=None, **data):
    return client.post("/api/infer", files=files or {}, data={k: str(v) for k, v in data.items()})


def sidecar(K: Intrinsics) -> tuple[str, bytes, str]:
    return ("cam.json", json.dumps(K.to_dict()).encode(), "application/json")


# ---------------------------------------------------------------------------------------------- page + config
def test_page_static_files_and_config(client) -> None:
    from metricanything.app import THREE_VERSION

    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert '"three": "./static/vendor/three/three.module.min.js"' in page.text and "static/app.js" in page.text
    for name in ("app.js", "app.css", "vendor/three/three.module.min.js", "vendor/three/three.core.min.js",
                 "vendor/three/OrbitControls.js"):  # fmt: skip
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and len(r.content) > 1000, name
    for name in ("/", "/static/app.js", "/static/app.css"):  # nothing from the internet: the app works offline
        assert "http://" not in client.get(name).text and "https://" not in client.get(name).text, name
    assert "from 'three'" in client.get("/static/vendor/three/OrbitControls.js").text
    licence = client.get("/static/vendor/three/LICENSE").text
    assert "The MIT License" in licence and "three.js authors" in licence
    core = client.get("/static/vendor/three/three.core.min.js").text
    assert f'="{THREE_VERSION.split(".")[1]}"' in core  # three's REVISION string matches the recorded version
    cfg = client.get("/api/config").json()
    assert cfg["limits"]["max_megapixels"] == pytest.approx(MAX_PIXELS / 1e6)
    examples = {e["id"]: e for e in cfg["examples"]}
    assert {"room", "corner", "street"} <= set(examples) and examples["street"]["prompt"] == "street_prompt.csv"
    thumb = client.get(f"/{examples['room']['url']}")
    assert thumb.status_code == 200 and thumb.content.startswith(b"\x89PNG")


# ---------------------------------------------------------------------------------------------- results
def test_upload_with_intrinsics_and_prompt_matches_the_python_api(client, scene, teacher, tmp_path) -> None:
    from metricanything.api import infer
    from metricanything.depth_io import read_depth
    from metricanything.pointcloud import depth_to_point_cloud, read_ply
    from metricanything.prompts.prompt import read_prompt_file

    pts = prompt_from_gt(scene)
    (tmp_path / "p.csv").write_bytes(csv_bytes(pts))
    expected = infer(teacher, scene.image, intrinsics=scene.intrinsics, prompt=read_prompt_file(tmp_path / "p.csv", W, H))
    r = post(client, files={"image": ("render.png", png_bytes(scene.image), "image/png"),
                            "intrinsics": sidecar(scene.intrinsics),
                            "prompt": ("gt.csv", csv_bytes(pts), "text/csv")})  # fmt: skip
    assert r.status_code == 200, r.text
    meta = r.json()
    assert meta["intrinsics_source"] == "sidecar" and "cam.json" in meta["intrinsics_origin"]
    assert meta["intrinsics"]["fx"] == pytest.approx(scene.intrinsics.fx) and meta["intrinsics"]["cy"] == pytest.approx(scene.intrinsics.cy)
    assert meta["model"]["kind"] == "teacher" and meta["model"]["label"] == "bundled teacher"
    assert meta["prompt"] == {"file": "gt.csv", "kind": "points", "points": len(pts)}
    assert (meta["width"], meta["height"]) == (W, H) and meta["warnings"] == []
    rid = meta["id"]

    depth = np.load(io.BytesIO(client.get(f"/api/result/{rid}/depth.npy").content))
    np.testing.assert_allclose(depth, expected.depth, rtol=1e-5)
    gt_err = np.abs(depth - scene.depth)[scene.valid] / scene.depth[scene.valid]
    assert np.median(gt_err) < 0.05  # the teacher follows a dense metric prompt
    for u, v in ((10, 10), (80, 60), (150, 100)):
        at = client.get(f"/api/result/{rid}/depth_at", params={"u": u, "v": v}).json()
        assert at["depth_m"] == pytest.approx(float(expected.depth[v, u]), rel=1e-5)
    f32 = np.frombuffer(client.get(f"/api/result/{rid}/depth.f32").content, dtype="<f4").reshape(H, W)
    np.testing.assert_array_equal(f32, depth)
    assert meta["depth"]["min_m"] == pytest.approx(float(depth.min())) and meta["depth"]["png_scale_m"] == 0.001

    (tmp_path / "d.png").write_bytes(client.get(f"/api/result/{rid}/depth.png").content)
    png, valid = read_depth(tmp_path / "d.png")
    assert valid.all() and np.abs(png - depth).max() <= 0.0005 + 1e-6

    points, _ = depth_to_point_cloud(expected.depth, expected.valid, scene.intrinsics, scene.image, drop_edges=True)
    ply = client.get(f"/api/result/{rid}/cloud.ply")
    assert ply.headers["content-disposition"] == 'attachment; filename="render_cloud.ply"'
    (tmp_path / "c.ply").write_bytes(ply.content)
    got, colours = read_ply(tmp_path / "c.ply")
    assert len(got) == len(points) == meta["cloud"]["points"] and 0 < len(points) < W * H  # edges dropped
    np.testing.assert_allclose(got, points, rtol=1e-5, atol=1e-6)
    import trimesh

    glb = trimesh.load(io.BytesIO(client.get(f"/api/result/{rid}/cloud.glb").content), file_type="glb")
    assert sum(len(g.vertices) for g in glb.geometry.values()) == len(points)
    preview = client.get(f"/api/result/{rid}/cloud_preview.bin").content
    n, step = np.frombuffer(preview[:8], dtype="<u4")
    assert (n, step) == (len(points), 1) and len(preview) == 8 + 15 * n
    np.testing.assert_array_equal(np.frombuffer(preview[8 : 8 + 12 * n], dtype="<f4").reshape(-1, 3), points)
    record = client.get(f"/api/result/{rid}/intrinsics.json").json()
    assert record["intrinsics_source"] == "sidecar" and record["fx"] == pytest.approx(scene.intrinsics.fx)
    vis = client.get(f"/api/result/{rid}/depth_vis.png")
    assert vis.status_code == 200 and vis.content.startswith(b"\x89PNG")
    colour = np.asarray(Image.open(io.BytesIO(client.get(f"/api/result/{rid}/color.png").content)))
    assert colour.shape == (H, W, 3)
    near, far = np.unravel_index(depth.argmin(), depth.shape), np.unravel_index(depth.argmax(), depth.shape)
    assert colour[near][0] > colour[near][2] and colour[far][2] > colour[far][0]  # near warm, far cold
    assert client.get(f"/api/result/{rid}").json()["id"] == rid


def test_colour_bar_labels_are_metres_in_range() -> None:
    from metricanything.app.engine import colour_bar

    for lo, hi in ((0.7, 9.3), (4.9, 63.4), (1.2, 1.5), (0.05, 0.3), (20.0, 900.0), (1.0, 1.011), (123.4, 4567.8)):
        bar = colour_bar(lo, hi)
        ticks = bar["ticks"]
        assert ticks[0]["pos"] == 0.0 and ticks[-1]["pos"] == 1.0 and len(ticks) >= 3
        assert all(t["label"].endswith(" m") for t in ticks) and len({t["label"] for t in ticks}) == len(ticks)
        pos = [t["pos"] for t in ticks]
        assert pos == sorted(pos) and min(np.diff(pos)) >= 0.07 - 1e-9  # no overlapping labels
        for t in ticks:
            assert lo <= t["value"] <= hi
            assert t["pos"] == pytest.approx(math.log(t["value"] / lo) / math.log(hi / lo))
        assert len(bar["stops"]) == 16


def test_focal_sources_given_fov_fallback_estimated_and_exif(client, scene) -> None:
    image = ("render.png", png_bytes(scene.image), "image/png")
    r = post(client, files={"image": image}, fx=150, model="teacher").json()
    assert r["intrinsics_source"] == "given" and r["intrinsics"]["fx"] == 150.0 and "entered on the page" in r["intrinsics_origin"]
    r = post(client, files={"image": image}, fov_x=60, model="teacher").json()
    assert r["intrinsics_source"] == "given"
    assert r["intrinsics"]["fx"] == pytest.approx(W / (2 * math.tan(math.radians(30))))
    r = post(client, files={"image": image}, model="teacher").json()
    assert r["intrinsics_source"] == "fallback" and r["intrinsics"]["fx"] == pytest.approx(W)
    assert any("fx = fy" in w for w in r["warnings"])  # the fallback always warns
    # a given focal overrides the sidecar, like `infer --fx`
    r = post(client, files={"image": image, "intrinsics": sidecar(scene.intrinsics)}, fx=99, model="teacher").json()
    assert r["intrinsics_source"] == "given" and r["intrinsics"]["fx"] == 99.0
    # EXIF 35 mm-equivalent focal of a JPEG
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 28
    buf = io.BytesIO()
    Image.fromarray(scene.image).save(buf, format="JPEG", quality=95, exif=exif)
    r = post(client, files={"image": ("photo.jpg", buf.getvalue(), "image/jpeg")}, model="teacher").json()
    assert r["intrinsics_source"] == "exif"
    assert r["intrinsics"]["fx"] == pytest.approx(28 * math.hypot(W, H) / FULL_FRAME_DIAGONAL_MM)
    # the bundled student estimates the focal with its field-of-view head
    r = post(client, files={"image": image}).json()
    assert r["model"]["kind"] == "student" and r["intrinsics_source"] == "estimated"
    assert r["intrinsics_origin"] == "the model's field-of-view head" and r["intrinsics"]["fx"] > 0


def test_examples_run_with_their_intrinsics_and_prompt(client) -> None:
    from metricanything.app.examples import list_examples

    street = next(e for e in list_examples() if e["id"] == "street")
    r = post(client, example="street")  # 320 x 240 is over this client's pixel limit
    assert r.status_code == 413 and "street.png: the image is 320x240" in r.json()["detail"]
    with TestClient(create_app()) as c:
        _check_examples(c, street)


def _check_examples(client, street: dict) -> None:
    r = post(client, example="street").json()
    assert r["intrinsics_source"] == "sidecar" and r["model"]["kind"] == "teacher"
    assert r["prompt"] == {"file": "street_prompt.csv", "kind": "points", "points": street["prompt_points"]}
    lo, hi = street["true_depth_range_m"]
    assert lo * 0.8 < r["depth"]["median_m"] < hi
    r = post(client, example="room", model="teacher").json()
    assert r["prompt"] is None and r["intrinsics_source"] == "sidecar" and r["name"] == "room.png"
    r = post(client, example="street", model="student").json()
    assert r["prompt"] is None and any("not used" in w for w in r["warnings"])


def test_lidar_and_low_resolution_map_prompts(client, scene, teacher, tmp_path) -> None:
    from metricanything.api import infer
    from metricanything.tasks.infer import read_lidar_prompt

    # a LiDAR sweep: GT points in a LiDAR frame rotated and shifted from the camera's
    v, u = np.mgrid[0:H:4, 0:W:4]
    cam = unproject(scene.depth, scene.intrinsics)[v.ravel(), u.ravel()]
    T_cam_lidar = np.eye(4)
    T_cam_lidar[:3, :3] = [[0, -1, 0], [0, 0, -1], [1, 0, 0]]  # LiDAR x forward, y left, z up
    T_cam_lidar[:3, 3] = [0.05, -0.1, 0.2]
    lidar = (cam - T_cam_lidar[:3, 3]) @ T_cam_lidar[:3, :3]  # inverse rigid transform
    records = np.concatenate([lidar, np.ones((len(lidar), 1))], axis=1).astype("<f4")
    calib = json.dumps({"T_cam_lidar": T_cam_lidar.tolist(), "point_dims": 4}).encode()
    files = {"image": ("render.png", png_bytes(scene.image), "image/png"),
             "intrinsics": sidecar(scene.intrinsics),
             "prompt": ("sweep.bin", records.tobytes(), "application/octet-stream"),
             "lidar_calib": ("calib.json", calib, "application/json")}  # fmt: skip
    r = post(client, files=files)
    assert r.status_code == 200, r.text
    meta = r.json()
    (tmp_path / "sweep.bin").write_bytes(records.tobytes())
    (tmp_path / "calib.json").write_bytes(calib)
    d, m = read_lidar_prompt(tmp_path / "sweep.bin", tmp_path / "calib.json", scene.intrinsics)
    assert meta["prompt"]["kind"] == "lidar" and meta["prompt"]["points"] == int(m.sum()) > 1000
    expected = infer(teacher, scene.image, intrinsics=scene.intrinsics, prompt=(d, m))
    got = np.load(io.BytesIO(client.get(f"/api/result/{meta['id']}/depth.npy").content))
    np.testing.assert_allclose(got, expected.depth, rtol=1e-5)
    # the LiDAR prompt needs intrinsics to project the points
    no_k = {k: v for k, v in files.items() if k != "intrinsics"}
    r = post(client, files=no_k)
    assert r.status_code == 400 and "needs the intrinsics" in r.json()["detail"] and "sweep.bin" in r.json()["detail"]
    # a 16-bit millimetre PNG at a quarter of the resolution: super-resolution input
    low = np.round(scene.depth[2::4, 2::4] * 1000).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(low).save(buf, format="PNG")
    r = post(client, files={"image": ("render.png", png_bytes(scene.image), "image/png"),
                            "prompt": ("lowres.png", buf.getvalue(), "image/png")}, fx=scene.intrinsics.fx)  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["prompt"] == {"file": "lowres.png", "kind": "map", "points": low.size}


# ---------------------------------------------------------------------------------------------- errors
def test_bad_requests_get_clear_4xx_and_the_app_keeps_serving(client, scene) -> None:
    good = ("render.png", png_bytes(scene.image), "image/png")
    cases = [
        (400, "notes.png: not a recognised image", {"image": ("notes.png", b"just some text\n", "image/png")}, {}),
        (400, "empty.png: the image file is empty", {"image": ("empty.png", b"", "image/png")}, {}),
        (415, "anim.gif: unsupported image type '.gif'", {"image": ("anim.gif", b"GIF89a", "image/gif")}, {}),
        (413, "big.png: the image is 200x150 = 0.03 MP; this server accepts up to 0.02 MP",
         {"image": ("big.png", png_bytes(np.zeros((150, 200, 3), np.uint8)), "image/png")}, {}),
        (400, "fx must be a number (pixels), got 'abc'", {"image": good}, {"fx": "abc"}),
        (400, "FoV must be between 0 and 180 degrees", {"image": good}, {"fov_x": "200"}),
        (400, "give either fx or the FoV, not both", {"image": good}, {"fx": 100, "fov_x": 60}),
        (400, "send exactly one of an image file or an example id", {}, {}),
        (400, "send exactly one of an image file or an example id", {"image": good}, {"example": "room"}),
        (404, "no example 'nope'", {}, {"example": "nope"}),
        (400, "model must be one of", {"image": good}, {"model": "giant"}),
        (400, "model path not found on the server: /no/such/checkpoint", {"image": good},
         {"model": "custom", "model_path": "/no/such/checkpoint"}),
        (400, "bad.csv: line 3: cannot read numbers", {"image": good, "prompt": ("bad.csv", b"u,v,z\n1,2,3\nx,y,z\n", "text/csv")}, {}),
        (400, "far.csv: ", {"image": good, "prompt": ("far.csv", b"u,v,z\n500,2,3\n", "text/csv")}, {}),
        (400, "prompt-free student", {"image": good, "prompt": ("p.csv", b"u,v,z\n5,5,2\n", "text/csv")}, {"model": "student"}),
        (400, "scan.bin: a LiDAR .bin prompt needs its calibration JSON", {"image": good, "prompt": ("scan.bin", b"\0" * 32, "x")}, {}),
        (415, "p.txt: unsupported prompt type '.txt'", {"image": good, "prompt": ("p.txt", b"1", "text/plain")}, {}),
        (400, "cam.json: not valid JSON", {"image": good, "intrinsics": ("cam.json", b"{fx: 1", "application/json")}, {}),
        (400, "cam.json: intrinsics JSON has no 'fx'", {"image": good, "intrinsics": ("cam.json", b"{}", "application/json")}, {}),
    ]  # fmt: skip
    for status, message, files, data in cases:
        r = post(client, files=files, **data)
        assert r.status_code == status, (message, r.status_code, r.text)
        detail = r.json()["detail"]
        assert message in detail, (message, detail)
        assert "metricanything-app-" not in detail  # our temporary paths never leak into messages
    assert client.get("/api/result/0123456789abcdef/depth.npy").status_code == 404
    r = post(client, files={"image": good}, fx=120, model="teacher")  # the app still works
    assert r.status_code == 200
    rid = r.json()["id"]
    assert client.get(f"/api/result/{rid}/depth_at", params={"u": W, "v": 0}).status_code == 400
    assert client.get(f"/api/result/{rid}/depth_at", params={"u": "a", "v": 0}).status_code == 400
    assert client.get(f"/api/result/{rid}/secrets.txt").status_code == 404


def test_request_and_file_size_limits() -> None:
    app = create_app(AppSettings(limits=Limits(max_image_bytes=2000, max_file_bytes=1000)))
    with TestClient(app) as c:
        big = png_bytes(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8))
        assert 2000 < len(big) < app.state.engine.limits.max_request_bytes
        r = post(c, files={"image": ("noise.png", big, "image/png")})
        assert r.status_code == 413 and "noise.png: the image is" in r.json()["detail"] and "up to 2.0 KB" in r.json()["detail"]
        huge = b"\0" * (app.state.engine.limits.max_request_bytes + 10)
        r = post(c, files={"image": ("huge.png", huge, "image/png")})
        assert r.status_code == 413 and "per request" in r.json()["detail"]


def test_store_is_bounded_and_cleaned_up(scene, tmp_path) -> None:
    app = create_app(AppSettings(store_size=2))
    store = app.state.engine.store
    with TestClient(app) as c:
        ids = [post(c, files={"image": ("r.png", png_bytes(scene.image), "image/png")}, fx=100, model="teacher").json()["id"]
               for _ in range(3)]  # fmt: skip
        assert len(store) == 2 and len(set(ids)) == 3
        r = c.get(f"/api/result/{ids[0]}/depth.npy")
        assert r.status_code == 404 and "keeps the last 2 results" in r.json()["detail"]
        assert not (store.root / ids[0]).exists() and (store.root / ids[2] / "depth.npy").is_file()
        assert c.get(f"/api/result/{ids[2]}/depth.npy").status_code == 200
        failed = post(c, files={"image": ("x.png", b"nope", "image/png")})
        assert failed.status_code == 400 and len(list(store.root.iterdir())) == 2  # a failed request leaves nothing
    assert not store.root.exists()  # shutdown removes every result


def test_custom_model_paths(scene, tmp_path) -> None:
    import shutil

    from metricanything.models.bundled import bundled_model_dir

    run = tmp_path / "run"
    shutil.copytree(bundled_model_dir("teacher"), run / "model")  # a training run folder exports to model/
    image = ("r.png", png_bytes(scene.image), "image/png")
    with TestClient(create_app(AppSettings())) as c:
        r = post(c, files={"image": image}, fx=100, model="custom", model_path=str(run))
        assert r.status_code == 200, r.text
        assert r.json()["model"]["path"] == str(run / "model") and r.json()["model"]["kind"] == "teacher"
        (tmp_path / "junk").mkdir()
        r = post(c, files={"image": image}, fx=100, model="custom", model_path=str(tmp_path / "junk"))
        assert r.status_code == 400 and "cannot load the model" in r.json()["detail"]
    remote = AppSettings(allow_model_paths=False, model=str(run))
    with TestClient(create_app(remote)) as c:
        assert c.get("/api/config").json()["default_model"] == "custom"
        r = post(c, files={"image": image}, fx=100, model="custom", model_path=str(bundled_model_dir("student")))
        assert r.status_code == 403 and "--allow-model-paths" in r.json()["detail"]
        r = post(c, files={"image": image}, fx=100, model="custom")  # the path given on the command line is fine
        assert r.status_code == 200 and r.json()["model"]["path"] == str(run / "model")


def test_shipped_examples_are_what_the_generator_renders(tmp_path) -> None:
    from metricanything.app.examples import (
        EXAMPLES,
        examples_dir,
        list_examples,
        prompt_points_for,
        render_example,
    )
    from metricanything.depth_io import read_image, read_intrinsics_json

    entries = {e["id"]: e for e in list_examples()}
    assert set(entries) == {s.id for s in EXAMPLES}
    for spec in EXAMPLES:
        e = entries[spec.id]
        image = read_image(examples_dir() / e["image"])
        K = read_intrinsics_json(examples_dir() / e["intrinsics"])
        assert image.shape == (spec.size[1], spec.size[0], 3) and K.size == spec.size
        assert "Apache-2.0" in e["licence"]
    spec = next(s for s in EXAMPLES if s.prompt_points)
    sample = render_example(spec)  # deterministic per seed: the shipped files are this render
    # float rounding of the renderer differs between CPUs (SIMD width, libm): allow 1 LSB on <= 0.5 % of values
    shipped = read_image(examples_dir() / f"{spec.id}.png").astype(np.int16)
    diff = np.abs(shipped - sample.image.astype(np.int16))
    assert diff.max() <= 1 and (diff > 0).mean() <= 0.005, (diff.max(), (diff > 0).mean())
    assert read_intrinsics_json(examples_dir() / f"{spec.id}.json").isclose(sample.intrinsics, atol=1e-9)
    rows = np.loadtxt(examples_dir() / entries[spec.id]["prompt"], delimiter=",", skiprows=1)
    np.testing.assert_array_equal(rows, prompt_points_for(sample, spec.prompt_points, spec.seed))
    u, v = rows[:, 0].astype(int), rows[:, 1].astype(int)
    assert sample.valid[v, u].all() and np.abs(rows[:, 2] - sample.depth[v, u]).max() <= 0.0005 + 1e-6
