"""A shortened `controlkit quickstart`: every artifact exists and the report links to all of them; it needs
no extra (dlib is blocked while it runs), and one that stopped early is started again by the same command."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from controlkit.cli import main
from controlkit.errors import UserError
from controlkit.metadata import ControlNetInfo
from controlkit.quickstart import run
from controlkit.quickstart.config import DEMO_BASE
from controlkit.train.metrics import read_metrics

SHORT = ["--images", "300", "--steps", "300", "--batch-size", "8", "--validation-every", "150"]
SHORT += ["--validation-faces", "1", "--eval-faces", "8", "--eval-steps", "8", "--threads", "1"]
"""Long enough (about a minute) for control to show: a ControlNet needs a few hundred steps to start
following its condition; the cases' figures are then measured on 8 held-out faces."""


NO_EXTRAS = "import sys; sys.modules['dlib'] = sys.modules['face_recognition_models'] = None\n"
"""Run with these, a module that imports dlib (the `faces` extra) fails: the core install is all there is."""


@pytest.fixture(scope="module")
def quickstart_out(tmp_path_factory):
    """The quickstart as a user without the `faces` extra runs it."""
    out = tmp_path_factory.mktemp("qs") / "out"
    script = (
        NO_EXTRAS
        + f"from controlkit.cli import main; sys.exit(main({['quickstart', '--out', str(out), *SHORT]!r}))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_dlib_is_blocked_by_the_no_extras_preamble():
    script = NO_EXTRAS + "from controlkit import conditions; conditions.get('face-landmarks').warm_up()"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode != 0 and "pip install 'controlkit[faces]'" in done.stderr


@pytest.mark.slow
def test_every_artifact_exists(quickstart_out):
    out = quickstart_out
    for path in [
        "report.html",
        "quickstart.json",
        "loss.png",
        "dataset/preview.png",
        "dataset/controlkit.json",
        "held_out/controlkit.json",
        "validation/face-0.png",
        "validation/face-0.json",
        "controlnet/diffusion_pytorch_model.safetensors",
        "controlnet/controlkit.json",
        "controlnet/metrics.jsonl",
        "controlnet/validation/step-150.png",
        "controlnet/validation/step-300.png",
        "eval/eval.json",
        "eval/report.html",
        "eval/curves.png",
        "eval/checkpoints/checkpoint-150.png",
        "eval/checkpoints/checkpoint-300.png",
        "eval/best/controlkit.json",
    ]:
        assert (out / path).is_file(), path
    summary = json.loads((out / "quickstart.json").read_text())
    assert [row["step"] for row in summary["evaluation"]["checkpoints"]] == [150, 300]
    assert set(summary["control"]) == {"matched", "shuffled", "off", "off_domain"}
    for scores in summary["control"].values():
        assert 0 <= scores["landmark_nme"] < 10 and 0 <= scores["detection_rate"] <= 1
    info = ControlNetInfo.read(out / "controlnet")
    assert info.condition == "face-landmarks" and info.resolution == 64 and info.step == 300


@pytest.mark.slow
def test_the_trained_controlnet_follows_the_landmarks(quickstart_out):
    """Held-out faces: the right conditioning gives a lower landmark error than another face's, or none."""
    control = json.loads((quickstart_out / "quickstart.json").read_text())["control"]
    matched, shuffled, off = (control[case]["landmark_nme"] for case in ("matched", "shuffled", "off"))
    assert matched < 0.95 * min(shuffled, off)  # untrained, the three are within about 1%


@pytest.mark.slow
def test_validation_scores_its_64_px_outputs(quickstart_out):
    """Validation scores at the outputs' own size, where face-landmarks reads with its small-face regressor
    (dlib finds no face at 64 px, so a detection rate above 0 shows the right scorer)."""
    records = [r["validation"] for r in read_metrics(quickstart_out / "controlnet") if "validation" in r]
    assert records and all(r["validation/detection_rate"] > 0 for r in records)


@pytest.mark.slow
def test_report_links_to_every_artifact(quickstart_out):
    page = (quickstart_out / "report.html").read_text()
    links = set(re.findall(r'(?:src|href)="([^"]+)"', page))
    for link in links:
        assert (quickstart_out / link).exists(), link
    expected = {"loss.png", "dataset/preview.png", "quickstart.json", "eval/curves.png", "eval/report.html"}
    expected |= {f"controlnet/validation/step-{n}.png" for n in (150, 300)} | {
        "eval/checkpoints/checkpoint-300.png"
    }
    assert expected <= links
    assert "stabilityai/stable-diffusion-2-1-base" in page and "--vram" in page
    assert "controlkit eval --controlnet controlnet --dataset held_out" in page and "CLIP" in page


@pytest.mark.slow
def test_refuses_a_non_empty_out_without_overwrite(quickstart_out, capsys):
    assert not (quickstart_out / run.UNFINISHED).exists()  # a finished quickstart is not started again
    assert main(["quickstart", "--out", str(quickstart_out), *SHORT]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_a_quickstart_that_stopped_early_is_started_again_by_the_same_command(tmp_path, monkeypatch, capsys):
    """Stopped while training (its datasets built): the same command runs it again, without --overwrite."""
    trained = []

    def train(config, dataset, init, validation):
        trained.append(sorted(p.name for p in config.out.iterdir()))
        raise UserError("stopped while training")

    monkeypatch.setattr(run, "train_controlnet", train)
    out = tmp_path / "out"
    argv = ["quickstart", "--out", str(out), "--images", "4", "--eval-faces", "2", "--validation-faces", "1"]
    for _ in range(2):
        assert main(argv) == 2
        assert "stopped while training" in capsys.readouterr().err
    assert trained[0] == trained[1] and {"dataset", "held_out", run.UNFINISHED} <= set(trained[1])
    (out / "mine.txt").write_text("a folder that is not an unfinished quickstart")
    (out / run.UNFINISHED).unlink()
    assert main(argv) == 2 and "--overwrite" in capsys.readouterr().err


def test_a_stop_while_building_says_to_run_quickstart_again_not_to_resume(tmp_path, monkeypatch, capsys):
    """data build's own stop line says --resume, which quickstart has not: quickstart says what it has."""
    from controlkit.data import build
    from controlkit.stopping import EXIT_STOPPED, Stopped

    def stopped(config):
        raise Stopped(build.stopped_line(3, 8, "inputs", Path(config.out)))

    monkeypatch.setattr(build, "build_dataset", stopped)
    assert main(["quickstart", "--out", str(tmp_path / "out"), "--images", "8"]) == EXIT_STOPPED
    err = capsys.readouterr().err
    assert "stopped: while building dataset; run the same command again (it starts over)" in err
    assert "--resume" not in err


def test_a_base_folder_without_a_pipeline_is_one_line_error(tmp_path, capsys):
    assert main(["quickstart", "--base", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "model_index.json is missing" in capsys.readouterr().err


def test_ships_a_small_demo_base_with_provenance():
    size = sum(p.stat().st_size for p in DEMO_BASE.rglob("*") if p.is_file())
    assert size <= 30_000_000
    provenance = json.loads((DEMO_BASE / "PROVENANCE.json").read_text())
    assert provenance["command"].startswith("controlkit pretrain-demo-base")
    assert provenance["final_unet_loss"] > 0
