"""Does the ControlNet follow the landmarks? Generate from held-out conditions and measure, three ways.

- matched: each prompt with its own conditioning image, scored against its own landmarks;
- shuffled: the same prompts with another face's conditioning image, scored against their own landmarks
  (a ControlNet that follows its input draws the other face's layout, so the error grows);
- disabled: the ControlNet's residuals scaled to 0, i.e. the base model alone.
A ControlNet that has learned control is clearly better matched than both others. Every case uses the same
prompts and seeds; scores come from the face-landmarks condition with the small-face landmark regressor as
its detector (``get("face-landmarks", detector="regressor")``: ``landmark_nme``, ``detection_rate``), plus
``point_error``: the mean point distance over inter-ocular distance for every image, matched or not (the
condition's NME only counts found faces).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from controlkit.conditions import Condition
from controlkit.conditions.face_landmarks import draw_landmarks, inter_ocular
from controlkit.pictures import image_grid

CASES = ("matched", "shuffled", "disabled")


@dataclass
class HeldOutFace:
    """A face the ControlNet never trained on: its caption, conditioning image and landmarks (1, 68, 2)."""

    prompt: str
    conditioning_image: Image.Image
    annotation: np.ndarray


def held_out_faces(count: int, seed: int, resolution: int = 64) -> list[HeldOutFace]:
    """Synthetic faces from a seed stream that the training set does not use."""
    from controlkit.data.synthetic_faces import describe, synthetic_faces

    faces = []
    for face in synthetic_faces(count, seed=seed, size=resolution):
        annotation = face.landmarks[None].astype(np.float32)
        conditioning = draw_landmarks(annotation, (resolution, resolution))
        faces.append(HeldOutFace(describe(face.attributes), conditioning, annotation))
    return faces


def load_pipeline(base: str | Path, controlnet):
    """A ControlNet pipeline over the base, with a fast multistep scheduler and no progress bars."""
    from diffusers import StableDiffusionControlNetPipeline, UniPCMultistepScheduler

    pipe = StableDiffusionControlNetPipeline.from_pretrained(base, controlnet=controlnet, safety_checker=None)
    pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.no_grad()
def generate(
    pipe,
    faces: list[HeldOutFace],
    conditioning: list[Image.Image],
    scale: float,
    steps: int,
    guidance: float,
    seed: int,
) -> list[Image.Image]:
    """One image per face, each with its own seeded generator, so the three cases differ only by control."""
    generators = [torch.Generator().manual_seed(seed + i) for i in range(len(faces))]
    return pipe(
        [face.prompt for face in faces],
        conditioning,
        num_inference_steps=steps,
        guidance_scale=guidance,
        controlnet_conditioning_scale=scale,
        generator=generators,
    ).images


def adherence_condition() -> Condition:
    """Face landmarks read by the landmark regressor: dlib cannot see faces this small."""
    from controlkit.conditions import get

    return get("face-landmarks", detector="regressor")


def score(images: list[Image.Image], faces: list[HeldOutFace], condition: Condition) -> dict[str, float]:
    """Mean ``landmark_nme`` and ``detection_rate`` (the condition's own score) and ``point_error``.

    ``condition`` is ``adherence_condition()``: its regressor finds one face in every image, which
    ``point_error`` needs.
    """
    scores = [condition.score(image, face.annotation) for image, face in zip(images, faces, strict=True)]
    found = condition.detector.predict(images)
    errors = [
        float(np.linalg.norm(f - face.annotation[0], axis=-1).mean()) / inter_ocular(face.annotation[0])
        for f, face in zip(found, faces, strict=True)
    ]
    nme = [s["landmark_nme"] for s in scores if np.isfinite(s["landmark_nme"])]
    return {
        "landmark_nme": float(np.mean(nme)) if nme else float("nan"),
        "detection_rate": float(np.mean([s["detection_rate"] for s in scores])),
        "point_error": float(np.mean(errors)),
    }


def shuffled(items: list) -> list:
    """Every item moved to another place (a rotation by half the list: never its own)."""
    half = max(1, len(items) // 2)
    return items[half:] + items[:half]


def control_test(
    pipe, faces: list[HeldOutFace], condition: Condition, steps: int, guidance: float, seed: int
) -> tuple[dict[str, dict[str, float]], dict[str, list[Image.Image]]]:
    """Scores and images of the three cases: matched, shuffled, disabled."""
    own = [face.conditioning_image for face in faces]
    runs = {"matched": (own, 1.0), "shuffled": (shuffled(own), 1.0), "disabled": (own, 0.0)}
    images = {
        case: generate(pipe, faces, cond, scale, steps, guidance, seed)
        for case, (cond, scale) in runs.items()
    }
    return {case: score(images[case], faces, condition) for case in CASES}, images


def control_panel(
    faces: list[HeldOutFace], images: dict[str, list[Image.Image]], rows: int = 6
) -> Image.Image:
    """Rows: conditioning | matched | shuffled | disabled, for the first faces."""
    cell = faces[0].conditioning_image.width
    grid = [
        [faces[row].conditioning_image, *(images[case][row] for case in CASES)]
        for row in range(min(rows, len(faces)))
    ]
    return image_grid(grid, (cell, cell))
