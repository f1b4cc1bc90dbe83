"""The app end to end in a real browser: headless Chromium uploads photos, sees the landmarks, generates.

The app runs in this process on a free localhost port with the small ControlNet (64 px, 2 steps), so a
generation takes seconds. The page must make no request outside localhost (the app works offline).
"""

from __future__ import annotations

import os
import shutil
import socket
from urllib.parse import urlparse

import pytest

pytest.importorskip("dlib")
pytest.importorskip("gradio")
sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def find_chromium() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.path.isfile(candidate):
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(small_controlnet_dir, tmp_path_factory):
    from controlkit.infer.app import AppHandlers, build_app, example_photos, launch_app
    from controlkit.infer.config import AppConfig

    examples = example_photos(tmp_path_factory.mktemp("examples"))
    handlers = AppHandlers(AppConfig(controlnet=small_controlnet_dir, steps=2, num_images=1))
    demo = build_app(handlers, examples=examples)
    url = launch_app(demo, port=free_port(), block=False)
    yield url
    demo.close()


def test_upload_photo_see_landmarks_generate_in_chromium(app_url, photos, tmp_path):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium; `make setup` does it)")
    outside: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        page.on(
            "request",
            lambda r: (
                outside.append(r.url)
                if urlparse(r.url).hostname not in ("127.0.0.1", "localhost", None)
                else None
            ),
        )
        page.goto(app_url)
        upload = page.locator("#photo input[type=file]")

        upload.set_input_files(str(photos / "sky.png"))
        sync_api.expect(page.locator("#status")).to_contain_text("No face found", timeout=60_000)
        page.locator("#photo button[aria-label='Remove Image']").first.click()

        upload = page.locator("#photo input[type=file]")
        upload.set_input_files(str(photos / "astronaut.png"))
        sync_api.expect(page.locator("#landmarks img")).to_be_visible(timeout=60_000)
        sync_api.expect(page.locator("#status")).not_to_contain_text("No face found")

        page.locator("#prompt textarea").fill("a portrait photo of an astronaut")
        page.locator("#generate").click()
        result = page.locator("#gallery img").first
        sync_api.expect(result).to_be_visible(timeout=120_000)
        sync_api.expect(page.locator("#gallery")).to_contain_text("landmark_nme", timeout=10_000)
        assert page.locator("#gallery img").first.evaluate("img => img.naturalWidth") == 64
        page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
        browser.close()
    assert outside == []
    assert (tmp_path / "app.png").stat().st_size > 10_000


def test_uploads_over_the_size_limit_are_refused(app_url):
    import httpx

    from controlkit.infer.app import MAX_FILE_SIZE

    limit = int(MAX_FILE_SIZE.removesuffix("mb")) * 1024 * 1024
    upload = app_url.rstrip("/") + "/gradio_api/upload"
    too_big = httpx.post(upload, files={"files": ("big.png", b"\0" * (limit + 1), "image/png")})
    assert too_big.status_code == 413
    assert httpx.post(upload, files={"files": ("ok.png", b"\0" * 1000, "image/png")}).status_code == 200
