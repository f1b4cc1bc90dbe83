"""A shortened `controlkit quickstart`: every artifact exists and the report links to all of them."""

from __future__ import annotations

import json
import re

import pytest

from controlkit.cli import main
from controlkit.metadata import ControlNetInfo
from controlkit.quickstart.config import DEMO_BASE

SHORT = ["--images", "12", "--steps", "4", "--batch-size", "4", "--validation-every", "2"]
SHORT += ["--validation-faces", "1", "--eval-faces", "2", "--eval-steps", "2", "--threads", "1"]


@pytest.fixture(scope="module")
def quickstart_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("qs") / "out"
    assert main(["quickstart", "--out", str(out), *SHORT]) == 0
    return out


def test_every_artifact_exists(quickstart_out):
    out = quickstart_out
    for path in [
        "report.html",
        "quickstart.json",
        "loss.png",
        "adherence.png",
        "control.png",
        "dataset/preview.png",
        "dataset/controlkit.json",
        "controlnet/diffusion_pytorch_model.safetensors",
        "controlnet/controlkit.json",
        "controlnet/metrics.jsonl",
        "controlnet/validation/step-2.png",
        "controlnet/validation/step-4.png",
        "held_out/face-0.png",
        "held_out/face-0.json",
    ]:
        assert (out / path).is_file(), path
    summary = json.loads((out / "quickstart.json").read_text())
    assert [row["step"] for row in summary["adherence_by_step"]] == [2, 4]
    assert set(summary["control"]) == {"matched", "shuffled", "disabled"}
    for scores in summary["control"].values():
        assert 0 <= scores["point_error"] < 10 and 0 <= scores["detection_rate"] <= 1
    info = ControlNetInfo.read(out / "controlnet")
    assert info.condition == "face-landmarks" and info.resolution == 64


def test_report_links_to_every_artifact(quickstart_out):
    page = (quickstart_out / "report.html").read_text()
    links = set(re.findall(r'(?:src|href)="([^"]+)"', page))
    for link in links:
        assert (quickstart_out / link).exists(), link
    expected = {"loss.png", "adherence.png", "control.png", "dataset/preview.png", "quickstart.json"}
    expected |= {f"controlnet/validation/step-{n}.png" for n in (2, 4)}
    assert expected <= links
    assert "stabilityai/stable-diffusion-2-1-base" in page and "--vram" in page


def test_refuses_a_non_empty_out_without_overwrite(quickstart_out, capsys):
    assert main(["quickstart", "--out", str(quickstart_out), *SHORT]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_a_base_folder_without_a_pipeline_is_one_line_error(tmp_path, capsys):
    assert main(["quickstart", "--base", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "model_index.json is missing" in capsys.readouterr().err


def test_ships_a_small_demo_base_with_provenance():
    size = sum(p.stat().st_size for p in DEMO_BASE.rglob("*") if p.is_file())
    assert size <= 30_000_000
    provenance = json.loads((DEMO_BASE / "PROVENANCE.json").read_text())
    assert provenance["command"].startswith("controlkit pretrain-demo-base")
    assert provenance["final_unet_loss"] > 0
