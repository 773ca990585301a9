"""The web app in a real browser (headless Chromium + Selenium): what the page shows against the API.

The app runs on a free 127.0.0.1 port. The test image is a 160 x 120 render whose depth is known; the bundled
TEACHER gets a dense prompt made from the render's ground truth, so the expected depth is what
``metricanything.api.infer`` returns for the same image, intrinsics and prompt. Screenshots go to the test's
temporary folder. Skips (with the reason) only where Chromium, chromedriver or Selenium is missing.
"""

from __future__ import annotations

import base64
import io
import json
import re
import urllib.request

import numpy as np
import pytest

from app_browser import browser_unavailable, make_driver, wait_for_file

for _mod in ("fastapi", "uvicorn", "multipart"):
    pytest.importorskip(_mod, reason="the web app needs the [app] extra (fastapi, uvicorn, python-multipart)")
_why = browser_unavailable()
if _why:
    pytest.skip(f"browser tests need Chromium + chromedriver + Selenium: {_why}", allow_module_level=True)

from PIL import Image  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from metricanything.app.engine import Limits  # noqa: E402
from metricanything.app.server import AppSettings, BackgroundServer, create_app  # noqa: E402

W, H = 160, 120
MAX_PIXELS = 330 * 250  # the 320 x 240 examples fit, the 400 x 300 "oversized" upload does not


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The render (PNG), its intrinsics JSON, a dense-ish GT prompt (CSV) and bad uploads, on disk."""
    from metricanything.data.render import render_sample
    from metricanything.depth_io import write_image

    d = tmp_path_factory.mktemp("uploads")
    sample = render_sample(11, "indoor", size=(W, H))
    write_image(d / "render.png", sample.image)
    write_image(d / "render_again.png", sample.image)
    (d / "cam.json").write_text(json.dumps(sample.intrinsics.to_dict()))
    v, u = np.mgrid[0:H:3, 0:W:3]
    u, v = u.ravel(), v.ravel()
    rows = [f"{a},{b},{sample.depth[b, a]:.4f}" for a, b in zip(u, v, strict=True) if sample.valid[b, a]]
    (d / "gt_prompt.csv").write_text("u,v,z\n" + "\n".join(rows) + "\n")
    (d / "notes.png").write_text("this is a text file with a .png name\n")
    write_image(d / "big.png", np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8))
    return {"dir": d, "sample": sample, "prompt_points": len(rows)}


@pytest.fixture(scope="module")
def expected(files):
    """What the Python API returns for the same image, intrinsics and prompt (the bundled teacher)."""
    from metricanything.api import infer, load_model
    from metricanything.models.bundled import bundled_model_dir
    from metricanything.prompts.prompt import read_prompt_file

    s = files["sample"]
    teacher = load_model(bundled_model_dir("teacher"))
    return infer(teacher, s.image, intrinsics=s.intrinsics, prompt=read_prompt_file(files["dir"] / "gt_prompt.csv", W, H))


@pytest.fixture(scope="module")
def server():
    with BackgroundServer(create_app(AppSettings(limits=Limits(max_pixels=MAX_PIXELS))), host="127.0.0.1", port=0) as srv:
        assert srv.url.startswith("http://127.0.0.1:")
        yield srv


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def driver(downloads):
    d = make_driver(downloads)
    d.set_page_load_timeout(30)
    yield d
    d.quit()


# ---------------------------------------------------------------------------------------------- helpers
def open_page(driver, server) -> None:
    driver.get(server.url)
    WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "content").get_attribute("data-state") == "idle")


def ready_id(driver) -> str | None:
    return driver.find_element(By.ID, "content").get_attribute("data-ready")


def wait_result(driver, previous: str | None, timeout: float = 90) -> str:
    def done(d):
        c = d.find_element(By.ID, "content")
        if c.get_attribute("data-state") == "error":
            raise AssertionError(f"the page shows an error: {d.find_element(By.ID, 'error').text}")
        rid = c.get_attribute("data-ready")
        return rid if rid and rid != previous and c.get_attribute("data-state") == "ready" else False

    return WebDriverWait(driver, timeout).until(done)


def wait_error(driver, timeout: float = 60) -> str:
    WebDriverWait(driver, timeout).until(lambda d: d.find_element(By.ID, "error").is_displayed())
    return driver.find_element(By.ID, "error").text


def api(server, path: str) -> dict:
    with urllib.request.urlopen(server.url + path, timeout=30) as r:
        return json.load(r)


def hover_pixel(driver, element_id: str, u: int, v: int) -> tuple[int, int, float | None]:
    """Move the mouse onto pixel (u, v) of the shown image; return the page's readout (u, v, metres)."""
    img = driver.find_element(By.ID, element_id)
    rect = driver.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.left, r.top, r.width, r.height];", img)
    left, top, width, height = rect
    # WebDriver offsets are integers from the element's in-view centre, floor((left + right) / 2)
    cx, cy = int(np.floor(left + width / 2)), int(np.floor(top + height / 2))
    dx = int(round(left + (u + 0.5) * width / W - cx))
    dy = int(round(top + (v + 0.5) * height / H - cy))
    ActionChains(driver).move_to_element_with_offset(img, dx, dy).perform()
    text = driver.find_element(By.ID, "readout").text
    m = re.fullmatch(r"u (\d+), v (\d+): (.+)", text.strip())
    assert m, f"unexpected readout {text!r}"
    z = re.fullmatch(r"([0-9.]+) m", m.group(3))
    return int(m.group(1)), int(m.group(2)), float(z.group(1)) if z else None


