"""`controlkit data build` on image folders: sources, skipping, keep-empty, limit, resize, renames, card."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest
from PIL import Image

from controlkit.data.build import BuildConfig, build_dataset
from controlkit.data.pairs import NOTHING_FOUND
from controlkit.data.sources import FolderSource
from controlkit.errors import UserError
from controlkit.metadata import DatasetInfo
from data_conditions import WhiteSquare, square_picture


@pytest.fixture
def photos(tmp_path):
    """Three pictures with a square (png, jpg in a sub-folder, webp), one without, one corrupt file."""
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    square_picture((48, 40), (10, 8, 19, 17)).save(root / "a.png")
    square_picture((40, 48), (4, 20, 13, 29)).save(root / "sub" / "b.jpg", quality=95)
    square_picture((32, 32), (0, 0, 7, 7)).save(root / "sub" / "c.webp", lossless=True)
    square_picture((32, 32), None).save(root / "empty.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    return root


def build(photos, tmp_path, **kwargs):
    config = BuildConfig(
        source=str(photos), out=str(tmp_path / "ds"), condition="white-square", progress=False, **kwargs
    )
    return build_dataset(config), datasets.load_from_disk(str(tmp_path / "ds"))


def test_folder_source_is_recursive_and_keeps_image_extensions(tmp_path):
    root = tmp_path / "src"
    for name in ("a.png", "sub/b.JPG", "sub/deeper/c.webp", "d.bmp", "e.jpeg", "notes.txt", ".cache/f.png"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    keys = [item.key for item in FolderSource(root).items()]
    assert keys == ["a.png", "d.bmp", "e.jpeg", "sub/b.JPG", "sub/deeper/c.webp"]


def test_build_pairs_skips_bad_inputs_and_writes_the_contract(photos, tmp_path):
    report, ds = build(photos, tmp_path, num_workers=2, shard_size=2)
    out = tmp_path / "ds"
    assert ds.column_names == ["image", "conditioning_image", "text", "annotation", "source"]
    assert sorted(ds["source"]) == ["a.png", "sub/b.jpg", "sub/c.webp"]
    assert (report.inputs, report.rows, report.kept_empty) == (5, 3, 0)
    reasons = {s["source"]: s["reason"] for s in report.skipped}
    assert reasons["empty.png"] == NOTHING_FOUND
    assert reasons["broken.jpg"].startswith("cannot decode image")
    # images are stored as they came: the very same bytes
    raw = ds.cast_column("image", datasets.Image(decode=False))
    for row in raw:
        assert row["image"]["bytes"] == (photos / row["source"]).read_bytes()
    row = ds[ds["source"].index("a.png")]
    assert row["annotation"] == [[[10.0, 8.0], [19.0, 17.0]]]
    conditioning = np.asarray(row["conditioning_image"])
    assert conditioning.shape == (40, 48, 3)
    assert tuple(conditioning[8, 10]) == (0, 255, 0) and conditioning[12:14, 12:16].sum() == 0
    assert row["text"] == "a photo"
    meta = json.loads((out / "controlkit.json").read_text())
    assert meta["condition"] == "white-square" and meta["conditioning_image_column"] == "conditioning_image"
    assert DatasetInfo.read(out) == DatasetInfo(condition="white-square", resolution=None)
    card = (out / "README.md").read_text()
    assert "broken.jpg" in card and "empty.png" in card and NOTHING_FOUND in card and "white-square" in card
    with Image.open(out / "preview.png") as preview:
        assert preview.width > 300 and preview.height > 3 * 100
    assert not (tmp_path / "ds.partial").exists()


def test_keep_empty_keeps_the_photo_with_a_black_conditioning_image(photos, tmp_path):
    report, ds = build(photos, tmp_path, keep_empty=True)
    assert (report.rows, report.kept_empty) == (4, 1)
    row = ds[ds["source"].index("empty.png")]
    assert row["annotation"] is None
    assert np.asarray(row["conditioning_image"]).max() == 0


def test_limit_takes_the_first_inputs_in_order(photos, tmp_path):
    report, ds = build(photos, tmp_path, limit=2)
    assert report.inputs == 2
    assert ds["source"] == ["a.png"]  # sorted: a.png, broken.jpg
    assert [s["source"] for s in report.skipped] == ["broken.jpg"]


def test_resolution_crops_and_the_annotation_follows(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    # 96 x 64 -> shorter side 32 (scale 1/2) -> 48 x 32 -> centre crop 32 x 32 drops 8 px each side
    square_picture((96, 64), (40, 20, 59, 39)).save(root / "wide.png")
    _, ds = build(root, tmp_path, resolution=32)
    row = ds[0]
    assert row["image"].size == row["conditioning_image"].size == (32, 32)
    (x0, y0), (x1, y1) = np.asarray(row["annotation"][0])
    assert abs(x0 - 12) <= 1 and abs(y0 - 10) <= 1 and abs(x1 - 21) <= 1 and abs(y1 - 19) <= 1
    assert DatasetInfo.read(tmp_path / "ds").resolution == 32  # recorded, so `train` can use it


def test_the_template_sentence_is_the_condition_default_caption(photos, tmp_path, monkeypatch):
    monkeypatch.setattr(WhiteSquare, "default_caption", "a picture with a white square")
    _, ds = build(photos, tmp_path)
    assert set(ds["text"]) == {"a picture with a white square"}
    assert "a picture with a white square" in (tmp_path / "ds" / "README.md").read_text()


def test_rename_columns_and_caption_prefix_are_recorded(photos, tmp_path):
    renames = {"conditioning_image": "spiga_seg", "text": "image_caption"}
    _, ds = build(photos, tmp_path, rename_columns=renames, captioner="template:a square", caption_suffix=".")
    assert set(ds.column_names) == {"image", "spiga_seg", "image_caption", "annotation", "source"}
    assert set(ds["image_caption"]) == {"a square."}
    meta = json.loads((tmp_path / "ds" / "controlkit.json").read_text())
    assert meta["conditioning_image_column"] == "spiga_seg" and meta["caption_column"] == "image_caption"
    assert "`spiga_seg`" in (tmp_path / "ds" / "README.md").read_text()


def test_push_to_hub_without_token_fails_before_any_work(photos, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    with pytest.raises(UserError, match="token"):
        build(photos, tmp_path, push_to_hub="someone/faces")
    assert not (tmp_path / "ds").exists() and not (tmp_path / "ds.partial").exists()


def test_refuses_to_overwrite_or_to_resume_with_other_settings(photos, tmp_path):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "mine.txt").write_text("keep me")
    with pytest.raises(UserError, match="not empty"):
        build(photos, tmp_path)
    (tmp_path / "ds" / "mine.txt").unlink()
    (tmp_path / "ds.partial" / "shard-00000").mkdir(parents=True)  # a finished shard: work to resume
    (tmp_path / "ds.partial" / "shard-00000" / "manifest.json").write_text("[]")
    (tmp_path / "ds.partial" / "build.json").write_text(json.dumps({"source": "elsewhere"}))
    with pytest.raises(UserError, match="--resume"):
        build(photos, tmp_path)
    with pytest.raises(UserError, match="different settings"):
        build(photos, tmp_path, resume=True)


def test_every_input_skipped_is_one_clear_error(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    square_picture((16, 16), None).save(root / "plain.png")
    with pytest.raises(UserError, match="no rows"):
        build(root, tmp_path)


def test_a_broken_setup_stops_the_build_instead_of_skipping_every_input(photos, tmp_path, monkeypatch):
    def annotate(self, image):
        raise UserError("the detector's weights were not found")

    monkeypatch.setattr(WhiteSquare, "annotate", annotate)
    with pytest.raises(UserError, match="weights were not found"):
        build(photos, tmp_path)


def test_a_caption_batch_size_below_one_is_one_line_error(photos, tmp_path):
    with pytest.raises(UserError, match="caption-batch-size"):
        build(photos, tmp_path, caption_batch_size=0)


def test_a_missing_source_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="no such folder"):
        build_dataset(BuildConfig(source=str(tmp_path / "nowhere"), out=str(tmp_path / "o"), progress=False))


def test_exif_rotated_photo_is_annotated_as_datasets_shows_it(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: shown rotated 90 degrees clockwise
    square_picture((40, 24), (2, 2, 9, 9)).save(root / "phone.jpg", exif=exif, quality=95)
    _, ds = build(root, tmp_path)
    shown = ds[0]["image"]
    assert shown.size == (24, 40)  # datasets applies the EXIF orientation when it decodes
    assert ds[0]["annotation"] == WhiteSquare().annotate(shown).tolist()


def test_push_to_hub_publishes_the_dataset_and_its_card(photos, tmp_path, monkeypatch):
    from huggingface_hub import HfApi

    calls = []
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    monkeypatch.setattr(
        datasets.Dataset, "push_to_hub", lambda self, repo, **kw: calls.append(("data", repo))
    )
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kw: calls.append(("files", kw["repo_id"], kw)))
    report, _ = build(photos, tmp_path, push_to_hub="me/squares")
    assert calls[0] == ("data", "me/squares") and calls[1][1] == "me/squares"
    assert set(calls[1][2]["allow_patterns"]) == {"README.md", "preview.png", "controlkit.json"}
    assert calls[1][2]["repo_type"] == "dataset" and report.hub_url.endswith("datasets/me/squares")
