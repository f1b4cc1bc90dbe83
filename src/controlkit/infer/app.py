"""The Gradio demo of a trained ControlNet: a photo in, its landmarks drawn, new images in the same pose out.

The handlers (``AppHandlers``) are plain functions over PIL images that return a status message instead
of raising, so they can be tested without a browser; ``build_app`` only wires widgets to them, and all
generation goes through ``controlkit.infer.generate``. Gradio is told not to phone home, and the app binds
to localhost unless asked otherwise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from controlkit.conditions import Condition
from controlkit.errors import UserError, require
from controlkit.infer.generate import annotate_photo, fit, generate, resolve_condition, work_size
from controlkit.infer.panel import score_caption
from controlkit.infer.pipeline import read_controlnet_info

MAX_FILE_SIZE = "15mb"
MAX_PIXELS = 24_000_000
"""Uploads above this many pixels (about 6000 x 4000) are refused before any work is done."""


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "controlkit" / "examples"


def example_photos(folder: str | Path | None = None) -> list[Path]:
    """The face photos scikit-image and matplotlib ship, copied once into ``folder`` (default: the user's
    cache); a library that is not installed leaves its photo out."""
    folder = Path(folder) if folder is not None else _cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    photos = []
    path = folder / "astronaut.jpg"
    try:
        if not path.is_file():
            from skimage import data

            Image.fromarray(data.astronaut()).save(path, quality=92)
        photos.append(path)
    except ImportError:
        pass
    path = folder / "grace_hopper.jpg"
    try:
        if not path.is_file():
            from matplotlib import cbook

            with cbook.get_sample_data("grace_hopper.jpg") as f:
                path.write_bytes(f.read())
        photos.append(path)
    except (ImportError, OSError):
        pass
    return photos


def overlay(photo: Image.Image, drawing: Image.Image) -> Image.Image:
    """The drawing's non-black pixels over a dimmed photo, so the user sees whether the detection fits."""
    drawing = drawing.convert("RGB").resize(photo.size)
    mask = Image.fromarray((np.asarray(drawing).max(axis=-1) > 0).astype(np.uint8) * 255, "L")
    dimmed = Image.blend(photo.convert("RGB"), Image.new("RGB", photo.size), 0.45)
    return Image.composite(drawing, dimmed, mask)


@dataclass
class AppHandlers:
    """What the app's widgets call: each returns its outputs plus a status message ("" when all went well)."""

    controlnet: str
    base: str | None = None
    condition: Condition | None = None
    device: str | None = None
    max_pixels: int = MAX_PIXELS
    size: tuple[int, int] = field(init=False)

    def __post_init__(self) -> None:
        info = read_controlnet_info(self.controlnet)
        self.size = (info.resolution, info.resolution)
        if self.condition is None or isinstance(self.condition, str):
            self.condition = resolve_condition(self.condition, self.controlnet)

    def _check(self, photo: Image.Image | None) -> str:
        if photo is None:
            return "Upload a photo or take one with the webcam first."
        if photo.width * photo.height > self.max_pixels:
            return (
                f"This photo is too large ({photo.width} x {photo.height} pixels); "
                f"the limit is {self.max_pixels / 1e6:.0f} megapixels."
            )
        return ""

    def preview(self, photo: Image.Image | None) -> tuple[Image.Image | None, str]:
        """The photo with the condition's detection drawn over it, or None and the reason."""
        message = self._check(photo)
        if message:
            return None, message if photo is not None else ""
        working = fit(photo.convert("RGB"), work_size(self.size))
        try:
            annotation, _ = annotate_photo(working, self.condition, self.size)
        except UserError as exc:
            return None, _sentence(exc)
        return overlay(working, self.condition.render(annotation, size=working.size)), ""

    def generate(
        self,
        photo: Image.Image | None,
        prompt: str,
        negative_prompt: str,
        steps: float,
        guidance: float,
        controlnet_scale: float,
        seed: float,
        num_images: float,
    ) -> tuple[list[tuple[Image.Image, str]], str]:
        """Gallery items (image, adherence caption) and a status message."""
        message = self._check(photo)
        if message:
            return [], message
        if not prompt or not prompt.strip():
            return [], "Write a prompt first."
        try:
            result = generate(
                self.controlnet,
                prompt,
                image=photo,
                base=self.base,
                negative_prompt=negative_prompt or None,
                num_images=int(num_images),
                steps=int(steps),
                guidance=float(guidance),
                controlnet_scale=float(controlnet_scale),
                seed=int(seed),
                condition=self.condition,
                device=self.device,
            )
        except UserError as exc:
            return [], _sentence(exc)
        captions = [
            f"seed {s} · {score_caption(scores, short=False)}"
            for s, scores in zip(result.seeds, result.scores, strict=True)
        ]
        return list(zip(result.images, captions, strict=True)), ""


