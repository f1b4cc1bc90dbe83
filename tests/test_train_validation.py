"""Validation pairs, the grid, and the adherence-score hook, on the small model with a toy condition."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from controlkit import conditions
from controlkit.errors import UserError
from controlkit.train import validation
from controlkit.train.config import RunSettings, TrainConfig
from controlkit.train.validation import ValidationPair, log_validation, validation_grid, validation_pairs


@conditions.register("test-mean-colour")
class MeanColour:
    """A toy condition: the annotation is the mean RGB colour; adherence is how close the output's mean is."""

    name = "test-mean-colour"

    def __init__(self):
        self.scored = 0

    def annotate(self, image):
        return np.asarray(image.convert("RGB"), dtype=np.float32).reshape(-1, 3).mean(axis=0)

    def render(self, annotation, size):
        return Image.new("RGB", size, tuple(int(v) for v in annotation))

    def score(self, generated, annotation):
        self.scored += 1
        error = float(np.abs(self.annotate(generated) - annotation).mean() / 255)
        # A key that is NaN for bright targets checks the NaN-aware mean.
        dark = error if annotation.mean() < 128 else math.nan
        return {"colour_error": error, "dark_error": dark}

    def flip(self, annotation, width):
        return annotation

    def to_record(self, annotation):
        return annotation.tolist()

    def from_record(self, record):
        return np.asarray(record, dtype=np.float32)


def make_config(tmp_path, **overrides):
    fields = dict(
        output_dir=str(tmp_path / "out"),
        pretrained_model_name_or_path=None,
        revision=None,
        validation_prompt=None,
        validation_image=None,
        num_validation_images=4,
    )
    fields.update(overrides)
    return TrainConfig(**fields)


SETTINGS = RunSettings(seed=0, resolution=64)
"""What a run resolved: its seed, resolution and the dataset's (default) column names."""


def save_image(path, colour, size=64):
    Image.new("RGB", (size, size), colour).save(path)
    return str(path)


@pytest.mark.parametrize(
    ("n_prompts", "n_images", "expected"),
    [
        (2, 1, [("p0", "i0"), ("p1", "i0")]),
        (1, 2, [("p0", "i0"), ("p0", "i1")]),
        (2, 2, [("p0", "i0"), ("p1", "i1")]),
    ],
)
def test_prompts_and_images_pair_like_the_reference(tmp_path, n_prompts, n_images, expected):
    colours = [(10, 20, 30), (200, 100, 50)]
    images = [save_image(tmp_path / f"i{i}.png", colours[i]) for i in range(n_images)]
    config = make_config(
        tmp_path, validation_prompt=[f"p{i}" for i in range(n_prompts)], validation_image=images
    )
    pairs = validation_pairs(config, SETTINGS, condition=None)
    got = [(pair.prompt, f"i{colours.index(pair.conditioning_image.getpixel((0, 0)))}") for pair in pairs]
    assert got == expected
    assert all(pair.annotation is None for pair in pairs)


@pytest.mark.parametrize(("prompts", "images"), [(["a", "b"], 3), (["a"], 0), ([], 1)])
def test_mismatched_prompts_and_images_are_one_line_errors(tmp_path, prompts, images):
    paths = [save_image(tmp_path / f"i{i}.png", (0, 0, 0)) for i in range(images)]
    config = make_config(tmp_path, validation_prompt=prompts or None, validation_image=paths or None)
    with pytest.raises(UserError) as error:
        validation_pairs(config, SETTINGS, condition=None)
    assert "\n" not in str(error.value) and "--validation_" in str(error.value)


