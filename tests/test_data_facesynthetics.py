"""`--source facesynthetics:DIR`: Microsoft's FaceSynthetics read as it ships, its landmarks as ground truth.

The folder is made here in exactly that layout ({id}.png, {id}_ldmks.txt with 70 lines of "x y": the 68
iBUG points then the two pupils, {id}_seg.png) from the project's synthetic faces, whose landmarks are exact.
"""

from __future__ import annotations

import os
import signal

import datasets
import numpy as np
import pytest
from PIL import Image

from controlkit import conditions
from controlkit.cli import main
from controlkit.data.build import BuildConfig, build_dataset
from controlkit.data.facesynthetics_source import FaceSyntheticsItem, read_landmarks
from controlkit.data.inputs import InputError
from controlkit.data.synthetic_faces import face_seed, render_synthetic_face
from controlkit.metadata import DatasetInfo
from controlkit.stopping import Stopped

SIZE = 96
GOOD = 3  # samples 0..2 are whole; 3 has no landmark file, 4 a malformed one


def write_sample(folder, index: int) -> np.ndarray:
    """One FaceSynthetics sample drawn from a synthetic face; returns the 70 points written."""
    face = render_synthetic_face(face_seed(7, index), size=SIZE)
    stem = f"{index:06d}"
    face.image.convert("RGB").save(folder / f"{stem}.png")
    pupils = [face.landmarks[36:42].mean(0), face.landmarks[42:48].mean(0)]
    points = np.concatenate([face.landmarks, pupils]).astype(np.float64)
    (folder / f"{stem}_ldmks.txt").write_text("".join(f"{x:.6f} {y:.6f}\n" for x, y in points))
    segmentation = np.zeros((SIZE, SIZE), np.uint8)
    segmentation[SIZE // 4 : -SIZE // 4, SIZE // 4 : -SIZE // 4] = 1  # SKIN
    Image.fromarray(segmentation).save(folder / f"{stem}_seg.png")
    return points


@pytest.fixture(scope="module")
def facesynthetics(tmp_path_factory):
    folder = tmp_path_factory.mktemp("facesynthetics") / "dataset_100"
    folder.mkdir()
    points = [write_sample(folder, i) for i in range(5)]
    (folder / "000003_ldmks.txt").unlink()
    lines = (folder / "000004_ldmks.txt").read_text().splitlines()
    (folder / "000004_ldmks.txt").write_text("\n".join(lines[:69]) + "\n")
    return folder, points


def build(folder, out, **kwargs) -> tuple:
    config = BuildConfig(
        source=f"facesynthetics:{folder}", out=str(out), landmarks="ground-truth", progress=False, **kwargs
    )
    report = build_dataset(config)
    return report, datasets.load_from_disk(str(out))


def test_the_stored_landmarks_are_the_files_and_the_conditioning_is_drawn_from_them(facesynthetics, tmp_path):
    folder, points = facesynthetics
    report, ds = build(folder, tmp_path / "ds")
    condition = conditions.get("face-landmarks")
    assert ds["source"] == [f"{i:06d}.png" for i in range(GOOD)]  # the _seg.png pictures are no inputs
    for i, row in enumerate(ds):
        annotation = np.asarray(row["annotation"], np.float32)
        assert annotation.shape == (1, 68, 2)  # the pupils are not part of the iBUG-68 annotation
        assert np.array_equal(annotation[0], points[i][:68].astype(np.float32))
        drawn = condition.render(points[i][None, :68], size=(SIZE, SIZE))
        assert np.array_equal(np.asarray(row["conditioning_image"]), np.asarray(drawn))
        with Image.open(folder / f"{i:06d}.png") as original:
            assert np.array_equal(np.asarray(row["image"]), np.asarray(original.convert("RGB")))
    reasons = {s["source"]: s["reason"] for s in report.skipped}
    assert reasons == {
        "000003.png": "no landmark file 000003_ldmks.txt",
        "000004.png": "landmark file 000004_ldmks.txt has 69 lines, not 70 lines of 'x y'",
    }
    card = (tmp_path / "ds" / "README.md").read_text()
    assert "FaceSynthetics" in card and "000004_ldmks.txt has 69 lines" in card
    assert "ground-truth annotations (ibug-68)" in card
    assert DatasetInfo.read(tmp_path / "ds").condition == "face-landmarks"


def test_landmarks_move_with_the_resize_in_worker_processes(facesynthetics, tmp_path):
    folder, points = facesynthetics
    report, ds = build(folder, tmp_path / "ds", resolution=64, num_workers=2, limit=4)
    condition = conditions.get("face-landmarks")
    assert report.inputs == 4 and len(ds) == GOOD
    for i, row in enumerate(ds):
        moved = condition.resize_center_crop(points[i][None, :68], (SIZE, SIZE), (64, 64))
        np.testing.assert_allclose(np.asarray(row["annotation"]), moved, atol=1e-4)
        assert row["image"].size == (64, 64)
        assert np.array_equal(
            np.asarray(row["conditioning_image"]), np.asarray(condition.render(moved, (64, 64)))
        )


def test_an_interrupted_build_resumes_where_it_stopped(facesynthetics, tmp_path, monkeypatch):
    folder, _ = facesynthetics
    loaded = []
    load = FaceSyntheticsItem.load

    def interrupted(self, resolution):
        loaded.append(self.key)
        if len(loaded) == 3:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: the input in hand is finished, then it stops
        return load(self, resolution)

    monkeypatch.setattr(FaceSyntheticsItem, "load", interrupted)
    with pytest.raises(Stopped, match="3 of 5 inputs done"):
        build(folder, tmp_path / "ds", shard_size=2)
    assert not (tmp_path / "ds").exists()
    monkeypatch.setattr(FaceSyntheticsItem, "load", load)
    report, ds = build(folder, tmp_path / "ds", shard_size=2, resume=True)
    assert report.resumed == 3 and report.processed_this_run == 2
    assert ds["source"] == [f"{i:06d}.png" for i in range(GOOD)] and report.inputs == 5


def test_a_malformed_landmark_file_says_what_is_wrong(tmp_path):
    path = tmp_path / "000000_ldmks.txt"
    path.write_text("1 2\n" * 69 + "3 x\n")
    with pytest.raises(InputError, match="line 70 is not 'x y': '3 x'"):
        read_landmarks(path)
    path.write_text("1 2\n" * 69 + "3 nan\n")
    with pytest.raises(InputError, match="line 70"):
        read_landmarks(path)
    path.write_text("1 2 3\n" * 70)
    with pytest.raises(InputError, match="line 1 is not 'x y'"):
        read_landmarks(path)


def test_bad_sources_are_one_line_errors(tmp_path, capsys):
    argv = [
        "data",
        "build",
        "--source",
        f"facesynthetics:{tmp_path / 'missing'}",
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "no such folder" in err and len(err.splitlines()) == 1
    argv = ["data", "build", "--source", f"facesynthetics:{tmp_path}", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert "no {id}.png images" in capsys.readouterr().err
