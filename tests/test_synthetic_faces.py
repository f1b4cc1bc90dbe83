"""The synthetic faces: deterministic, varied, and drawn where their landmarks say."""

from __future__ import annotations

import numpy as np
import pytest

from controlkit.data.synthetic_faces import (
    caption_words,
    describe,
    face_seed,
    render_attributes,
    render_synthetic_face,
    sample_attributes,
    synthetic_faces,
)

SIZE = 128
# iBUG-68 index of each point's mirror image (left/right groups swapped).
MIRROR = np.array(
    list(range(16, -1, -1))
    + list(range(26, 16, -1))
    + [27, 28, 29, 30, 35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]
    + [64, 63, 62, 61, 60, 67, 66, 65]
)


@pytest.fixture(scope="module")
def faces():
    return list(synthetic_faces(60, seed=7, size=SIZE))


def _pixel(face, xy) -> np.ndarray:
    x, y = np.round(np.asarray(xy)).astype(int)
    return np.asarray(face.image, dtype=np.float64)[y, x]


def _luma(rgb) -> float:
    r, g, b = np.asarray(rgb, dtype=np.float64)[..., :3].T
    return float(0.299 * r + 0.587 * g + 0.114 * b)


def test_same_seed_same_pixels_and_landmarks():
    a, b = render_synthetic_face(123, SIZE), render_synthetic_face(123, SIZE)
    assert a.image.tobytes() == b.image.tobytes()
    np.testing.assert_array_equal(a.landmarks, b.landmarks)
    assert a.attributes == b.attributes
    c = render_synthetic_face(124, SIZE)
    assert c.image.tobytes() != a.image.tobytes()


def test_stream_faces_are_the_seeded_faces():
    stream = list(synthetic_faces(3, seed=5, size=64))
    for i, face in enumerate(stream):
        alone = render_synthetic_face(face_seed(5, i), 64)
        assert face.image.tobytes() == alone.image.tobytes()
    assert len({face_seed(5, i) for i in range(100)} | {face_seed(6, i) for i in range(100)}) == 200


def test_contract_types(faces):
    face = faces[0]
    assert face.image.mode == "RGB" and face.image.size == (SIZE, SIZE)
    assert face.landmarks.shape == (68, 2) and face.landmarks.dtype == np.float32
    for value in face.attributes.values():
        assert isinstance(value, (int, float, str, bool, list, dict))


def test_landmarks_scale_with_size():
    small, large = render_synthetic_face(9, 64), render_synthetic_face(9, 256)
    np.testing.assert_allclose(small.landmarks * 4, large.landmarks, atol=1e-3)


def test_landmarks_inside_image_with_margin(faces):
    for face in faces:
        assert face.landmarks.min() >= 0.02 * SIZE and face.landmarks.max() <= 0.98 * SIZE


def test_eyes_above_nose_above_mouth_in_the_faces_own_frame(faces):
    for face in faces:
        lm = face.landmarks.astype(np.float64)
        t = np.radians(face.attributes["roll"])
        unroll = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
        y = (lm - lm.mean(axis=0)) @ unroll.T
        brows, eyes = y[17:27, 1].mean(), y[36:48, 1].mean()
        nose, mouth, chin = y[30, 1], y[48:68, 1].mean(), y[8, 1]
        assert brows < eyes < nose < mouth < chin, face.attributes["seed"]
        assert y[36:42, 0].mean() < y[42:48, 0].mean()  # left eye group is on the image left


def test_pupil_centre_is_dark():
    checked = 0
    for face in synthetic_faces(24, seed=3, size=256):
        if face.attributes["eyes_open"] < 0.7:
            continue
        lm = face.landmarks
        cheek = max(_luma(_pixel(face, (lm[31] + lm[2]) / 2)), _luma(_pixel(face, (lm[35] + lm[14]) / 2)))
        for eye in (slice(36, 42), slice(42, 48)):
            assert _luma(_pixel(face, lm[eye].mean(axis=0))) < 0.5 * cheek, face.attributes["seed"]
            checked += 1
    assert checked > 20


def test_lips_are_redder_than_the_chin(faces):
    def redness(rgb):
        return (rgb[0] - rgb[1]) / (rgb.sum() + 1.0)

    for face in faces:
        lm = face.landmarks
        lower_lip = _pixel(face, (lm[57] + lm[66]) / 2)
        chin = _pixel(face, (lm[57] + lm[8]) / 2)
        assert redness(lower_lip) > redness(chin), face.attributes["seed"]


