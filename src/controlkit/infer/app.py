"""The Gradio demo of a trained ControlNet: a photo in, what its condition finds drawn over it, new images
that follow it out.

The handlers (``AppHandlers``) are plain functions over PIL images that return a status message instead
of raising, so they can be tested without a browser; ``build_app`` only wires widgets to them, and all
generation goes through ``controlkit.infer.generate``. The ControlNet's record (controlkit.json) is read
once, when the handlers are made, not once per click. Gradio is told not to phone home, and the app binds
to localhost unless asked otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from controlkit.errors import UserError, require
from controlkit.infer.config import AppConfig, GenerateConfig
from controlkit.infer.generate import draw_annotation, fit, generate, resolve_condition, work_size
from controlkit.infer.panel import score_caption
from controlkit.infer.pipeline import load_pipeline
from controlkit.metadata import ControlNetInfo
from controlkit.models.loading import controlnet_config
from controlkit.paths import cache_dir

MAX_FILE_SIZE = "15mb"


def example_photos(folder: str | Path | None = None) -> list[Path]:
    """The face photos scikit-image and matplotlib ship, copied once into ``folder`` (default: the user's
    cache); a library that is not installed leaves its photo out."""
    folder = Path(folder) if folder is not None else cache_dir("examples")
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


class AppHandlers:
    """What the app's widgets call: each returns its outputs plus a status message ("" when all went well).

    Made once per app: it reads the ControlNet's record and resolves its condition here, so a bad
    ControlNet or condition fails before the page is served, and no click reads them again.
    """

    def __init__(self, config: AppConfig) -> None:
        self.config = config
        controlnet_config(config.controlnet)  # a folder that holds no usable ControlNet: one line, now
        self.info = ControlNetInfo.read(config.controlnet)
        self.condition = resolve_condition(config.condition, self.info, config.controlnet)
        self.size = (self.info.resolution, self.info.resolution)

    def load_pipeline(self) -> None:
        """Load the pipeline now, so the first click does not wait for it."""
        load_pipeline(self.config.controlnet, self.info, base=self.config.base, device=self.config.device)

    def _check(self, photo: Image.Image | None) -> str:
        if photo is None:
            return "Upload a photo or take one with the webcam first."
        limit = self.config.max_pixels
        if photo.width * photo.height > limit:
            return (
                f"This photo is too large ({photo.width} x {photo.height} pixels); "
                f"the limit is {limit / 1e6:.0f} megapixels."
            )
        return ""

    def preview(self, photo: Image.Image | None) -> tuple[Image.Image | None, str]:
        """The photo with the condition's detection drawn over it, or None and the reason."""
        message = self._check(photo)
        if message:
            return None, message if photo is not None else ""
        working = fit(photo.convert("RGB"), work_size(self.size))
        try:
            _, drawing = draw_annotation(working, self.condition)
        except UserError as exc:
            return None, _sentence(exc)
        return overlay(working, drawing), ""

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
        config = GenerateConfig(
            controlnet=self.config.controlnet,
            base=self.config.base,
            condition=self.condition,
            device=self.config.device,
            image=photo,
            prompt=prompt,
            negative_prompt=negative_prompt or None,
            num_images=int(num_images),
            steps=int(steps),
            guidance=float(guidance),
            controlnet_scale=float(controlnet_scale),
            seed=int(seed),
        )
        try:
            result = generate(config, self.info)
        except UserError as exc:
            return [], _sentence(exc)
        captions = [
            f"seed {s} · {score_caption(scores)}"
            for s, scores in zip(result.seeds, result.scores, strict=True)
        ]
        return list(zip(result.images, captions, strict=True)), ""


def _sentence(exc: UserError) -> str:
    """A UserError's one line as a sentence for the page: capital first letter, full stop."""
    text = str(exc)
    return f"{text[:1].upper()}{text[1:]}."


def build_app(handlers: AppHandlers, examples: list[Path] | None = None):
    """The app as a ``gr.Blocks`` over ``handlers``; ``examples`` defaults to the bundled photos
    (``example_photos``)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    gr = require("gradio", "app")
    config, info, condition = handlers.config, handlers.info, handlers.condition
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
            f"## controlkit: {Path(str(config.controlnet)).name}\n"
            f"A ControlNet trained on **{info.condition or condition.name}** "
            f"over `{config.base or info.base_model}`. {condition.photo_hint}"
        )
        with gr.Row():
            with gr.Column():
                photo = gr.Image(
                    sources=["upload", "webcam"], type="pil", label="Photo", elem_id="photo", height=320
                )
                if examples:
                    gr.Examples([[str(p)] for p in examples], inputs=[photo], label="Example photos")
            found = gr.Image(
                label=condition.found_label, interactive=False, elem_id="landmarks", height=320, format="png"
            )
        prompt = gr.Textbox(
            label="Prompt", placeholder="a portrait of a woman, oil painting", elem_id="prompt"
        )
        negative = gr.Textbox(label="Negative prompt", placeholder="blurry, low quality")
        with gr.Row():
            steps_in = gr.Slider(1, 100, value=config.steps, step=1, label="Steps")
            guidance = gr.Slider(1.0, 20.0, value=7.5, step=0.5, label="Guidance")
            scale = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="ControlNet scale")
            seed = gr.Number(value=0, precision=0, label="Seed")
            count = gr.Slider(1, 8, value=config.num_images, step=1, label="Images")
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
        photo.change(on_photo, inputs=[photo], outputs=[found, status], **queue)
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
