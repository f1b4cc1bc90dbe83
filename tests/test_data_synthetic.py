"""`controlkit data build` end to end: synthetic faces with ground truth, real photos with dlib, training."""

from __future__ import annotations

import pickle
import sys

import datasets
import numpy as np
import pytest
from matplotlib import cbook
from PIL import Image, ImageOps
from skimage import data as skdata

from controlkit.cli import main
from controlkit.data.build import BuildConfig, build_dataset
from controlkit.data.pairs import PairMaker, PairSettings
from controlkit.data.synthetic_faces import describe, face_seed, render_synthetic_face
from controlkit.data.synthetic_source import SyntheticFaceItem, SyntheticSource
from controlkit.errors import UserError
from controlkit.metadata import ControlNetInfo, DatasetInfo


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
    assert DatasetInfo.read(synthetic_ds).condition == "face-landmarks"


def test_the_built_dataset_trains_without_column_flags(synthetic_ds, small_model_dir, tmp_path):
    from train_helpers import run_training, train_args

    out = tmp_path / "controlnet"
    records = run_training(train_args(small_model_dir, synthetic_ds, out, "--max_train_steps=2"))
    assert [r["step"] for r in records] == [1, 2] and all(np.isfinite(r["loss"]) for r in records)
    assert ControlNetInfo.read(out).condition == "face-landmarks"


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


def test_ground_truth_of_another_format_than_the_condition_is_one_line_error(tmp_path):
    config = BuildConfig(
        source="synthetic-faces",
        out=str(tmp_path / "o"),
        condition="canny",
        landmarks="ground-truth",
        limit=2,
    )
    with pytest.raises(
        UserError, match="synthetic-faces has ibug-68 annotations, the condition canny needs edge-map"
    ):
        build_dataset(config)
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.partial").exists()


def test_a_ground_truth_build_needs_no_dlib_and_keeps_the_faces_own_captions(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)  # as if dlib were not installed
    out = tmp_path / "faces"
    config = BuildConfig(
        source="synthetic-faces",
        out=str(out),
        captioner="template:a face",
        landmarks="ground-truth",
        limit=2,
        resolution=64,
        seed=5,
        progress=False,
    )
    build_dataset(config)
    texts = datasets.load_from_disk(str(out))["text"]
    assert texts == [describe(render_synthetic_face(face_seed(5, i), 64).attributes) for i in range(2)]
    assert "ground-truth annotations (ibug-68)" in (out / "README.md").read_text()
    assert DatasetInfo.read(out).resolution == 64


def test_a_synthetic_input_travels_pickled_and_loads_its_own_truth_and_caption():
    item = pickle.loads(pickle.dumps(next(SyntheticSource(1, seed=5).items())))
    loaded = item.load(64)
    face = render_synthetic_face(face_seed(5, 0), 64)
    assert loaded.image.size == (64, 64) and loaded.data is None
    assert np.array_equal(loaded.ground_truth, face.landmarks[None])
    assert loaded.caption == describe(face.attributes)


def test_ground_truth_moves_with_an_input_resized_to_the_build_resolution():
    class BigFace(SyntheticFaceItem):
        def load(self, resolution):
            return super().load(2 * resolution)

    seed = face_seed(5, 0)
    maker = PairMaker(PairSettings("face-landmarks", resolution=64, landmarks="ground-truth"))
    result = maker(BigFace(key="face:0", source="big", seed=seed))
    assert result.reason is None
    expected = render_synthetic_face(seed, 64).landmarks[None]
    np.testing.assert_allclose(np.asarray(result.annotation), expected, atol=0.5)


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
