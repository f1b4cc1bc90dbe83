"""face-landmarks: dlib on real photos, the walkthrough's drawing, flip, score, records and resizing."""

from __future__ import annotations

import math
import subprocess
import sys

import matplotlib.cbook
import numpy as np
import pytest
import skimage.data
from PIL import Image, ImageOps

from controlkit import conditions
from controlkit.conditions.face_landmarks import FaceLandmarks, flip_landmarks
from controlkit.conditions.geometry import resize_center_crop_image
from controlkit.conditions.landmarks68 import MIRROR
from controlkit.errors import UserError

LIME, YELLOW, ORANGE = (0, 255, 0), (255, 255, 0), (255, 165, 0)
MAGENTA, CYAN, BLUE = (255, 0, 255), (0, 255, 255), (0, 0, 255)


def _arc(cx, cy, rx, ry, start, stop, n):
    t = np.linspace(start, stop, n)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def template_face(dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
    """A hand-made 68-point face on a 128 px canvas, so the drawing can be checked at known pixels."""
    jaw = _arc(64, 60, 44, 50, math.pi, 0, 17)  # U from (20, 60) down to (64, 110) up to (108, 60)
    left_brow = np.stack([np.linspace(30, 54, 5), np.full(5, 35)], 1)
    right_brow = np.stack([np.linspace(74, 98, 5), np.full(5, 35)], 1)
    bridge = np.stack([np.full(4, 64), np.linspace(40, 58, 4)], 1)
    base = np.stack([np.linspace(56, 72, 5), np.full(5, 66)], 1)
    left_eye = _arc(42, 48, 11, 6, math.pi, -math.pi + math.pi / 3, 6)
    right_eye = _arc(86, 48, 11, 6, math.pi, -math.pi + math.pi / 3, 6)
    outer = _arc(64, 88, 20, 12, math.pi, -math.pi + math.pi / 6, 12)
    inner = _arc(64, 88, 10, 3, math.pi, -math.pi + math.pi / 4, 8)
    face = np.concatenate([jaw, left_brow, right_brow, bridge, base, left_eye, right_eye, outer, inner])
    return (face + [dx, dy]).astype(np.float32)[None]


@pytest.fixture(scope="module")
def dlib_condition():
    pytest.importorskip("dlib")
    return conditions.get("face-landmarks")


def astronaut() -> Image.Image:
    return Image.fromarray(skimage.data.astronaut())


def grace_hopper() -> Image.Image:
    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as image:
        return image.convert("RGB")


@pytest.mark.parametrize("photo", [astronaut, grace_hopper], ids=["astronaut", "grace_hopper"])
def test_real_faces_give_68_plausible_landmarks(dlib_condition, photo):
    image = photo()
    faces = dlib_condition.annotate(image)
    assert faces is not None and faces.shape == (1, 68, 2) and faces.dtype == np.float32
    face = faces[0]
    (left, top, right, bottom) = dlib_condition.detector.boxes(image)[0]
    eyes_y = face[36:48, 1].mean()
    nose_y = face[30:36, 1].mean()
    mouth_y = face[48:68, 1].mean()
    assert eyes_y < nose_y < mouth_y
    assert face[17:27, 1].mean() < eyes_y  # brows above the eyes
    assert face[36:42, 0].mean() < face[30, 0] < face[42:48, 0].mean()  # nose between the eyes
    inner = face[17:68]
    assert (inner[:, 0] >= left - 2).all() and (inner[:, 0] <= right + 2).all()
    assert (inner[:, 1] >= top - 2).all() and (inner[:, 1] <= bottom + 2).all()
    margin = 0.25 * (right - left)
    assert (face[:, 0] > left - margin).all() and (face[:, 0] < right + margin).all()
    assert face[8, 1] > mouth_y  # chin below the mouth


def test_large_photos_are_searched_small_and_landmarked_at_full_size(dlib_condition):
    image = grace_hopper()
    big = image.resize((image.width * 4, image.height * 4), Image.Resampling.BICUBIC)
    faces = dlib_condition.annotate(big)
    assert faces is not None and faces.shape == (1, 68, 2)
    assert faces[0, :, 0].max() > 1000  # in the big photo's pixels
    scores = dlib_condition.score(image, (faces + 0.5) / 4 - 0.5)
    assert scores["detection_rate"] == 1.0 and scores["landmark_nme"] < 0.08


def test_small_faces_are_found_by_searching_again_upsampled(dlib_condition):
    small = astronaut().resize((256, 256), Image.Resampling.LANCZOS)  # a ~45 px face
    assert conditions.get("face-landmarks", upsample=0).annotate(small) is None
    faces = dlib_condition.annotate(small)
    assert faces is not None and faces.shape == (1, 68, 2)
    assert 95 < faces[0, 30, 0] < 130 and 45 < faces[0, 30, 1] < 75  # her nose tip


def test_no_face_returns_none(dlib_condition):
    gradient = np.tile(np.linspace(0, 255, 256, dtype=np.uint8), (256, 1))
    assert dlib_condition.annotate(Image.fromarray(gradient).convert("RGB")) is None


def test_render_draws_each_group_in_its_colour():
    image = np.asarray(
        conditions.get("face-landmarks", detector=lambda im: None).render(template_face(), (128, 128))
    )
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8
    assert tuple(image[110, 64]) == LIME  # bottom of the jaw
    assert tuple(image[35, 42]) == YELLOW and tuple(image[35, 86]) == YELLOW
    assert tuple(image[50, 64]) == ORANGE and tuple(image[66, 60]) == ORANGE
    assert tuple(image[48, 42]) == MAGENTA and tuple(image[48, 86]) == MAGENTA  # eyes filled
    assert tuple(image[80, 64]) == CYAN  # outer lips filled between their outline and the inner lips
    assert tuple(image[88, 64]) == BLUE  # inner lips drawn last, over the outer lips
    assert tuple(image[60, 40]) == (0, 0, 0)  # the jaw is open: nothing between its ends
    assert tuple(image[5, 5]) == (0, 0, 0)  # black canvas


def test_render_lines_are_4px_and_antialiased():
    image = np.asarray(FaceLandmarks(detector=lambda im: None).render(template_face(0, 0.5), (128, 128)))
    coverage = image[25:40, 42, 0].astype(float) / 255  # across the yellow brow (y = 35.5)
    assert coverage.sum() == pytest.approx(4.0, abs=0.75)
    green = image[..., 1][(image[..., 0] == 0) & (image[..., 2] == 0)]
    assert ((green > 0) & (green < 255)).sum() > 50  # soft edges along the jaw
    big = np.asarray(FaceLandmarks(detector=lambda im: None).render(template_face(0, 0.5) * 20, (2560, 2560)))
    assert big[680:740, 840, 0].astype(float).sum() / 255 == pytest.approx(4.0, abs=0.25)  # still 4 px


def test_render_draws_every_face_and_accepts_one_face():
    condition = FaceLandmarks(detector=lambda im: None)
    two = np.concatenate([template_face(), template_face(dx=128)])
    image = np.asarray(condition.render(two, (256, 128)))
    assert tuple(image[88, 64]) == BLUE and tuple(image[88, 192]) == BLUE
    single = np.asarray(condition.render(template_face()[0], (128, 128)))
    assert np.array_equal(single, np.asarray(condition.render(template_face(), (128, 128))))
    with pytest.raises(ValueError):
        condition.render(np.zeros((5, 2)), (64, 64))


def test_mirror_permutation_is_the_300w_flip_order():
    expected = list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30, 35, 34, 33, 32, 31]
    expected += [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    expected += [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65]
    assert MIRROR.tolist() == expected


def test_flip_swaps_sides_and_twice_is_identity():
    face = template_face(dx=-10)
    flipped = flip_landmarks(face, 128)
    assert flipped[0, 36:42, 0].mean() < flipped[0, 42:48, 0].mean()  # 36-41 stays the eye on the left
    assert flipped[0, 0, 0] < flipped[0, 16, 0]
    assert np.allclose(flipped[0, 8], [127 - face[0, 8, 0], face[0, 8, 1]])  # x -> width - 1 - x
    assert np.allclose(flip_landmarks(flipped, 128), face, atol=1e-4)


def test_render_of_flipped_landmarks_is_the_mirrored_render():
    condition = FaceLandmarks(detector=lambda im: None)
    face = template_face(dx=-7.3, dy=2.1)
    mirrored = np.asarray(ImageOps.mirror(condition.render(face, (128, 128)))).astype(int)
    rendered = np.asarray(condition.render(condition.flip(face, 128), (128, 128))).astype(int)
    assert np.abs(mirrored - rendered).mean() < 1.0


def test_flip_matches_the_detector_on_a_mirrored_photo(dlib_condition):
    image = grace_hopper()
    faces = dlib_condition.annotate(image)
    scores = dlib_condition.score(ImageOps.mirror(image), dlib_condition.flip(faces, image.width))
    assert scores["detection_rate"] == 1.0 and scores["landmark_nme"] < 0.05


def test_score_against_own_and_shifted_landmarks(dlib_condition):
    image = grace_hopper()
    faces = dlib_condition.annotate(image)
    own = dlib_condition.score(image, faces)
    assert own == {"landmark_nme": 0.0, "detection_rate": 1.0}
    shifted = dlib_condition.score(image, faces + np.float32([8, 0]))
    assert shifted["detection_rate"] == 1.0 and shifted["landmark_nme"] > 0.04


def test_score_with_an_injected_detector():
    face = template_face()
    inter_ocular = float(np.linalg.norm(face[0, 36] - face[0, 45]))
    shifted = FaceLandmarks(detector=lambda im: face + np.float32([3, 4]))
    scores = shifted.score(Image.new("RGB", (128, 128)), face)
    assert scores["detection_rate"] == 1.0
    assert scores["landmark_nme"] == pytest.approx(5 / inter_ocular, rel=1e-5)
    two = np.concatenate([face, template_face(dx=300)])
    half = FaceLandmarks(detector=lambda im: face).score(Image.new("RGB", (512, 128)), two)
    assert half == {"landmark_nme": 0.0, "detection_rate": 0.5}
    elsewhere = FaceLandmarks(detector=lambda im: template_face(dx=300)).score(Image.new("RGB", (8, 8)), face)
    assert math.isnan(elsewhere["landmark_nme"]) and elsewhere["detection_rate"] == 0.0
    nothing = FaceLandmarks(detector=lambda im: None).score(Image.new("RGB", (8, 8)), face)
    assert math.isnan(nothing["landmark_nme"]) and nothing["detection_rate"] == 0.0


def test_records_round_trip_through_datasets():
    datasets = pytest.importorskip("datasets")
    condition = FaceLandmarks(detector=lambda im: None)
    faces = np.concatenate([template_face(), template_face(dx=3.25)])
    features = datasets.Features({"annotation": condition.record_feature()})
    rows = {"annotation": [condition.to_record(faces), condition.to_record(faces[:0])]}
    table = datasets.Dataset.from_dict(rows, features=features)
    assert np.array_equal(condition.from_record(table[0]["annotation"]), faces)
    assert condition.from_record(table[1]["annotation"]).shape == (0, 68, 2)


def test_resize_center_crop_moves_landmarks_with_the_image(dlib_condition):
    image = grace_hopper()  # 512 x 600: the crop removes rows
    faces = dlib_condition.annotate(image)
    moved = dlib_condition.resize_center_crop(faces, image.size, (256, 256))
    cropped = resize_center_crop_image(image, (256, 256))
    assert cropped.size == (256, 256)
    scores = dlib_condition.score(cropped, moved)
    assert scores["detection_rate"] == 1.0 and scores["landmark_nme"] < 0.06
    centre = dlib_condition.resize_center_crop(
        np.full((1, 68, 2), [255.5, 299.5], np.float32), (512, 600), (256, 256)
    )
    assert np.allclose(centre, 127.5)


def test_options_and_errors():
    with pytest.raises(UserError, match="unknown face-landmarks detector"):
        conditions.get("face-landmarks", detector="nope")
    with pytest.raises(UserError, match="unknown condition"):
        conditions.get("no-such-condition")
    assert conditions.get("face-landmarks", upsample=1).detector.upsample == 1


def test_missing_dlib_is_one_line_naming_the_extra(monkeypatch):
    from controlkit.conditions.detectors import dlib_detector

    dlib_detector._models.cache_clear()
    monkeypatch.setitem(sys.modules, "dlib", None)
    try:
        with pytest.raises(UserError, match=r"pip install 'controlkit\[faces\]'") as info:
            FaceLandmarks().annotate(Image.new("RGB", (32, 32)))
        assert "\n" not in str(info.value)
    finally:
        dlib_detector._models.cache_clear()


def test_predictor_is_found_without_importing_face_recognition_models():
    code = (
        "import sys\n"
        "from controlkit.conditions.detectors.dlib_detector import predictor_path\n"
        "assert predictor_path().is_file()\n"
        "assert 'face_recognition_models' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_regressor_detector_finds_a_small_synthetic_face():
    from controlkit.data.synthetic_faces import synthetic_faces

    condition = conditions.get("face-landmarks", detector="regressor")
    face = next(synthetic_faces(1, seed=11, size=64))
    found = condition.annotate(face.image)
    assert found.shape == (1, 68, 2)
    scores = condition.score(face.image, face.landmarks[None])
    assert scores["detection_rate"] == 1.0 and scores["landmark_nme"] < 0.15
    assert "regressor" in condition.describe()["detector"]


def test_small_pictures_are_scored_by_the_regressor_where_dlib_cannot_see_them():
    """dlib finds no 64 px face; the auto scorer reads it with the regressor, and so does a condition made
    for a 64 px ControlNet whose outputs are enlarged before scoring."""
    from controlkit.conditions.face_landmarks import SMALL_PICTURE
    from controlkit.data.synthetic_faces import synthetic_faces

    face = next(synthetic_faces(1, seed=11, size=64))
    truth = face.landmarks[None]
    condition = conditions.get("face-landmarks")
    scores = condition.score(face.image, truth)
    assert scores["detection_rate"] == 1.0 and scores["landmark_nme"] < 0.15
    enlarged = face.image.resize((512, 512), Image.Resampling.BICUBIC)
    assert condition.for_resolution(512) is condition
    small = condition.for_resolution(64)
    assert condition.scorer_for(enlarged) is condition.detector
    assert small.scorer_for(enlarged) is not small.detector
    scores = small.score(enlarged, truth * 8 + 3.5)
    assert scores["detection_rate"] == 1.0 and scores["landmark_nme"] < 0.15
    assert min(face.image.size) < SMALL_PICTURE <= 512
    chosen = conditions.get("face-landmarks", scorer="dlib")
    assert chosen.for_resolution(64) is chosen and chosen.scorer_for(face.image) is chosen.detector
    with pytest.raises(UserError, match="unknown face-landmarks scorer"):
        conditions.get("face-landmarks", scorer="nope")