def test_unreadable_validation_image_is_a_user_error(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a png")
    config = make_config(tmp_path, validation_prompt=["a"], validation_image=[str(tmp_path / "bad.png")])
    with pytest.raises(UserError, match="bad.png"):
        validation_pairs(config, SETTINGS, condition=None)


def test_sidecar_json_holds_the_annotation(tmp_path):
    condition = conditions.get("test-mean-colour")
    with_sidecar = save_image(tmp_path / "a.png", (10, 20, 30))
    (tmp_path / "a.json").write_text(json.dumps([1.0, 2.0, 3.0]))
    without = save_image(tmp_path / "b.png", (0, 0, 0))
    config = make_config(tmp_path, validation_prompt=["x"], validation_image=[with_sidecar, without])
    first, second = validation_pairs(config, SETTINGS, condition)
    np.testing.assert_array_equal(first.annotation, [1.0, 2.0, 3.0])
    assert first.annotation.dtype == np.float32 and second.annotation is None


def test_dataset_rows_add_pairs_only_when_asked(tmp_path):
    import datasets

    condition = conditions.get("test-mean-colour")
    colours = [(i * 40, 0, 0) for i in range(5)]
    dataset = datasets.Dataset.from_dict(
        {
            "conditioning_image": [Image.new("RGB", (32, 32), c) for c in colours],
            "text": [f"caption {i}" for i in range(5)],
            "annotation": [list(map(float, c)) for c in colours],
        }
    ).cast_column("conditioning_image", datasets.Image())
    assert validation_pairs(make_config(tmp_path), SETTINGS, condition, dataset) == []
    pairs = validation_pairs(make_config(tmp_path, validation_rows=3), SETTINGS, condition, dataset)
    expected = ["caption 0", "caption 2", "caption 4"]
    assert [pair.prompt for pair in pairs] == expected
    np.testing.assert_array_equal(pairs[1].annotation, [80.0, 0.0, 0.0])
    assert pairs[2].conditioning_image.getpixel((0, 0)) == (160, 0, 0)
    given = make_config(
        tmp_path,
        validation_rows=3,
        validation_prompt=["p"],
        validation_image=[save_image(tmp_path / "v.png", 0)],
    )
    assert [pair.prompt for pair in validation_pairs(given, SETTINGS, condition, dataset)] == ["p", *expected]


def test_grid_has_a_row_per_pair_and_the_conditioning_image_first():
    pairs = [
        ValidationPair("red", Image.new("RGB", (64, 32), "red")),
        ValidationPair("blue", Image.new("RGB", (64, 64), "blue")),
    ]
    outputs = [Image.new("RGB", (64, 64), "green")] * 3
    grid = validation_grid([(pairs[0], outputs), (pairs[1], outputs)], cell=64)
    assert grid.width == 4 * 64 and 2 * 64 < grid.height < 2 * 64 + 64
    assert grid.getpixel((32, 32)) == (255, 0, 0) and grid.getpixel((32 + 64, 32)) == (0, 128, 0)
    second_row = grid.height // 2
    assert grid.getpixel((32, second_row + 32)) == (0, 0, 255)


def make_accelerator(**kwargs):
    """A fresh Accelerator: accelerate keeps one global state per process, so reset it first."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
    return Accelerator(cpu=True, **kwargs)


@pytest.fixture
def two_steps(monkeypatch):
    monkeypatch.setattr(validation, "DEFAULT_INFERENCE_STEPS", 2)


@pytest.fixture(scope="module")
def components(small_model_dir):
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextModel

    unet = UNet2DConditionModel.from_pretrained(small_model_dir, subfolder="unet")
    return dict(
        vae=AutoencoderKL.from_pretrained(small_model_dir, subfolder="vae"),
        text_encoder=CLIPTextModel.from_pretrained(small_model_dir, subfolder="text_encoder"),
        tokenizer=AutoTokenizer.from_pretrained(small_model_dir, subfolder="tokenizer"),
        unet=unet,
        controlnet=ControlNetModel.from_unet(unet),
    )


def test_log_validation_scores_every_output_and_leaves_training_state_alone(
    tmp_path, small_model_dir, components, two_steps
):
    condition = conditions.get("test-mean-colour")
    config = make_config(
        tmp_path, pretrained_model_name_or_path=str(small_model_dir), num_validation_images=2
    )
    accelerator = make_accelerator(log_with="tensorboard", project_dir=str(tmp_path / "logs"))
    accelerator.init_trackers("test")
    controlnet = accelerator.prepare(components["controlnet"])
    controlnet.train()
    before = {name: p.detach().clone() for name, p in controlnet.named_parameters()}
    calls = []
    hook = controlnet.register_forward_hook(lambda *_: calls.append(1))
    dark, bright = Image.new("RGB", (64, 64), (20, 20, 20)), Image.new("RGB", (64, 64), (240, 240, 240))
    pairs = [
        ValidationPair("a dark square", dark, condition.annotate(dark)),
        ValidationPair("a bright square", bright, condition.annotate(bright)),
        ValidationPair("no annotation", bright, None),
    ]
    rng = torch.get_rng_state()
    try:
        scores = log_validation(
            **components | {"controlnet": controlnet},
            config=config,
            settings=SETTINGS,
            accelerator=accelerator,
            weight_dtype=torch.float32,
            step=7,
            pairs=pairs,
            condition=condition,
        )
    finally:
        hook.remove()
    accelerator.end_training()

    assert calls, "the pipeline must run the trained ControlNet passed in"
    assert condition.scored == 4  # two annotated pairs x two images
    assert set(scores) == {"validation/colour_error", "validation/dark_error"}
    assert 0 <= scores["validation/colour_error"] <= 1 and not math.isnan(scores["validation/dark_error"])
    assert controlnet.training and all(p.grad is None for p in controlnet.parameters())
    assert all(torch.equal(before[name], p) for name, p in controlnet.named_parameters())
    assert torch.equal(rng, torch.get_rng_state())
    grid = Image.open(tmp_path / "out" / "validation" / "step-7.png")
    assert grid.width == 3 * 64 and grid.height > 3 * 64
    assert list((tmp_path / "logs").rglob("events.out.tfevents.*"))


def test_log_validation_is_seeded_and_returns_nothing_without_a_condition(
    tmp_path, small_model_dir, components, two_steps
):
    config = make_config(
        tmp_path, pretrained_model_name_or_path=str(small_model_dir), num_validation_images=1
    )
    accelerator = make_accelerator()
    pair = ValidationPair("a face", Image.new("RGB", (64, 64), (90, 40, 10)), np.zeros(3, np.float32))
    grids = []
    for step in (1, 2):
        args = dict(
            config=config,
            settings=SETTINGS,
            accelerator=accelerator,
            weight_dtype=torch.float32,
            step=step,
            pairs=[pair],
        )
        assert log_validation(**components, **args, condition=None) == {}
        grids.append(np.asarray(Image.open(tmp_path / "out" / "validation" / f"step-{step}.png")))
    np.testing.assert_array_equal(grids[0], grids[1])


def test_log_validation_runs_with_half_precision_base_and_fp32_controlnet(
    tmp_path, small_model_dir, two_steps
):
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextModel

    half = torch.bfloat16
    unet = UNet2DConditionModel.from_pretrained(small_model_dir, subfolder="unet")
    controlnet = ControlNetModel.from_unet(unet)
    frozen = dict(
        vae=AutoencoderKL.from_pretrained(small_model_dir, subfolder="vae").to(half),
        text_encoder=CLIPTextModel.from_pretrained(small_model_dir, subfolder="text_encoder").to(half),
        tokenizer=AutoTokenizer.from_pretrained(small_model_dir, subfolder="tokenizer"),
        unet=unet.to(half),
    )
    config = make_config(
        tmp_path, pretrained_model_name_or_path=str(small_model_dir), num_validation_images=1
    )
    pair = ValidationPair("a face", Image.new("RGB", (64, 64), (90, 40, 10)))
    accelerator = make_accelerator(mixed_precision="bf16")
    log_validation(
        **frozen,
        controlnet=controlnet,
        config=config,
        settings=SETTINGS,
        accelerator=accelerator,
        weight_dtype=half,
        step=3,
        pairs=[pair],
        condition=None,
    )
    assert controlnet.dtype == torch.float32
    assert (tmp_path / "out" / "validation" / "step-3.png").is_file()