def canvas_pixels(driver) -> np.ndarray:
    url = driver.execute_script("return document.querySelector('#viewer canvas').toDataURL('image/png');")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


# ---------------------------------------------------------------------------------------------- tests
def test_depth_under_the_cursor_intrinsics_and_cloud_match_the_api(driver, server, files, expected, shots) -> None:
    d = files["dir"]
    s = files["sample"]
    open_page(driver, server)
    driver.find_element(By.ID, "intrinsics-input").send_keys(str(d / "cam.json"))
    driver.find_element(By.ID, "prompt-input").send_keys(str(d / "gt_prompt.csv"))
    driver.find_element(By.ID, "image-input").send_keys(str(d / "render.png"))  # choosing the image runs
    rid = wait_result(driver, None)
    meta = api(server, f"api/result/{rid}")
    assert meta["intrinsics_source"] == "sidecar" and meta["model"]["kind"] == "teacher"

    # what the page says about the camera and the prompt
    assert driver.find_element(By.ID, "intrinsics-source").text == "sidecar"
    focal = driver.find_element(By.ID, "intrinsics-text").text
    shown = dict(re.findall(r"(fx|fy|cx|cy) ([0-9.]+)", focal))
    for key in ("fx", "fy", "cx", "cy"):
        assert float(shown[key]) == pytest.approx(getattr(s.intrinsics, key), abs=0.051), (key, focal)
    assert "cam.json" in driver.find_element(By.ID, "intrinsics-origin").text
    assert f"{files['prompt_points']:,} points from gt_prompt.csv" in driver.find_element(By.ID, "model-text").text
    assert not driver.find_element(By.ID, "fallback").is_displayed()

    # the depth under the cursor, on the depth map and on the photo
    for element, (u, v) in (("depth", (12, 9)), ("depth", (80, 61)), ("depth", (147, 108)), ("rgb", (33, 90))):
        got_u, got_v, z = hover_pixel(driver, element, u, v)
        assert (got_u, got_v) == (u, v)
        at = api(server, f"api/result/{rid}/depth_at?u={u}&v={v}")["depth_m"]
        assert z == pytest.approx(at, rel=0.01)
        assert z == pytest.approx(float(expected.depth[v, u]), rel=0.01)
        assert z == pytest.approx(float(s.depth[v, u]), rel=0.25)  # and it is the scene's metric depth

    # the colour bar: metre labels matching the API's range, all inside the card (not clipped)
    labels = driver.find_elements(By.CSS_SELECTOR, "#colorbar .labels span")
    ticks = meta["colorbar"]["ticks"]
    assert [e.text for e in labels] == [t["label"] for t in ticks] and all(e.text.endswith(" m") for e in labels)
    assert float(labels[0].text[:-2]) == pytest.approx(meta["colorbar"]["lo"], rel=0.01)
    assert float(labels[-1].text[:-2]) == pytest.approx(meta["colorbar"]["hi"], rel=0.01)
    card = driver.execute_script("return document.getElementById('colorbar').closest('.card').getBoundingClientRect().toJSON();")
    ys = []
    for e in labels:
        r = driver.execute_script("return arguments[0].getBoundingClientRect().toJSON();", e)
        assert card["left"] <= r["left"] and r["right"] <= card["right"] and card["top"] <= r["top"] and r["bottom"] <= card["bottom"]
        ys.append(r["top"])
    assert ys == sorted(ys, reverse=True)  # near (small values) at the bottom

    # the 3D view drew the edge-filtered cloud
    info = driver.find_element(By.ID, "cloud-info")
    assert int(info.get_attribute("data-points")) == meta["cloud"]["points"] and "edge-filtered" in info.text
    pixels = canvas_pixels(driver)
    background = np.array([0x12, 0x15, 0x1C])
    drawn = np.abs(pixels.astype(int) - background).sum(axis=2) > 30
    assert drawn.mean() > 0.02, f"the point cloud covers only {drawn.mean():.1%} of the 3D view"
    driver.find_element(By.ID, "view-camera").click()
    assert not np.array_equal(canvas_pixels(driver), pixels)  # the view moved
    driver.save_screenshot(str(shots / "result.png"))


