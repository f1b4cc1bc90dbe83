"""The app's handlers without a browser: preview, generate, the no-face and too-large messages, the layout."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from controlkit.infer.app import AppHandlers, build_app, example_photos
from controlkit.infer.config import AppConfig

pytest.importorskip("dlib")
gr = pytest.importorskip("gradio")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def astronaut():
    from skimage import data

    return Image.fromarray(data.astronaut())


@pytest.fixture(scope="module")
def handlers(small_controlnet_dir):
    return AppHandlers(AppConfig(controlnet=str(small_controlnet_dir)))


def test_preview_draws_the_detected_landmarks_over_the_photo(handlers, astronaut):
    preview, message = handlers.preview(astronaut)
    assert message == ""
    assert preview.size == (512, 512)
    # The drawing's colours replace the dimmed photo where the landmarks are.
    dimmed = np.asarray(Image.blend(astronaut, Image.new("RGB", astronaut.size), 0.45), dtype=int)
    changed = np.abs(np.asarray(preview, dtype=int) - dimmed).max(axis=-1) > 40
    assert 0.001 < changed.mean() < 0.2


def test_no_face_and_too_large_are_messages_not_exceptions(small_controlnet_dir, handlers):
    sky = Image.new("RGB", (300, 200), (120, 160, 210))
    assert handlers.preview(sky) == (None, "No face found in the photo; try a clearer, front-facing photo.")
    gallery, message = handlers.generate(sky, "a portrait", "", 2, 7.5, 1.0, 0, 1)
    assert gallery == [] and message.startswith("No face found")
    small_limit = AppHandlers(AppConfig(controlnet=str(small_controlnet_dir), max_pixels=100 * 100))
    preview, message = small_limit.preview(sky)
    assert preview is None and "too large (300 x 200 pixels)" in message
    assert handlers.generate(None, "a portrait", "", 2, 7.5, 1.0, 0, 1)[1].startswith("Upload a photo")
    assert handlers.preview(None) == (None, "")


def test_generate_returns_images_captioned_with_adherence_scores(handlers, astronaut):
    assert handlers.generate(astronaut, "  ", "", 2, 7.5, 1.0, 0, 1) == ([], "Write a prompt first.")
    gallery, message = handlers.generate(astronaut, "a portrait", "blurry", 2, 7.5, 1.0, 3, 2)
    assert message == ""
    assert [img.size for img, _ in gallery] == [(64, 64), (64, 64)]
    assert gallery[0][1].startswith("seed 3 · landmark_nme ") and "detection_rate" in gallery[0][1]
    assert gallery[1][1].startswith("seed 4 ·")


def test_build_app_has_the_walkthrough_widgets(small_controlnet_dir, tmp_path):
    photos = example_photos(tmp_path)
    assert [p.name for p in photos] == ["astronaut.jpg", "grace_hopper.jpg"]
    demo = build_app(AppHandlers(AppConfig(controlnet=small_controlnet_dir, steps=2)), examples=photos)
    assert isinstance(demo, gr.Blocks)
    by_id = {c.elem_id: c for c in demo.blocks.values() if getattr(c, "elem_id", None)}
    assert {"photo", "landmarks", "prompt", "generate", "status", "gallery"} <= set(by_id)
    assert by_id["photo"].sources == ["upload", "webcam"]
    sliders = {c.label: c.value for c in demo.blocks.values() if isinstance(c, gr.Slider)}
    assert sliders == {"Steps": 2, "Guidance": 7.5, "ControlNet scale": 1.0, "Images": 4}
    assert demo.analytics_enabled is False


def test_app_command_with_a_missing_controlnet_is_one_line(tmp_path, capsys):
    from controlkit.cli import main

    assert main(["app", "--controlnet", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "ControlNet not found" in err and len(err.strip().splitlines()) == 1


def test_app_command_binds_to_localhost_without_share_by_default(small_controlnet_dir, monkeypatch, tmp_path):
    from controlkit.cli import main
    from controlkit.infer import app

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls = []
    monkeypatch.setattr(app, "launch_app", lambda demo, **kw: calls.append((demo, kw)))
    assert main(["app", "--controlnet", str(small_controlnet_dir)]) == 0
    assert (
        main(
            [
                "app",
                "--controlnet",
                str(small_controlnet_dir),
                "--host",
                "0.0.0.0",
                "--port",
                "9000",
                "--share",
            ]
        )
        == 0
    )
    assert isinstance(calls[0][0], gr.Blocks)
    assert [kw for _, kw in calls] == [
        {"host": "127.0.0.1", "port": 7860, "share": False},
        {"host": "0.0.0.0", "port": 9000, "share": True},
    ]
    assert sorted(p.name for p in (tmp_path / "controlkit" / "examples").iterdir()) == [
        "astronaut.jpg",
        "grace_hopper.jpg",
    ]


def test_a_busy_port_is_a_user_error(small_controlnet_dir):
    import socket

    from controlkit.errors import UserError
    from controlkit.infer.app import launch_app

    demo = build_app(AppHandlers(AppConfig(controlnet=small_controlnet_dir)), examples=[])
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(UserError, match="try --port"):
            launch_app(demo, port=busy.getsockname()[1], block=False)


def test_the_page_words_come_from_the_condition(small_controlnet_dir):
    from controlkit.conditions import get

    for name in ("face-landmarks", "canny"):
        condition = get(name)
        demo = build_app(AppHandlers(AppConfig(controlnet=small_controlnet_dir, condition=name)), examples=[])
        by_id = {c.elem_id: c for c in demo.blocks.values() if getattr(c, "elem_id", None)}
        assert by_id["landmarks"].label == condition.found_label
        intro = next(c.value for c in demo.blocks.values() if isinstance(c, gr.Markdown) and c.value)
        assert condition.photo_hint in intro


def test_the_preview_draws_the_conditioning_once(handlers, astronaut, monkeypatch):
    drawn = []
    render = handlers.condition.render
    monkeypatch.setattr(handlers.condition, "render", lambda *a, **k: drawn.append(1) or render(*a, **k))
    preview, message = handlers.preview(astronaut)
    assert message == "" and preview is not None
    assert len(drawn) == 1


def test_the_controlnet_record_is_read_once_for_the_app_a_preview_and_a_click(
    small_controlnet_dir, astronaut, controlnet_reads
):
    handlers = AppHandlers(AppConfig(controlnet=str(small_controlnet_dir)))
    build_app(handlers, examples=[])
    assert handlers.preview(astronaut)[1] == ""
    gallery, message = handlers.generate(astronaut, "a portrait", "", 1, 7.5, 1.0, 0, 1)
    assert message == "" and len(gallery) == 1
    assert len(controlnet_reads) == 1
