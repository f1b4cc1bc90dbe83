"""``--eval_steps``: `controlkit eval`'s evaluator during training, so the curves exist when training ends.

On a small held-out set (the rows ``--max_train_samples`` leaves out, else the validation pairs that carry an
annotation), every ``eval_steps`` optimizer steps: matched, shuffled and off-domain adherence of the
ControlNet as trained so far, against the ControlNet off (measured once), and prompt fidelity with
``--eval_clip``. Figures go to metrics.jsonl (``{"step": N, "eval": {...}}``) and the trackers; at the end
the run names the best step so far by the pick's rule. It samples through validation's pipeline (the
VAE and text encoder brought back to the device only meanwhile, eval mode, no gradients, memory freed),
with its own seeded generators, so training runs exactly as without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controlkit.errors import UserError
from controlkit.eval.evaluator import CHECKPOINT_CASES, Evaluator, Sampling
from controlkit.eval.figures import checkpoint_record, finite, summarize
from controlkit.train.validation import DEFAULT_INFERENCE_STEPS, precision, sampling_pipeline

EVAL_FLOOR = 0.9


def _flatten(record: dict[str, Any], prefix: str = "eval") -> dict[str, float]:
    """Nested figures as tracker keys: ``eval/matched/landmark_nme``, ``eval/off_domain_fidelity``."""
    flat: dict[str, float] = {}
    for key, value in record.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, prefix if key == "adherence" else f"{prefix}/{key}"))
        elif isinstance(value, int | float) and key != "step":
            flat[f"{prefix}/{key}"] = value
    return flat


@dataclass
class TrainingEvaluation:
    """The evaluator over the run's held-out samples, and the base model's figures once measured."""

    evaluator: Evaluator
    base: dict[str, Any] | None = None

    def __call__(self, run, models, step: int) -> None:
        """Measure the ControlNet as trained so far (main process), log the figures."""
        if not run.accelerator.is_main_process:
            return
        base = models.base
        parts = dict(vae=base.vae, text_encoder=base.text_encoder, tokenizer=base.tokenizer, unet=base.unet)
        autocast = lambda: precision(run.accelerator, models.weight_dtype)  # noqa: E731
        with (
            models.encoders.in_use(),
            sampling_pipeline(
                **parts, controlnet=models.controlnet, config=run.config, accelerator=run.accelerator
            ) as pipe,
        ):
            if self.base is None:
                self.base = summarize(self.evaluator.run(pipe, self.evaluator.base_cases, precision=autocast))
            items = self.evaluator.run(pipe, CHECKPOINT_CASES, precision=autocast)
        record = checkpoint_record(f"step-{step}", step, items, self.base)
        record["adherence"]["off"] = self.base["adherence"].get("off", {})
        run.metrics.write({"step": step, "eval": finite(record)})
        run.accelerator.log(_flatten(record), step=step)

    def best_so_far(self, output_dir) -> str:
        """One line: the best step so far by the pick's rule, over every eval record in metrics.jsonl."""
        from controlkit.eval.pick import pick_checkpoint
        from controlkit.train.metrics import read_metrics

        records = [r["eval"] for r in read_metrics(output_dir) if "eval" in r]
        condition = self.evaluator.condition
        pick = pick_checkpoint(
            records, condition.adherence_score, condition.adherence_higher_is_better, EVAL_FLOOR
        )
        if pick.name is None:
            return f"eval: no best step ({pick.reason})"
        return f"eval: best step so far {pick.step} ({pick.reason}; rule: {pick.rule})"


def prepare_evaluation(run, data, pairs: list, condition) -> TrainingEvaluation | None:
    """The in-training evaluation ``--eval_steps`` asks for (None without it): its held-out samples and its
    CLIP model are found now, so a bad setting fails before the models load."""
    from controlkit.eval.config import OFF_DOMAIN_PROMPTS
    from controlkit.eval.held_out import fit_sample, left_out_samples

    config, settings = run.config, data.settings
    if config.eval_steps is None:
        return None
    if condition is None:
        raise UserError(
            "--eval_steps scores adherence with the dataset's condition, and this dataset records none "
            "(a dataset from `controlkit data build` does)"
        )
    condition = condition.for_resolution(settings.resolution)
    samples = left_out_samples(config, settings.seed, condition, settings.resolution, config.eval_samples)
    if not samples:
        annotated = [p for p in pairs if p.annotation is not None][: config.eval_samples]
        size = settings.resolution
        samples = [
            fit_sample(
                p.prompt, p.conditioning_image, p.annotation, p.conditioning_image.size, condition, size
            )
            for p in annotated
        ]
    if len(samples) < 2:
        raise UserError(
            "--eval_steps needs at least 2 held-out samples: train on part of the dataset "
            "(--max_train_samples) or give --validation_image files with annotation sidecars (NAME.json)"
        )
    clip = None
    if config.eval_clip and run.accelerator.is_main_process:  # only the main process evaluates
        from controlkit.eval.fidelity import ClipScorer

        clip = ClipScorer(config.eval_clip, str(run.accelerator.device))
    steps = config.validation_inference_steps or DEFAULT_INFERENCE_STEPS
    sampling = Sampling(steps=steps, seed=settings.seed, batch_size=len(samples))
    return TrainingEvaluation(Evaluator(samples, condition, sampling, OFF_DOMAIN_PROMPTS, clip, grid_rows=0))