def test_landmarks_lie_on_the_face_not_the_background():
    attributes = sample_attributes(np.random.default_rng(3))
    attributes.update(background_rgb=[0, 0, 255], background_gradient=[1.0] * 4, clothes_rgb=[0, 0, 255])
    face = render_attributes(attributes, SIZE)
    image = np.asarray(face.image).astype(int)
    for x, y in np.round(face.landmarks[17:]).astype(int):
        r, g, b = image[y, x]
        assert not (b > 200 and r < 40 and g < 40)


def test_mirrored_pose_mirrors_the_landmarks():
    attributes = sample_attributes(np.random.default_rng(11))
    attributes.update(yaw=25.0, roll=6.0, pitch=5.0, scale=0.18, centre=[0.5, 0.55])
    right = render_attributes(attributes, SIZE)
    attributes.update(yaw=-25.0, roll=-6.0)
    left = render_attributes(attributes, SIZE)
    mirrored = left.landmarks[MIRROR].copy()
    mirrored[:, 0] = 2 * 0.5 * SIZE - mirrored[:, 0]
    np.testing.assert_allclose(right.landmarks, mirrored, atol=1e-3)
    lm = right.landmarks
    assert lm[30, 0] > (lm[0, 0] + lm[16, 0]) / 2  # yaw > 0: the nose turns to the image right
    near, far = np.ptp(lm[36:42, 0]), np.ptp(lm[42:48, 0])
    assert near > far  # and the image-left eye, nearer the camera, looks wider


def test_expressions_move_the_points():
    attributes = sample_attributes(np.random.default_rng(2))
    attributes.update(yaw=0.0, pitch=0.0, roll=0.0, mouth_open=0.0, eyes_open=1.0, smile=0.0)
    neutral = render_attributes(attributes, SIZE).landmarks
    attributes.update(mouth_open=1.0, eyes_open=0.3)
    changed = render_attributes(attributes, SIZE).landmarks
    assert changed[66, 1] - changed[62, 1] > neutral[66, 1] - neutral[62, 1] + 0.02 * SIZE
    assert changed[40, 1] - changed[38, 1] < 0.6 * (neutral[40, 1] - neutral[38, 1])
    assert changed[8, 1] > neutral[8, 1]  # the jaw drops with the mouth


def test_seeds_give_varied_attributes():
    attrs = [sample_attributes(np.random.default_rng(face_seed(0, i))) for i in range(200)]
    yaws = np.array([a["yaw"] for a in attrs])
    assert yaws.std() > 10 and yaws.min() < -25 and yaws.max() > 25
    assert np.std([a["pitch"] for a in attrs]) > 4 and np.std([a["roll"] for a in attrs]) > 4
    assert 0.3 < np.mean([a["mouth_open"] > 0 for a in attrs]) < 0.7
    assert len({a["hair"] for a in attrs}) >= 6 and len({a["background"] for a in attrs}) >= 8
    assert len({a["skin"] for a in attrs}) >= 5 and {a["gender"] for a in attrs} == {"woman", "man"}
    assert len({describe(a) for a in attrs}) > 150


def test_describe_follows_the_attributes():
    attributes = sample_attributes(np.random.default_rng(4))
    attributes.update(gender="woman", smile=0.9, mouth_open=0.8, eyes_open=1.0, yaw=30.0, background="blue")
    attributes.update(hair="long", hair_colour="blonde", beard=False)
    assert describe(attributes) == (
        "a close-up photo of a smiling woman with long blonde hair and an open mouth, turned to the right,"
        " on a blue background"
    )
    attributes.update(gender="man", smile=0.0, mouth_open=0.0, yaw=0.0, pitch=-15.0, hair="bald", beard=True)
    assert (
        describe(attributes)
        == "a close-up photo of a bald man with a beard, looking down, on a blue background"
    )


def test_caption_words_cover_every_caption():
    vocabulary = set(caption_words())
    for i in range(300):
        words = describe(sample_attributes(np.random.default_rng(face_seed(1, i)))).replace(",", "").split()
        assert set(words) <= vocabulary


def test_dlib_finds_most_faces():
    dlib = pytest.importorskip("dlib")
    detector = dlib.get_frontal_face_detector()
    big = list(synthetic_faces(30, seed=1, size=256))
    found = sum(len(detector(np.asarray(face.image), 0)) > 0 for face in big)
    assert found / len(big) >= 0.8
