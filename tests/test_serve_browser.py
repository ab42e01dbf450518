"""The demo page in a real headless browser (Playwright driving Debian's chromium).

Starts ``python -m fashionseg.serve`` on a free port, uploads photos and bad files, and
reads what the page shows: the overlay's size, the legend, the one-line messages. Needs
the ``demo`` extra and a chromium (``.ci/run`` installs both); where either is missing
the test fails, it is never skipped.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fashionseg.tasks import get_task

pytestmark = pytest.mark.slow

SERVER_START_S = 300  # a busy 2-core machine takes minutes to import torch and gradio
RESULT_S = 240


def _chromium() -> str:
    found = (
        os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )
    assert found, "no chromium: apt-get install -y chromium (what .ci/run does)"
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(untrained_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The page of the untrained tiny clothing checkpoint, served by the real CLI."""
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1"}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fashionseg.serve", f"ckpt={untrained_ckpt}", f"port={port}"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + SERVER_START_S
    while True:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            urllib.request.urlopen(url, timeout=5).close()
            break
        except OSError:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(1)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def page(server: str) -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(server)
        page.wait_for_selector("#upload")
        yield page
        browser.close()


def _upload(page, path: Path) -> str:
    """Upload ``path`` and wait for the page's answer; returns the message line."""
    clear = page.locator("#upload button[aria-label='Clear']")
    if clear.count():
        clear.first.click()
        page.wait_for_function("document.querySelector('#message').innerText.trim() === ''")
    page.locator("#upload input[type=file]").set_input_files(str(path))
    page.wait_for_function(
        "() => { const t = document.querySelector('#message').innerText;"
        " return t.includes('labelled') || t.startsWith('error:'); }",
        timeout=RESULT_S * 1000,
    )
    return page.inner_text("#message").strip()


def _shown(page, selector: str) -> Image.Image:
    src = page.locator(f"{selector} img").first.get_attribute("src")
    return Image.open(io.BytesIO(page.request.get(src).body()))


def _photo(path: Path, width: int, height: int, **save: object) -> Path:
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // max(width, 1), y * 255 // max(height, 1), (x + y) % 256], -1)
    Image.fromarray(rgb.astype(np.uint8)).save(path, **save)
    return path


def test_a_photo_gets_overlay_at_its_size_and_the_legend(page, tmp_path: Path) -> None:
    from fashionseg.data.synthetic import generate

    data = generate(tmp_path / "data", num_images=1, seed=1, height=96, width=64)
    photo = next((data / "images").iterdir())
    message = _upload(page, photo)
    width, height = Image.open(photo).size
    assert message.startswith(f"{width} x {height} photo labelled"), message
    assert _shown(page, "#overlay").size == (width, height)
    assert _shown(page, "#labelmap").size == (width, height)
    legend = page.inner_text("#legend")
    for name in get_task("clothing").class_names:
        assert name in legend
    assert "%" in legend
    shot = tmp_path / "demo_page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("text", "error: notes.txt: not an image format PIL can read"),
        ("empty", "error: empty.png: empty file (0 bytes)"),
        ("16bit", "50 x 30 photo labelled"),
        ("exif", "40 x 60 photo labelled"),
        ("huge", "6000 x 4000 photo labelled"),
    ],
)
def test_bad_uploads_give_a_label_map_or_one_line(
    page, tmp_path: Path, case: str, expected: str
) -> None:
    if case == "text":
        path = tmp_path / "notes.txt"
        path.write_text("not a photo\n")
    elif case == "empty":
        path = tmp_path / "empty.png"
        path.write_bytes(b"")
    elif case == "16bit":
        path = tmp_path / "grey16.png"
        values = (np.arange(30 * 50).reshape(30, 50) * 40).astype(np.uint16)
        Image.fromarray(values).save(path)
        assert Image.open(path).mode.startswith("I")
    elif case == "exif":
        exif = Image.Exif()
        exif[0x0112] = 6  # stored 60 x 40, shown turned: 40 x 60
        path = _photo(tmp_path / "phone.jpg", 60, 40, exif=exif)
    else:
        path = _photo(tmp_path / "huge.jpg", 6000, 4000, quality=70)
    message = _upload(page, path)
    assert message.startswith(expected), message
    assert "\n" not in message and "Traceback" not in page.content()
    if not message.startswith("error:"):
        width, height = (int(v) for v in expected.split(" photo")[0].split(" x "))
        assert _shown(page, "#labelmap").size == (width, height)


def test_the_slider_and_the_fusion_relabel(page, tmp_path: Path) -> None:
    assert _upload(page, _photo(tmp_path / "p.png", 40, 30)).endswith(
        "(fusion seed, threshold 0.5)"
    )
    number = page.locator("#threshold input[type=number]")
    number.fill("0.05")
    number.press("Enter")
    page.wait_for_function(
        "document.querySelector('#message').innerText.includes('threshold 0.05')",
        timeout=RESULT_S * 1000,
    )
    page.locator("#fusion input").click()
    page.get_by_role("option", name="argmax").click()
    page.wait_for_function(
        "document.querySelector('#message').innerText.includes('fusion argmax')",
        timeout=RESULT_S * 1000,
    )
    assert page.inner_text("#message").startswith("40 x 30 photo labelled")


def test_the_server_still_serves_after_bad_uploads(page, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    assert _upload(page, bad).startswith("error: bad.jpg:")
    good = _photo(tmp_path / "good.png", 32, 24)
    assert _upload(page, good).startswith("32 x 24 photo labelled")
