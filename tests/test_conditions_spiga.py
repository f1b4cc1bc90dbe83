"""The SPIGA adapter, as far as it can be checked without SPIGA's weights."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from controlkit import conditions
from controlkit.conditions.detectors.spiga_detector import (
    WFLW98_TO_IBUG68,
    SpigaLandmarks,
    boxes_to_xywh,
    model_name,
    to_ibug68,
)
from controlkit.conditions.landmarks68 import MIRROR
from controlkit.errors import UserError

WFLW_FLIP = (
    list(range(32, -1, -1))
    + [46, 45, 44, 43, 42, 50, 49, 48, 47, 37, 36, 35, 34, 33, 41, 40, 39, 38]
    + [51, 52, 53, 54, 59, 58, 57, 56, 55, 72, 71, 70, 69, 68, 75, 74, 73, 64, 63, 62, 61, 60, 67, 66, 65]
    + [82, 81, 80, 79, 78, 77, 76, 87, 86, 85, 84, 83, 92, 91, 90, 89, 88, 95, 94, 93, 97, 96]
)
"""WFLW's published mirror order."""


@pytest.fixture
def weights(tmp_path):
    path = tmp_path / "spiga_wflw.pt"
    path.write_bytes(b"not read until the first image")
    return path


def test_wflw_to_ibug_mapping_keeps_left_and_right():
    assert len(WFLW98_TO_IBUG68) == 68 and len(set(WFLW98_TO_IBUG68.tolist())) == 68
    # mirroring in WFLW then mapping == mapping then mirroring in iBUG
    assert np.array_equal(np.asarray(WFLW_FLIP)[WFLW98_TO_IBUG68], WFLW98_TO_IBUG68[MIRROR])
    wflw = np.random.default_rng(0).random((2, 98, 2), dtype=np.float32)
    ibug = to_ibug68(wflw)
    assert ibug.shape == (2, 68, 2)
    assert np.array_equal(ibug[:, 36], wflw[:, 60]) and np.array_equal(
        ibug[:, 45], wflw[:, 72]
    )  # outer corners
    assert np.array_equal(ibug[:, 48:], wflw[:, 76:96])
    assert np.array_equal(to_ibug68(ibug), ibug)  # 68 points pass through
    with pytest.raises(ValueError):
        to_ibug68(np.zeros((1, 5, 2)))


def test_boxes_and_model_names():
    assert boxes_to_xywh(np.float32([[10, 20, 110, 140]])).tolist() == [[10, 20, 100, 120]]
    assert boxes_to_xywh(np.zeros((0, 4))).shape == (0, 4)
    assert model_name(Path("spiga_300wprivate.pt")) == "300wprivate"
    assert model_name(Path("my-weights.safetensors")) == "300wpublic"


def test_missing_weights_and_package_are_one_line_errors(weights, monkeypatch):
    with pytest.raises(UserError, match="spiga_weights=PATH"):
        conditions.get("face-landmarks", detector="spiga")
    with pytest.raises(UserError, match="not found"):
        conditions.get("face-landmarks", detector="spiga", spiga_weights=str(weights.parent / "nope.pt"))
    with pytest.raises(UserError, match="unknown SPIGA model"):
        conditions.get("face-landmarks", detector="spiga", spiga_weights=str(weights), spiga_model="x")
    condition = conditions.get("face-landmarks", detector="spiga", spiga_weights=str(weights))
    assert condition.detector.model == "wflw"
    monkeypatch.setitem(sys.modules, "spiga", None)
    with pytest.raises(UserError, match="pip install spiga") as info:
        condition.detector.landmarks(Image.new("RGB", (64, 64)), np.float32([[8, 8, 40, 40]]))
    assert "\n" not in str(info.value)


def _square_crop(sample):
    """SPIGA's crop geometry: a square 1.6x the box, scaled to 256 px; the box in crop pixels."""
    x, y, w, h = sample["bbox"]
    side = max(w, h) * 1.6
    scale = 256 / side
    left, top = x + w / 2 - side / 2, y + h / 2 - side / 2
    return {
        "image": np.zeros((3, 256, 256)),
        "bbox": np.array([(x - left) * scale, (y - top) * scale, w * scale, h * scale]),
    }


class _FixedNetwork:
    """Stands in for SPIGA: every point at the same place of the crop, in [0, 1] units."""

    def __init__(self, where, points):
        self.where, self.points = where, points

    def __call__(self, inputs):
        n = inputs[0].shape[0]
        return {"Landmarks": [torch.tensor(self.where, dtype=torch.float32).expand(n, self.points, 2)]}


@pytest.mark.parametrize("points", [68, 98])
def test_network_output_is_mapped_back_to_image_pixels(weights, points):
    detector = SpigaLandmarks(weights)
    boxes = np.float32([[100, 50, 80, 80], [10, 10, 40, 60]])
    detector._loaded = {
        "network": _FixedNetwork((0.5, 0.5), points),
        "device": torch.device("cpu"),
        "crop": _square_crop,
        "crop_size": np.float32([256, 256]),
        "model3d": torch.zeros(1, points, 3),
        "cam_matrix": torch.zeros(3, 3),
    }
    out = detector.landmarks(Image.new("RGB", (256, 256)), boxes)
    assert out.shape == (2, 68, 2) and out.dtype == np.float32
    assert np.allclose(out[0], [140, 90]) and np.allclose(out[1], [30, 40])  # crop centre -> box centre
    corner = 0.5 - 0.5 / 1.6  # the box's top-left corner in crop units (a square box)
    detector._loaded["network"] = _FixedNetwork((corner, corner), points)
    assert np.allclose(detector.landmarks(Image.new("RGB", (256, 256)), boxes[:1])[0], [100, 50], atol=1e-3)


def test_the_adapter_pickles_without_its_network(weights):
    import pickle

    detector = SpigaLandmarks(weights)
    detector._loaded = {"network": object()}
    assert pickle.loads(pickle.dumps(detector))._loaded is None


@pytest.mark.slow
def test_real_spiga_network_runs_on_cpu_with_random_weights(tmp_path):
    pytest.importorskip("spiga.models.spiga")
    from spiga.inference.config import ModelConfig
    from spiga.models.spiga import SPIGA

    config = ModelConfig("300wpublic")
    path = tmp_path / "spiga_300wpublic.pt"
    torch.save(SPIGA(config.dataset.num_landmarks, config.dataset.num_edges).state_dict(), path)
    detector = SpigaLandmarks(path, device="cpu")
    out = detector.landmarks(Image.new("RGB", (128, 128), "gray"), np.float32([[32, 32, 64, 64]]))
    assert out.shape == (1, 68, 2) and np.isfinite(out).all()
