"""`controlkit data build` end to end: synthetic faces with ground truth, real photos with dlib, training."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
from matplotlib import cbook
from PIL import Image, ImageOps
from skimage import data as skdata

from controlkit.cli import main
from controlkit.data.synthetic_faces import describe, face_seed, render_synthetic_face
from controlkit.metadata import read_metadata


@pytest.fixture(scope="module")
def synthetic_ds(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic") / "faces"
    argv = ["data", "build", "--source", "synthetic-faces", "--landmarks", "ground-truth", "--limit", "6"]
    argv += ["--resolution", "64", "--seed", "3", "--num-workers", "2", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    return out


def test_synthetic_faces_with_ground_truth_landmarks(synthetic_ds):
    ds = datasets.load_from_disk(str(synthetic_ds))
    assert len(ds) == 6
    for i, row in enumerate(ds):
        face = render_synthetic_face(face_seed(3, i), size=64)
        assert row["image"].size == row["conditioning_image"].size == (64, 64)
        np.testing.assert_allclose(np.asarray(row["annotation"]), face.landmarks[None], atol=1e-4)
        assert np.array_equal(np.asarray(row["image"]), np.asarray(face.image))
        assert row["text"] == describe(face.attributes)
    assert read_metadata(synthetic_ds)["condition"] == "face-landmarks"


def test_the_built_dataset_trains_without_column_flags(synthetic_ds, small_model_dir, tmp_path):
    from train_helpers import run_training, train_args

    out = tmp_path / "controlnet"
    records = run_training(train_args(small_model_dir, synthetic_ds, out, "--max_train_steps=2"))
    assert [r["step"] for r in records] == [1, 2] and all(np.isfinite(r["loss"]) for r in records)
    assert read_metadata(out)["condition"] == "face-landmarks"


def test_real_photos_with_the_dlib_detector(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    astronaut = Image.fromarray(skdata.astronaut())
    astronaut.save(photos / "astronaut.png")
    ImageOps.mirror(astronaut).save(photos / "astronaut-mirrored.png")
    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as hopper:
        hopper.save(photos / "hopper.jpg", quality=90)
    Image.new("RGB", (200, 200), "gray").save(photos / "wall.png")
    out = tmp_path / "faces"
    argv = [
        "data",
        "build",
        "--source",
        str(photos),
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0
    ds = datasets.load_from_disk(str(out))
    assert sorted(ds["source"]) == ["astronaut-mirrored.png", "astronaut.png", "hopper.jpg"]
    for row in ds:
        faces = np.asarray(row["annotation"])
        assert faces.shape == (1, 68, 2)
        eyes_y, nose_y, mouth_y = faces[0, 36:48, 1].mean(), faces[0, 30, 1], faces[0, 48:68, 1].mean()
        assert eyes_y < nose_y < mouth_y
    card = (out / "README.md").read_text()
    assert "dlib" in card and "wall.png" in card


def test_bad_flags_are_one_line_errors(tmp_path, capsys):
    argv = [
        "data",
        "build",
        "--source",
        str(tmp_path),
        "--landmarks",
        "ground-truth",
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "ground-truth needs --source synthetic-faces" in err and len(err.splitlines()) == 1
    assert main(["data", "build", "--source", "synthetic-faces", "--out", str(tmp_path / "o")]) == 2
    assert "--limit" in capsys.readouterr().err


def test_renamed_columns_train_without_column_flags(small_model_dir, tmp_path):
    from train_helpers import run_training, train_args

    data = tmp_path / "walkthrough-names"
    argv = ["data", "build", "--source", "synthetic-faces", "--landmarks", "ground-truth", "--limit", "2"]
    argv += ["--resolution", "64", "--out", str(data), "--no-progress"]
    argv += ["--rename-columns", "conditioning_image=spiga_seg,text=image_caption"]
    assert main(argv) == 0
    assert set(datasets.load_from_disk(str(data)).column_names) >= {"spiga_seg", "image_caption"}
    records = run_training(train_args(small_model_dir, data, tmp_path / "controlnet", "--max_train_steps=1"))
    assert [r["step"] for r in records] == [1]
