"""Captioners (template, column:NAME, BLIP from a local folder) and dataset sources (saved, parquet)."""

from __future__ import annotations

import datasets
import pytest
import torch
from PIL import Image

from controlkit.data.build import BuildConfig, build_dataset
from controlkit.data.captioners import make_captioner
from controlkit.errors import UserError
from data_conditions import square_picture

BLIP_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "a", "photo", "of", "square"]


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory):
    """A random BLIP with a 10-word vocabulary whose decoder always says "square", saved as safetensors."""
    from transformers import (
        BertTokenizerFast,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    folder = tmp_path_factory.mktemp("blip")
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(BLIP_WORDS)}, bos_token="[DEC]")
    image_processor = BlipImageProcessor(size={"height": 32, "width": 32})
    BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    small = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)
    ids = dict(bos_token_id=5, pad_token_id=0, sep_token_id=3, eos_token_id=3)
    config = BlipConfig(
        text_config=dict(vocab_size=len(BLIP_WORDS), max_position_embeddings=64, **small, **ids),
        vision_config=dict(image_size=32, patch_size=16, **small),
        projection_dim=32,
        image_text_hidden_size=32,
    )
    model = BlipForConditionalGeneration(config)
    with torch.no_grad():
        bias = model.text_decoder.cls.predictions.decoder.bias
        bias.fill_(-100.0)
        bias[BLIP_WORDS.index("square")] = 100.0
    model.save_pretrained(folder)
    return folder


def test_template_and_prefix_suffix():
    captioner = make_captioner("template", prefix="ck, ", suffix=", sharp")
    assert captioner.caption([None, None], [{}, {}]) == ["ck, a photo, sharp"] * 2
    assert make_captioner("template:a cat").caption([None], [{}]) == ["a cat"]


def test_template_keeps_an_inputs_own_caption_and_frames_it():
    captioner = make_captioner("template", prefix="ck, ", default_sentence="a photo of a face")
    texts = captioner.caption([None, None], [{}, {}], ["a smiling man", None])
    assert texts == ["ck, a smiling man", "ck, a photo of a face"]


def test_bad_captioner_specs_are_user_errors():
    with pytest.raises(UserError, match="unknown captioner"):
        make_captioner("gpt")
    with pytest.raises(UserError, match="column:NAME"):
        make_captioner("column:")


def test_blip_from_a_local_folder_captions_in_batches(tiny_blip):
    captioner = make_captioner(f"blip:{tiny_blip}", prefix="x: ", batch_size=2)
    texts = captioner.caption([Image.new("RGB", (40, 30), c) for c in ("red", "green", "blue")], [{}] * 3)
    assert len(texts) == 3
    for text in texts:
        words = text.removeprefix("x: ").split()
        assert text.startswith("x: ") and words and set(words) == {"square"}


@pytest.fixture
def saved_dataset(tmp_path):
    """A `datasets` folder with an image column named `photo` and a caption column."""
    pictures = [square_picture((24, 24), (2 + i, 3, 9 + i, 10)) for i in range(3)] + [
        square_picture((24, 24), None)
    ]
    ds = datasets.Dataset.from_dict(
        {"photo": pictures, "caption": ["one", "two", "three", "none"]},
        features=datasets.Features({"photo": datasets.Image(), "caption": datasets.Value("string")}),
    )
    ds.save_to_disk(str(tmp_path / "saved"))
    ds.to_parquet(str(tmp_path / "parquet" / "train.parquet"))
    return tmp_path


@pytest.mark.parametrize("kind", ["saved", "parquet"])
def test_dataset_source_with_column_captions(saved_dataset, kind):
    config = BuildConfig(
        source=str(saved_dataset / kind),
        out=str(saved_dataset / f"out-{kind}"),
        condition="white-square",
        image_column="photo",
        captioner="column:caption",
        progress=False,
    )
    report = build_dataset(config)
    out = datasets.load_from_disk(config.out)
    assert out["text"] == ["one", "two", "three"]
    assert out["source"][0].endswith(":train[0]") and report.skipped[0]["source"].endswith(":train[3]")
    assert out[1]["annotation"] == [[[3.0, 3.0], [10.0, 10.0]]]


def test_blip_captioner_in_a_build(saved_dataset, tiny_blip):
    config = BuildConfig(
        source=str(saved_dataset / "saved"),
        out=str(saved_dataset / "out-blip"),
        condition="white-square",
        image_column="photo",
        captioner=f"blip:{tiny_blip}",
        caption_batch_size=2,
        progress=False,
    )
    build_dataset(config)
    texts = datasets.load_from_disk(config.out)["text"]
    assert len(texts) == 3 and all(set(t.split()) == {"square"} for t in texts)
    assert "BLIP" in (saved_dataset / "out-blip" / "README.md").read_text()


def test_missing_columns_are_user_errors(saved_dataset):
    base = dict(source=str(saved_dataset / "saved"), out=str(saved_dataset / "o"), condition="white-square")
    with pytest.raises(UserError, match="no column 'image'"):
        build_dataset(BuildConfig(**base, progress=False))
    with pytest.raises(UserError, match="no column 'title'"):
        build_dataset(BuildConfig(**base, image_column="photo", captioner="column:title", progress=False))
