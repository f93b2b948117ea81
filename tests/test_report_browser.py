"""Open the HTML report in a real browser: Debian's headless Chromium.

Checks that the page renders (a non-trivial screenshot at a laptop width), that the
main sections are in the rendered DOM, and that no request leaves the page: the
rendered DOM holds no external URL, and Chromium's own network log (NetLog) records
no request made on behalf of the page. A canary page with two external images proves
the network-log check can fail. CI installs Chromium with
``apt-get install -y chromium``; without it these tests skip.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_report import SECTIONS, external_references, parse  # noqa: I001

from bench.common.browser import CHROMIUM, HEADLESS
from bench.common.screen_folder import make_screen_dir
from curate.report import write_report

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)",
    ),
]
FLAGS = [*HEADLESS, "--hide-scrollbars"]


def chromium(tmp: Path, *args: str, timeout: int = 90) -> subprocess.CompletedProcess[str]:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    return subprocess.run(
        [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def page_requests(netlog: Path) -> list[str]:
    """URLs the page (a file:// document) asked the network for, from a Chromium NetLog.

    Chromium's own background requests (update checks, accounts) are keyed to no
    site or to google.com; requests made on behalf of the page carry the page's
    network isolation key, which starts with ``file://``.
    """
    text = netlog.read_text(encoding="utf-8").rstrip()
    if not text.endswith("}"):  # a log cut short at exit lacks its closing brackets
        text = text.rstrip(",") + "]}"
    log = json.loads(text)
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for ev in log["events"]:
        params = ev.get("params") or {}
        if ev["type"] == start_job and str(params.get("network_isolation_key", "")).startswith(
            "file:"
        ):
            url = str(params.get("url", ""))
            if not url.startswith(("file:", "data:")):
                urls.append(url)
    return urls


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    info = make_screen_dir(root, quadruplet=True, random_weights=True)
    return write_report(info["screen"])


def test_screenshot_reads_on_a_laptop_screen(report, tmp_path):
    shot = tmp_path / "report.png"
    res = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", report.as_uri())
    assert shot.exists(), res.stderr[-2000:]
    im = Image.open(shot).convert("RGB")
    assert im.size == (1280, 2000)
    px = np.asarray(im)
    assert len(np.unique(px.reshape(-1, 3), axis=0)) > 200  # text, figures and thumbnails
    assert tuple(px[10, 10]) == (0x22, 0x31, 0x3F)  # the inline CSS styled the header
    # the red random-weights banner is on the first screen
    red = (px[..., 0] > 200) & (px[..., 1] < 60) & (px[..., 2] < 60)
    assert red.sum() > 500


def test_rendered_dom_has_the_sections_and_no_request_leaves_the_page(report, tmp_path):
    netlog = tmp_path / "netlog.json"
    res = chromium(tmp_path, f"--log-net-log={netlog}", "--dump-dom", report.as_uri())
    dom = res.stdout
    assert "<html" in dom, res.stderr[-2000:]
    p = parse(dom)
    for title in SECTIONS:
        assert title in p.headings
    assert "The backbone ran with RANDOM weights" in dom
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    assert [a.get("type") for t, a in p.tags if t == "script"] == ["application/json"] * 2 + [None]
    # the review script ran (CSP allowed it by hash) and drew the label as text
    assert "reviewed" in dom and 'data-ready="1"' in dom
    cards = dom.split('id="rv-spacer"')[1]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in cards and "<script>alert" not in cards
    assert external_references(dom) == []
    assert netlog.exists()
    assert page_requests(netlog) == []


def test_network_check_catches_a_page_that_calls_out(tmp_path):
    canary = tmp_path / "canary.html"
    canary.write_text(
        "<!DOCTYPE html><html><body><h1>canary</h1>"
        '<img src="http://canary.invalid/a.png">'
        '<div style="background:url(https://canary2.invalid/b.png)">x</div>'
        "</body></html>"
    )
    netlog = tmp_path / "netlog.json"
    chromium(tmp_path, f"--log-net-log={netlog}", "--dump-dom", canary.as_uri())
    assert sorted(page_requests(netlog)) == [
        "http://canary.invalid/a.png",
        "https://canary2.invalid/b.png",
    ]
