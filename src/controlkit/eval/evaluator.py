"""Generate the cases of an evaluation from held-out samples and score every image.

For a ControlNet, per held-out sample (its prompt, conditioning image and annotation):
- ``matched``: its own prompt and conditioning image;
- ``shuffled``: its own prompt with another sample's conditioning image, scored against its own annotation
  (a ControlNet that follows its input draws the other layout, so the error grows);
- ``off_domain``: a forgetting-probe prompt (a cat, an ogre, ...) with its own conditioning image.
Once for the base model, i.e. the ControlNet at scale 0 (its residuals are multiplied by 0, so the
pipeline computes exactly the base model, whatever the checkpoint):
- ``off``: its own prompt and conditioning image; ``base_off_domain``: the probe prompts (with CLIP only).
Image ``i`` of every case uses the seed ``seed + i``, so cases differ only by what the ControlNet is given.
Each image is scored by the condition against the sample's annotation (``condition.score``) and, with a
CLIP model, against its prompt. Under ``accelerate launch`` the images are spread over the processes
(``split_between_processes``) and the results gathered.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PIL import Image

from controlkit.conditions import Condition
from controlkit.eval.fidelity import ClipScorer
from controlkit.eval.held_out import HeldOutSample

CHECKPOINT_CASES = ("matched", "shuffled", "off_domain")
BASE_CASES = ("off", "base_off_domain")
GRID_CASES = ("matched", "shuffled", "off", "off_domain")
"""The columns of a checkpoint's grid, after the conditioning image."""
_CLIP_CASES = ("matched", "off", "off_domain", "base_off_domain")
_SCORED_CASES = ("matched", "shuffled", "off", "off_domain")


@dataclass(frozen=True)
class Sampling:
    """How each image is sampled: denoising steps, guidance, the first seed, images per pipeline call."""

    steps: int = 20
    guidance: float = 7.5
    seed: int = 0
    batch_size: int = 8


@dataclass
class Item:
    """One generated image's figures: the condition's scores, the CLIP similarity (None without CLIP or
    where it is not needed); the image itself only for the samples the grids show."""

    case: str
    index: int
    scores: dict[str, float]
    clip: float | None = None
    image: Image.Image | None = None


def rotated(items: list) -> list:
    """Every item moved to another place (a rotation by half the list: never its own)."""
    half = max(1, len(items) // 2)
    return items[half:] + items[:half]


class Evaluator:
    """The cases of one held-out set, generated and scored for any pipeline given to ``run``."""

    def __init__(
        self,
        samples: list[HeldOutSample],
        condition: Condition,
        sampling: Sampling,
        off_domain_prompts: Sequence[str],
        clip: ClipScorer | None = None,
        grid_rows: int = 4,
    ):
        self.samples, self.condition, self.sampling = samples, condition, sampling
        self.off_domain_prompts, self.clip, self.grid_rows = list(off_domain_prompts), clip, grid_rows

    @property
    def base_cases(self) -> tuple[str, ...]:
        """The base model's cases: the probe prompts only matter with CLIP."""
        return BASE_CASES if self.clip is not None else BASE_CASES[:1]

    def case(self, name: str) -> tuple[list[str], list[Image.Image], float]:
        """(prompts, conditioning images, ControlNet scale) of a case, one entry per sample."""
        own = [s.conditioning_image for s in self.samples]
        prompts = [s.prompt for s in self.samples]
        probes = [self.off_domain_prompts[i % len(self.off_domain_prompts)] for i in range(len(self.samples))]
        return {
            "matched": (prompts, own, 1.0),
            "shuffled": (prompts, rotated(own), 1.0),
            "off_domain": (probes, own, 1.0),
            "off": (prompts, own, 0.0),
            "base_off_domain": (probes, own, 0.0),
        }[name]

    def count(self, cases: Sequence[str]) -> int:
        """The number of images ``run`` makes for these cases (over every process)."""
        return len(cases) * len(self.samples)

    def run(
        self,
        pipe,
        cases: Sequence[str],
        *,
        progress: Callable[[int], object] = lambda n: None,
        precision: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
        state=None,
        stop: Callable[[], bool] = lambda: False,
    ) -> list[Item]:
        """Generate and score every image of ``cases``; with an accelerate ``state`` of several processes,
        each makes its share and every process gets all the items back. When ``stop()`` turns true the
        remaining batches are left out (the caller drops the incomplete result); every process still
        reaches the gathering, so none waits for another."""
        jobs = [(case, i) for case in cases for i in range(len(self.samples))]
        if state is None or state.num_processes == 1:
            return self._run(pipe, jobs, progress, precision, stop)
        from accelerate.utils import gather_object

        with state.split_between_processes(jobs) as mine:
            items = self._run(pipe, list(mine), progress, precision, stop)
        return gather_object(items)

    def _run(self, pipe, jobs: list[tuple[str, int]], progress, precision, stop) -> list[Item]:
        items: list[Item] = []
        for case, group in itertools.groupby(jobs, key=lambda job: job[0]):
            indices = [i for _, i in group]
            for start in range(0, len(indices), self.sampling.batch_size):
                if stop():
                    return items
                batch = indices[start : start + self.sampling.batch_size]
                items += self._batch(pipe, case, batch, precision)
                progress(len(batch))
        return items

    def _batch(self, pipe, case: str, batch: list[int], precision) -> list[Item]:
        import torch

        prompts, conditionings, scale = self.case(case)
        prompts = [prompts[i] for i in batch]
        with torch.no_grad(), precision():
            images = pipe(
                prompts,
                [conditionings[i] for i in batch],
                num_inference_steps=self.sampling.steps,
                guidance_scale=self.sampling.guidance,
                controlnet_conditioning_scale=scale,
                generator=[torch.Generator().manual_seed(self.sampling.seed + i) for i in batch],
            ).images
        # The pipeline rounds the size down to a multiple of 8; score in the annotation's pixel frame.
        images = [
            image.resize(self.samples[i].conditioning_image.size)
            for image, i in zip(images, batch, strict=True)
        ]
        similarity = [None] * len(batch)
        if self.clip is not None and case in _CLIP_CASES:
            similarity = self.clip.similarity(images, prompts)
        return [
            Item(
                case,
                i,
                self.condition.score(image, self.samples[i].annotation) if case in _SCORED_CASES else {},
                clip,
                image if i < self.grid_rows else None,
            )
            for image, i, clip in zip(images, batch, similarity, strict=True)
        ]