def _sentence(exc: UserError) -> str:
    """A UserError's one line as a sentence for the page: capital first letter, full stop."""
    text = str(exc)
    return f"{text[:1].upper()}{text[1:]}."


def build_app(
    controlnet: str | Path,
    base: str | None = None,
    *,
    condition: str | Condition | None = None,
    device: str | None = None,
    steps: int = 20,
    num_images: int = 4,
    max_pixels: int = MAX_PIXELS,
    examples: list[Path] | None = None,
):
    """The app as a ``gr.Blocks``; ``examples`` defaults to the bundled photos (``example_photos``)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    gr = require("gradio", "app")
    handlers = AppHandlers(str(controlnet), base, condition, device, max_pixels)
    info = read_controlnet_info(controlnet)
    examples = example_photos() if examples is None else examples

    def on_photo(photo):
        preview, message = handlers.preview(photo)
        if message:
            gr.Warning(message)
        return preview, message

    def on_generate(*inputs):
        gallery, message = handlers.generate(*inputs)
        if message:
            gr.Warning(message)
        return gallery, message

    with gr.Blocks(title="controlkit", analytics_enabled=False) as demo:
        gr.Markdown(
            f"## controlkit: {Path(str(controlnet)).name}\n"
            f"A ControlNet trained on **{info.condition or handlers.condition.name}** "
            f"over `{base or info.base_model}`. Upload a face photo or take one with the webcam; "
            "its landmarks are drawn, and the images keep that pose."
        )
        with gr.Row():
            with gr.Column():
                photo = gr.Image(
                    sources=["upload", "webcam"], type="pil", label="Photo", elem_id="photo", height=320
                )
                if examples:
                    gr.Examples([[str(p)] for p in examples], inputs=[photo], label="Example photos")
            landmarks = gr.Image(
                label="Detected landmarks", interactive=False, elem_id="landmarks", height=320, format="png"
            )
        prompt = gr.Textbox(
            label="Prompt", placeholder="a portrait of a woman, oil painting", elem_id="prompt"
        )
        negative = gr.Textbox(label="Negative prompt", placeholder="blurry, low quality")
        with gr.Row():
            steps_in = gr.Slider(1, 100, value=steps, step=1, label="Steps")
            guidance = gr.Slider(1.0, 20.0, value=7.5, step=0.5, label="Guidance")
            scale = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="ControlNet scale")
            seed = gr.Number(value=0, precision=0, label="Seed")
            count = gr.Slider(1, 8, value=num_images, step=1, label="Images")
        button = gr.Button("Generate", variant="primary", elem_id="generate")
        status = gr.Markdown(elem_id="status")
        gallery = gr.Gallery(
            label="Results (adherence scores in the captions)",
            columns=4,
            fit_columns=False,
            object_fit="contain",
            elem_id="gallery",
        )

        # One queue for every event: the detector and the pipeline are used by one request at a time.
        queue = {"concurrency_id": "model", "concurrency_limit": 1}
        photo.change(on_photo, inputs=[photo], outputs=[landmarks, status], **queue)
        inputs = [photo, prompt, negative, steps_in, guidance, scale, seed, count]
        button.click(on_generate, inputs=inputs, outputs=[gallery, status], **queue)
        prompt.submit(on_generate, inputs=inputs, outputs=[gallery, status], **queue)
    return demo


def launch_app(demo, host: str = "127.0.0.1", port: int = 7860, share: bool = False, block: bool = True):
    """Serve ``demo`` with the upload size limit; returns the local URL (when ``block`` is False)."""
    try:
        _, url, _ = demo.launch(
            server_name=host,
            server_port=port,
            share=share,
            max_file_size=MAX_FILE_SIZE,
            ssr_mode=False,
            show_error=False,
            prevent_thread_lock=not block,
            quiet=not block,
        )
    except OSError as exc:
        raise UserError(
            f"cannot serve on {host}:{port} ({exc.strerror or 'port in use?'}); try --port N"
        ) from exc
    return url