def test_downloaded_ply_and_depth_parse(driver, server, files, expected, downloads) -> None:
    from metricanything.pointcloud import depth_to_point_cloud, read_ply

    d = files["dir"]
    open_page(driver, server)
    driver.find_element(By.ID, "intrinsics-input").send_keys(str(d / "cam.json"))
    driver.find_element(By.ID, "prompt-input").send_keys(str(d / "gt_prompt.csv"))
    driver.find_element(By.ID, "image-input").send_keys(str(d / "render_again.png"))
    wait_result(driver, None)
    shown = int(driver.find_element(By.ID, "cloud-info").get_attribute("data-points"))
    driver.find_element(By.ID, "dl-cloud-ply").click()
    driver.find_element(By.ID, "dl-depth-npy").click()
    points, colours = read_ply(wait_for_file(downloads, "render_again_cloud.ply"))
    want, _ = depth_to_point_cloud(expected.depth, expected.valid, files["sample"].intrinsics, files["sample"].image)
    assert len(points) == shown == len(want) and colours is not None
    np.testing.assert_allclose(points, want, rtol=1e-4, atol=1e-5)
    depth = np.load(wait_for_file(downloads, "render_again_depth.npy"))
    np.testing.assert_allclose(depth, expected.depth, rtol=1e-5)


def test_bad_uploads_show_a_clear_message_and_the_app_keeps_serving(driver, server, files, shots) -> None:
    d = files["dir"]
    open_page(driver, server)
    Select(driver.find_element(By.ID, "model")).select_by_value("teacher")
    driver.find_element(By.ID, "image-input").send_keys(str(d / "notes.png"))
    message = wait_error(driver)
    assert "notes.png: not a recognised image file" in message
    driver.save_screenshot(str(shots / "bad_upload.png"))
    driver.find_element(By.ID, "image-input").send_keys(str(d / "big.png"))
    WebDriverWait(driver, 60).until(lambda drv: "big.png" in drv.find_element(By.ID, "error").text)
    assert "big.png: the image is 400x300 = 0.12 MP; this server accepts up to 0.08 MP" in driver.find_element(By.ID, "error").text
    # the next good upload works and clears the message; a typed focal is "given"
    driver.find_element(By.ID, "fx").send_keys("150")
    driver.find_element(By.ID, "image-input").send_keys(str(d / "render.png"))
    wait_result(driver, None)
    assert not driver.find_element(By.ID, "error").is_displayed()
    assert driver.find_element(By.ID, "intrinsics-source").text == "given"
    assert "fx 150 " in driver.find_element(By.ID, "intrinsics-text").text


def test_fallback_focal_is_warned_visibly(driver, server, files, shots) -> None:
    open_page(driver, server)
    Select(driver.find_element(By.ID, "model")).select_by_value("teacher")
    driver.find_element(By.ID, "image-input").send_keys(str(files["dir"] / "render.png"))
    wait_result(driver, None)
    banner = driver.find_element(By.ID, "fallback")
    assert banner.is_displayed() and "Focal length unknown: assumed fx = 160 px" in banner.text
    assert driver.find_element(By.ID, "intrinsics-source").text == "fallback"
    assert "fx = fy" in driver.find_element(By.ID, "warnings").text
    driver.save_screenshot(str(shots / "fallback.png"))
    # the run button re-runs with new settings: an FoV makes the focal "given" and the warning goes
    driver.find_element(By.ID, "fov").send_keys("60")
    previous = ready_id(driver)
    driver.find_element(By.ID, "run").click()
    wait_result(driver, previous)
    assert not driver.find_element(By.ID, "fallback").is_displayed()
    assert driver.find_element(By.ID, "intrinsics-source").text == "given"
    assert "hFoV 60°" in driver.find_element(By.ID, "intrinsics-text").text


def test_examples_are_one_click_away(driver, server) -> None:
    open_page(driver, server)
    buttons = driver.find_elements(By.CSS_SELECTOR, "#examples button")
    assert [b.get_attribute("data-example") for b in buttons] == [e["id"] for e in api(server, "api/config")["examples"]]
    loaded = driver.execute_script("return [...document.querySelectorAll('#examples img')].map(i => i.complete && i.naturalWidth);")
    assert all(w == 320 for w in loaded)
    street = next(b for b in buttons if b.get_attribute("data-example") == "street")
    street.click()
    wait_result(driver, None)
    assert "active" in street.get_attribute("class")
    assert driver.find_element(By.ID, "intrinsics-source").text == "sidecar"
    assert "400 points from street_prompt.csv" in driver.find_element(By.ID, "model-text").text
    assert driver.find_element(By.ID, "name-text").text == "street.png"


def test_dropping_a_file_on_the_page_runs_it(driver, server) -> None:
    open_page(driver, server)
    Select(driver.find_element(By.ID, "model")).select_by_value("teacher")
    driver.find_element(By.ID, "fx").send_keys("250")
    # Selenium cannot drag files from the desktop: dispatch the same drop event a browser makes
    driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        fetch('api/examples/room/image').then(r => r.blob()).then(blob => {
          const dt = new DataTransfer();
          dt.items.add(new File([blob], 'dropped.png', {type: 'image/png'}));
          document.getElementById('drop').dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
          done();
        });
        """
    )
    wait_result(driver, None)
    assert driver.find_element(By.ID, "name-text").text == "dropped.png"
    assert driver.find_element(By.ID, "intrinsics-source").text == "given"
    assert driver.find_element(By.ID, "image-name").text == "dropped.png"
