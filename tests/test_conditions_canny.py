"""canny: edges of a photo, drawn white on black, scored by edge F1, flipped, stored and resized."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
from PIL import Image, ImageChops, ImageOps

from controlkit import conditions
from controlkit.conditions.canny import edge_scores


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.fromarray(skimage.data.astronaut()).resize((128, 128), Image.Resampling.LANCZOS)


@pytest.fixture(scope="module")
def canny():
    return conditions.get("canny")


def test_annotate_gives_a_binary_edge_map_and_thresholds_matter(canny, photo):
    edges = canny.annotate(photo)
    assert edges.shape == (128, 128) and edges.dtype == np.uint8
    assert set(np.unique(edges)) == {0, 255}
    strict = conditions.get("canny", low_threshold=200, high_threshold=400).annotate(photo)
    assert 0 < (strict > 0).sum() < (edges > 0).sum()


def test_render_is_white_edges_on_black_at_the_asked_size(canny, photo):
    edges = canny.annotate(photo)
    image = canny.render(edges, (128, 128))
    assert image.mode == "RGB" and image.size == (128, 128)
    pixels = np.asarray(image)
    assert np.array_equal(pixels[..., 0] > 0, edges > 0)
    assert np.array_equal(pixels[..., 0], pixels[..., 2])
    small = np.asarray(canny.render(edges, (64, 64)))
    assert small.shape == (64, 64, 3)
    ys, xs = np.nonzero(edges)
    assert (small[ys // 2, xs // 2, 0] == 255).all()  # 1 px edges survive the shrink


def test_score_is_perfect_on_itself_and_drops_with_misalignment(canny, photo):
    edges = canny.annotate(photo)
    assert canny.score(photo, edges)["edge_f1"] == 1.0
    nudged = canny.score(ImageChops.offset(photo, 1, 0), edges)["edge_f1"]
    moved = canny.score(ImageChops.offset(photo, 8, 0), edges)["edge_f1"]
    blank = canny.score(Image.new("RGB", (128, 128), "gray"), edges)
    assert nudged > 0.9 > moved
    assert blank == {"edge_f1": 0.0, "edge_precision": 0.0, "edge_recall": 0.0}
    assert canny.score(photo.resize((256, 256)), edges)["edge_f1"] > 0.5  # generated at another size


def test_edge_scores_tolerance_and_empty_maps():
    line = np.zeros((20, 20), np.uint8)
    line[10, 2:18] = 255
    shifted = np.roll(line, 2, axis=0)
    assert edge_scores(shifted, line, tolerance=2)["edge_f1"] == 1.0
    assert edge_scores(shifted, line, tolerance=1)["edge_f1"] == 0.0
    assert edge_scores(np.zeros_like(line), np.zeros_like(line), tolerance=1)["edge_f1"] == 1.0


def test_flip_mirrors_the_map_and_twice_is_identity(canny, photo):
    edges = canny.annotate(photo)
    flipped = canny.flip(edges, 128)
    assert np.array_equal(flipped[:, ::-1], edges)
    assert np.array_equal(canny.flip(flipped, 128), edges)
    assert canny.score(ImageOps.mirror(photo), flipped)["edge_f1"] > 0.9


def test_records_are_compact_png_bytes_and_round_trip(canny, photo):
    datasets = pytest.importorskip("datasets")
    edges = canny.annotate(photo)
    record = canny.to_record(edges)
    assert isinstance(record, bytes) and len(record) < edges.size // 2
    assert np.array_equal(canny.from_record(record), edges)
    table = datasets.Dataset.from_dict(
        {"annotation": [record]}, features=datasets.Features({"annotation": canny.record_feature()})
    )
    assert np.array_equal(canny.from_record(table[0]["annotation"]), edges)
    assert np.array_equal(canny.from_record(edges.tolist()), edges)


def test_resize_center_crop_follows_the_image(canny):
    edges = np.zeros((100, 200), np.uint8)
    edges[:, 100] = 255  # a vertical line in the middle of a wide image
    moved = canny.resize_center_crop(edges, (200, 100), (50, 50))
    assert moved.shape == (50, 50)
    assert set(np.flatnonzero(moved.any(axis=0))) <= {24, 25}
