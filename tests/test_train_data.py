"""Training data: every source, column names, undecodable images, transforms, and model loading rules."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from controlkit.errors import UserError
from controlkit.train.config import TrainConfig
from controlkit.train.data import (
    PairedImages,
    TrainingData,
    load_training_data,
    resize_center_crop,
    to_tensor,
)
from train_helpers import make_dataset, make_image_folder, random_images

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def config_for(*argv: str) -> TrainConfig:
    return TrainConfig.from_args(
        ["--pretrained_model_name_or_path=base", "--resolution=64", "--seed=0", *argv]
    )


def load(*argv: str, **kwargs) -> TrainingData:
    return load_training_data(config_for(*argv), seed=0, **kwargs)


def test_save_to_disk_folder_takes_column_names_from_its_controlkit_json(tmp_path):
    columns = ("image", "spiga_seg", "image_caption")
    meta = {
        "condition": "face-landmarks",
        "conditioning_image_column": "spiga_seg",
        "caption_column": "image_caption",
    }
    path = make_dataset(tmp_path / "ds", n=4, columns=columns, metadata=meta)
    data = load(f"--dataset_name={path}")
    settings = data.settings
    assert (settings.conditioning_image_column, settings.caption_column) == ("spiga_seg", "image_caption")
    assert data.info.condition == "face-landmarks" and len(data.dataset) == 4
    assert data.fingerprint == load(f"--dataset_name={path}").fingerprint


def test_a_missing_column_lists_the_columns_that_exist(tmp_path):
    path = make_dataset(tmp_path / "ds", n=2)
    with pytest.raises(UserError, match="'spiga_seg'.*its columns are: image, conditioning_image, text"):
        load(f"--dataset_name={path}", "--conditioning_image_column=spiga_seg")


def test_parquet_files_load(tmp_path):
    from datasets import load_from_disk

    path = make_dataset(tmp_path / "ds", n=3)
    load_from_disk(str(path)).to_parquet(str(tmp_path / "pq" / "train.parquet"))
    data = load(f"--dataset_name={tmp_path / 'pq'}")
    assert len(data.dataset) == 3 and isinstance(data.dataset[0]["image"], Image.Image)


def test_image_folder_with_conditioning_file_names(tmp_path):
    folder = make_image_folder(tmp_path / "faces", n=3)
    data = load(f"--train_data_dir={folder}")
    row = data.dataset[1]
    assert row["text"] == "face 1" and row["conditioning_image"].size == (64, 64)


def test_image_folder_path_leaving_the_folder_is_refused(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "outside.png")
    line = {"file_name": "0.png", "conditioning_image_file_name": "../outside.png", "text": "x"}
    folder = make_image_folder(tmp_path / "faces", n=1, extra_line=line)
    with pytest.raises(UserError, match="outside the dataset folder"):
        load(f"--train_data_dir={folder}")


def test_undecodable_images_are_skipped_and_named(tmp_path, capsys):
    folder = make_image_folder(tmp_path / "faces", n=4)
    (folder / "cond" / "2.png").write_bytes(b"not a png at all")
    argv = (f"--train_data_dir={folder}", "--max_unusable_rows_fraction=0.25")
    data = load(*argv, cache_root=tmp_path / "cache")
    assert data.skipped == [2] and len(data.dataset) == 3
    assert [row["text"] for row in data.dataset] == ["face 0", "face 1", "face 3"]
    assert f"skipped 1 of 4 rows of {folder}: 1 with an image that fails to decode (cond/2.png)" in (
        capsys.readouterr().err
    )
    assert list((tmp_path / "cache" / "decode-checks").glob("*.json"))
    assert load(*argv, cache_root=tmp_path / "cache").skipped == [2]  # the check remembered
    assert "(cond/2.png)" in capsys.readouterr().err


def test_missing_files_are_named_and_too_many_stop_before_training(tmp_path, capsys):
    folder = make_image_folder(tmp_path / "faces", n=16)
    for i in range(1, 16):
        (folder / "cond" / f"{i}.png").unlink()
    with pytest.raises(
        UserError,
        match=f"cannot use 15 of 16 rows of {folder}: 15 with a missing file \\(cond/1.png, cond/2.png, "
        "cond/3.png, ...\\); that is 94% of the rows, more than --max_unusable_rows_fraction 0.1 allows",
    ):
        load(f"--train_data_dir={folder}")
    data = load(f"--train_data_dir={folder}", "--max_unusable_rows_fraction=1")
    assert data.skipped == list(range(1, 16)) and data.dataset["text"] == ["face 0"]
    assert "skipped 15 of 16 rows" in capsys.readouterr().err


def test_a_row_without_a_caption_is_named_by_its_line_before_training(tmp_path):
    folder = make_image_folder(tmp_path / "faces", n=4)
    lines = (folder / "metadata.jsonl").read_text().splitlines()
    record = json.loads(lines[2])
    del record["text"]
    lines[2] = json.dumps(record)
    (folder / "metadata.jsonl").write_text("\n".join([lines[0], "", *lines[1:]]) + "\n")  # a blank line 2
    with pytest.raises(
        UserError,
        match=f"1 row\\(s\\) have no caption in 'text' \\({folder / 'metadata.jsonl'} line 4: None\\)",
    ):
        load(f"--train_data_dir={folder}")
    path = make_dataset(tmp_path / "ds", n=3)
    from datasets import load_from_disk

    rows = load_from_disk(str(path)).map(
        lambda row, i: {"text": None if i == 1 else row["text"]}, with_indices=True
    )
    rows.save_to_disk(str(tmp_path / "ds2"))
    with pytest.raises(UserError, match="have no caption in 'text' \\(.*ds2 row 1: None\\)"):
        load(f"--dataset_name={tmp_path / 'ds2'}")


def test_max_train_samples_subsamples_reproducibly(tmp_path):
    path = make_dataset(tmp_path / "ds", n=8)
    first = load(f"--dataset_name={path}", "--max_train_samples=3")
    again = load(f"--dataset_name={path}", "--max_train_samples=3")
    assert len(first.dataset) == 3 and first.dataset["text"] == again.dataset["text"]


def test_transforms_resize_crop_and_ranges(tmp_path):
    wide = Image.new("RGB", (200, 100), (255, 0, 0))
    wide.paste((0, 0, 255), (0, 0, 20, 100))  # a blue band at the left edge is cropped away
    cropped = resize_center_crop(wide, 64)
    assert cropped.size == (64, 64) and cropped.getpixel((0, 32)) == (255, 0, 0)
    path = make_dataset(tmp_path / "ds", n=2)
    data = load(f"--dataset_name={path}")

    class Tok:
        model_max_length = 77

        def __call__(self, captions, **kwargs):
            return type("T", (), {"input_ids": torch.zeros(len(captions), 77, dtype=torch.long)})()

    item = PairedImages(data, Tok())[0]
    assert item["pixel_values"].shape == (3, 64, 64) and item["pixel_values"].min() >= -1
    assert item["pixel_values"].min() < -0.9 and item["pixel_values"].max() > 0.9
    cond = item["conditioning_pixel_values"]
    assert cond.min() >= 0 and cond.max() <= 1 and cond.max() > 0.9
    assert torch.equal(to_tensor(random_images(1, seed=2)[0]), cond)


def test_pickle_only_models_are_refused(tmp_path, small_model_dir):
    from controlkit.models.loading import load_base_components, load_controlnet

    folder = tmp_path / "pickled"
    (folder / "unet").mkdir(parents=True)
    (folder / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"\x80")
    with pytest.raises(UserError, match="only pickle weights.*--allow_pickle"):
        load_base_components(str(folder))
    with pytest.raises(UserError, match="not found"):
        load_controlnet(str(tmp_path / "nothing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="cannot load the base model.*no tokenizer/, text_encoder/, vae/"):
        load_base_components(str(tmp_path / "empty"))
    assert load_base_components(str(small_model_dir)).unet.config.cross_attention_dim == 32


def test_pickle_weights_load_only_when_allowed(tmp_path, small_model_dir):
    from diffusers import StableDiffusionPipeline

    from controlkit.models.loading import load_base_components

    StableDiffusionPipeline.from_pretrained(small_model_dir).save_pretrained(
        tmp_path, safe_serialization=False
    )
    with pytest.raises(UserError, match="only pickle weights.*unet/diffusion_pytorch_model.bin"):
        load_base_components(str(tmp_path))
    assert load_base_components(str(tmp_path), allow_pickle=True).vae.config.latent_channels == 4


def test_imagefolder_metadata_must_name_both_files(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "metadata.jsonl").write_text(json.dumps({"file_name": "a.png", "text": "x"}) + "\n")
    with pytest.raises(UserError, match="conditioning_image_file_name"):
        load(f"--train_data_dir={folder}")


def test_an_unreachable_hub_dataset_is_one_line(tmp_path):
    with pytest.raises(UserError, match="cannot load dataset someone/no-such-dataset"):
        load("--dataset_name=someone/no-such-dataset", f"--cache_dir={tmp_path}")
    with pytest.raises(UserError, match="dataset not found"):
        load(f"--dataset_name={tmp_path / 'missing'}")


def test_a_16_bit_grayscale_picture_is_scaled_not_washed_out():
    grey = Image.fromarray(np.full((64, 64), 32768, np.uint16))
    assert grey.mode.startswith("I")
    assert resize_center_crop(grey, 64).getpixel((5, 5)) == (128, 128, 128)
