"""Drive the report's review view in Debian's headless Chromium through Selenium and
chromedriver (``apt-get install chromium chromium-driver``; ``pip install selenium``): the
review tests (``tests/review_driver.py``) and ``bench/speed/bench_report.py``."""

from __future__ import annotations

import importlib.util
import shutil
import time
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
# headless, offline (no request may leave the page: every host name resolves to nothing)
HEADLESS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND",
]
FLAGS = [*HEADLESS, "--window-size=1280,1000"]  # the review view's driver


def chromedriver() -> str | None:
    return shutil.which("chromedriver") or next(
        (
            p
            for p in ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
            if Path(p).exists()
        ),
        None,
    )


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not CHROMIUM.exists():
        return "needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium chromium-driver)"
    if chromedriver() is None:
        return "needs chromedriver (apt-get install -y chromium-driver)"
    if importlib.util.find_spec("selenium") is None:
        return "needs selenium (pip install -e '.[test]')"
    return None


def open_browser(download_dir: Path):
    """A headless Chromium that saves downloads into ``download_dir`` and logs the console."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for f in FLAGS:
        opts.add_argument(f)
    opts.add_experimental_option(
        "prefs",
        {"download.default_directory": str(download_dir), "download.prompt_for_download": False},
    )
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(chromedriver()), options=opts)
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir)}
    )
    return driver


def wait_ready(driver, timeout: float = 60) -> None:
    """Until the review script has drawn its first list."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if driver.execute_script(
            "var l = document.getElementById('rv-list'); return l && l.dataset.ready"
        ):
            return
        time.sleep(0.05)
    raise AssertionError(
        "the review view never became ready: "
        + repr([e["message"] for e in driver.get_log("browser")])
    )


def wait_file(path: Path, timeout: float = 30) -> Path:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and path.stat().st_size > 0:
            return path
        time.sleep(0.1)
    raise AssertionError(f"{path} was never downloaded")
