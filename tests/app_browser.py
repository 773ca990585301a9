"""Helpers for the web app's browser tests: Debian's Chromium + chromedriver driven by Selenium.

Selenium is pointed at the system ``chromedriver`` explicitly, so Selenium Manager never runs (it would try to
download a browser). ``browser_unavailable()`` names what is missing so tests can skip with that reason.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium_binary() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def chromedriver_binary() -> str | None:
    return shutil.which("chromedriver") or ("/usr/bin/chromedriver" if os.path.isfile("/usr/bin/chromedriver") else None)


def browser_unavailable() -> str | None:
    """Why the browser tests cannot run here (None when they can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium; it is in the dev extra)"
    if chromium_binary() is None:
        return "no chromium binary (apt-get install chromium chromium-driver; .ci/run does this as root)"
    if chromedriver_binary() is None:
        return "no chromedriver binary (apt-get install chromium-driver; .ci/run does this as root)"
    return None


def make_driver(download_dir: Path, width: int = 1400, height: int = 1000):
    """A headless Chromium with software WebGL, downloads going to ``download_dir``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium_binary()
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI containers run as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--use-angle=swiftshader",  # software WebGL for the 3D view
        "--enable-unsafe-swiftshader",
        f"--window-size={width},{height}",
        "--force-device-scale-factor=1",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ):
        options.add_argument(arg)
    options.add_experimental_option(
        "prefs",
        {
            "download.default_directory": str(download_dir),
            "download.prompt_for_download": False,
            "safebrowsing.enabled": False,
        },
    )
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver_binary()), options=options)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir)})
    return driver


def wait_for_file(folder: Path, name: str, timeout: float = 20.0) -> Path:
    """Wait for a completed download ``folder/name`` (Chromium writes ``.crdownload`` first)."""
    deadline = time.monotonic() + timeout
    path = folder / name
    while time.monotonic() < deadline:
        if path.is_file() and not (folder / f"{name}.crdownload").exists():
            return path
        time.sleep(0.05)
    raise TimeoutError(f"{path} was not downloaded within {timeout} s (folder holds {sorted(os.listdir(folder))})")
