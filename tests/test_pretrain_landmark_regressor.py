"""The landmark regressor's trainer (`python -m controlkit.pretrain.landmark_regressor`) on tiny settings."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from PIL import Image

from controlkit import conditions
from controlkit.conditions.detectors.regressor import RegressorDetector
from controlkit.pretrain.landmark_regressor import RegressorConfig, main


def test_help_documents_every_flag():
    run = [sys.executable, "-m", "controlkit.pretrain.landmark_regressor", "--help"]
    text = subprocess.run(run, capture_output=True, text=True, check=True).stdout
    for flag in ("--out", "--images", "--held-out", "--resolution", "--render-size", "--steps", "--minutes"):
        assert flag in text
    assert text.count("(default:") == len(RegressorConfig.__dataclass_fields__)


def test_trains_weights_the_detector_loads(tmp_path, capsys):
    out = tmp_path / "regressor"
    tiny = ["--images", "8", "--held-out", "2", "--render-size", "64", "--steps", "2", "--batch-size", "2"]
    assert main(["--out", str(out), *tiny]) == 0
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert scores["faces"] == 2 and "landmark_nme" in scores
    provenance = json.loads((out / "PROVENANCE.json").read_text())
    assert provenance["command"] == f"python -m controlkit.pretrain.landmark_regressor --out {out}"
    assert provenance["steps"] == 2 and provenance["settings"]["images"] == 8
    found = RegressorDetector(out).predict([Image.new("RGB", (64, 64))])
    assert found.shape == (1, 68, 2) and np.isfinite(found).all()
    condition = conditions.get("face-landmarks", detector="regressor")
    assert condition.annotate(Image.new("RGB", (64, 64))).shape == (1, 68, 2)
