"""`controlkit data realify` on a quickstart-like dataset with the shipped demo base, on the CPU.

8 synthetic faces at 64 px, 2 img2img steps a row: the filter (rows whose landmarks moved are rejected,
or kept as the original), the seeds (the same row gets the same picture in every run), the resume, the
card, and the one-line errors.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys

import datasets
import numpy as np
import pytest
from PIL import Image

from controlkit import conditions
from controlkit.cli import main
from controlkit.data.build import BuildConfig, build_dataset
from controlkit.data.realify import NOTHING_FOUND, decide, realify_dataset
from controlkit.data.realify_config import RealifyConfig
from controlkit.data.realify_worker import Realifier, RealifyResult, load_img2img_pipeline
from controlkit.errors import UserError
from controlkit.metadata import DatasetInfo
from controlkit.quickstart.config import DEMO_BASE
from controlkit.stopping import Stopped

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ROWS = 8


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    out = tmp_path_factory.mktemp("realify") / "synth-ds"
    build_dataset(
        BuildConfig(
            source="synthetic-faces",
            landmarks="ground-truth",
            limit=ROWS,
            resolution=64,
            out=str(out),
            progress=False,
        )
    )
    return out


def config(dataset, out, **kwargs) -> RealifyConfig:
    settings = {
        "dataset": str(dataset),
        "base": str(DEMO_BASE),
        "out": str(out),
        "strength": 0.5,
        "steps": 4,
        "guidance_scale": 3.0,
        "batch_size": 2,
        "shard_size": 2,
        "progress": False,
    }
    return RealifyConfig(**{**settings, **kwargs})


@pytest.fixture(scope="module")
def everything(faces, tmp_path_factory):
    """Every row repainted with no threshold: only rows where no face is found again are rejected."""
    out = tmp_path_factory.mktemp("realify") / "real-ds"
    return realify_dataset(config(faces, out)), out


def by_source(folder) -> dict[str, dict]:
    return {row["source"]: row for row in datasets.load_from_disk(str(folder))}


def pixels(image: Image.Image) -> bytes:
    return np.asarray(image).tobytes()


def test_every_kept_row_is_repainted_and_read_again_by_the_condition(faces, everything):
    report, out = everything
    original, repainted = by_source(faces), by_source(out)
    condition = conditions.get("face-landmarks")
    assert report.rows == ROWS and report.kept == len(repainted) >= ROWS // 2
    assert DatasetInfo.read(out) == DatasetInfo.read(faces)
    assert datasets.load_from_disk(str(out)).column_names == datasets.load_from_disk(str(faces)).column_names
    for record in report.records:
        source = original[record["source"]]
        assert record["seed"] == record["row"]
        if not record["kept"]:
            assert record["score"] is None and "finds nothing" in record["reason"]
            continue
        row = repainted[record["source"]]
        assert pixels(row["image"]) != pixels(source["image"])
        assert pixels(row["conditioning_image"]) == pixels(source["conditioning_image"])
        assert row["annotation"] == source["annotation"] and row["text"] == source["text"]
        score = condition.score(row["image"], np.asarray(source["annotation"], np.float32))["landmark_nme"]
        assert record["score"] == pytest.approx(score)


def test_the_threshold_rejects_the_rows_whose_landmarks_moved(faces, everything, tmp_path):
    report, first = everything
    scores = sorted(r["score"] for r in report.records if r["score"] is not None)
    threshold = (scores[len(scores) // 2 - 1] + scores[len(scores) // 2]) / 2
    out = tmp_path / "filtered"
    filtered = realify_dataset(config(faces, out, threshold=threshold))
    expected = {r["source"] for r in report.records if r["score"] is not None and r["score"] <= threshold}
    kept = by_source(out)
    assert set(kept) == expected and len(filtered.rejected) == ROWS - len(expected)
    before = by_source(first)
    for source, row in kept.items():
        assert pixels(row["image"]) == pixels(before[source]["image"])  # the same seed, the same picture
    card = (out / "README.md").read_text()
    for rejected in filtered.rejected:
        assert rejected["reason"] is not None
        score = "none" if rejected["score"] is None else f"{rejected['score']:.4f}"
        assert f"| {rejected['row']} | {rejected['source']} | {score} |" in card
    assert f"| {ROWS} | {len(expected)} | 0 | {ROWS - len(expected)} | 0 |" in card
    assert f"| threshold | {threshold} |" in card and "| strength | 0.5 |" in card
    summary = json.loads((out / "realify.json").read_text())
    assert [r["row"] for r in summary["rows"]] == list(range(ROWS)) and summary["score_key"] == "landmark_nme"
    for name in ("preview.png", "score-histogram.png"):
        with Image.open(out / name) as picture:
            assert picture.width > 300

    kept_as_was = tmp_path / "with-originals"
    realify_dataset(config(faces, kept_as_was, threshold=threshold, keep_rejected_original=True))
    rows, original = datasets.load_from_disk(str(kept_as_was)), by_source(faces)
    assert rows["source"] == datasets.load_from_disk(str(faces))["source"]  # every row, in order
    for row in rows:
        expected_image = before[row["source"]] if row["source"] in expected else original[row["source"]]
        assert pixels(row["image"]) == pixels(expected_image["image"])


def test_an_interrupted_run_resumes_without_redoing_rows(faces, everything, tmp_path, monkeypatch):
    report, first = everything
    repainted = []
    run = Realifier.run

    def counting(self, rows):
        repainted.extend(rows)
        if len(repainted) == 4 and not resumed:
            os.kill(os.getpid(), signal.SIGTERM)  # preempted: the batch in hand is finished and saved
        return run(self, rows)

    resumed = False
    monkeypatch.setattr(Realifier, "run", counting)
    out = tmp_path / "real-ds"
    with pytest.raises(
        Stopped, match="4 of 8 rows done, kept in .*real-ds.partial; run the same command with --resume"
    ):
        realify_dataset(config(faces, out))
    assert not out.exists() and len(list((tmp_path / "real-ds.partial").glob("shard-*"))) == 2
    with pytest.raises(UserError, match="add --resume"):
        realify_dataset(config(faces, out))
    resumed = True
    again = realify_dataset(config(faces, out, resume=True))
    assert repainted == list(range(ROWS))  # rows 0-3 before the interruption, 4-7 after, none twice
    assert again.resumed == 4 and again.processed_this_run == 4
    assert again.records == report.records
    before = by_source(first)
    assert {s: pixels(r["image"]) for s, r in by_source(out).items()} == {
        s: pixels(r["image"]) for s, r in before.items()
    }


def test_a_controlnet_holds_the_pose_through_controlnet_img2img(
    faces, small_model_dir, small_controlnet_dir, tmp_path
):
    pipe = load_img2img_pipeline(str(small_model_dir), str(small_controlnet_dir), "cpu")
    assert type(pipe).__name__ == "StableDiffusionControlNetImg2ImgPipeline"
    out = tmp_path / "real-ds"
    settings = config(faces, out, base=str(small_model_dir), controlnet=str(small_controlnet_dir), limit=2)
    report = realify_dataset(settings)
    assert report.rows == 2
    card = (out / "README.md").read_text()
    assert f"| ControlNet | {small_controlnet_dir.name} |" in card  # its name: no local folders on the Hub
    assert str(small_controlnet_dir.parent) not in card and str(faces.parent) not in card


def test_bad_input_is_one_line(faces, tmp_path, capsys):
    def error(*argv: str) -> str:
        base = [
            "data",
            "realify",
            "--dataset",
            str(faces),
            "--base",
            str(DEMO_BASE),
            "--out",
            str(tmp_path / "o"),
        ]
        assert main([*base, *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        return err

    assert "--strength must be in (0, 1], not 0.0" in error("--strength", "0")
    assert "--strength must be in (0, 1], not 1.5" in error("--strength", "1.5")
    not_a_model = tmp_path / "not-a-model"
    not_a_model.mkdir()
    assert "is not a diffusers model folder (no unet/" in error("--base", str(not_a_model))
    unannotated = tmp_path / "unannotated"
    datasets.load_from_disk(str(faces)).remove_columns("annotation").save_to_disk(str(unannotated))
    DatasetInfo.read(faces).write(unannotated)
    capsys.readouterr()
    err = error("--dataset", str(unannotated))
    assert "has no annotation column 'annotation'" in err
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.partial").exists()


def test_the_verdict_follows_the_conditions_score_and_its_direction():
    """No face found again: rejected even without a threshold; no annotation: kept unchecked; canny's F1
    (higher is better) has a floor where face-landmarks' NME has a ceiling."""
    condition = conditions.get("face-landmarks")
    found = RealifyResult(0, "row:0", "a", 0, image=b"", scores={"landmark_nme": 0.05}, checked=True)
    lost = RealifyResult(1, "row:1", "b", 1, image=b"", scores={"landmark_nme": math.nan}, checked=True)
    unannotated = RealifyResult(2, "row:2", "c", 2, image=b"", checked=False)
    assert decide(found, condition, None) == (True, 0.05, None)
    assert decide(found, condition, 0.04) == (False, 0.05, "landmark_nme 0.0500 > --threshold 0.04")
    assert decide(lost, condition, None)[::2] == (False, NOTHING_FOUND)
    assert decide(unannotated, condition, 0.01)[0] is True
    edges = conditions.get("canny")  # higher is better: a threshold is a floor
    f1 = RealifyResult(0, "row:0", "a", 0, image=b"", scores={"edge_f1": 0.6}, checked=True)
    assert decide(f1, edges, 0.5)[0] is True and decide(f1, edges, 0.7)[0] is False


@pytest.mark.slow
def test_two_accelerate_processes_split_the_rows_and_write_one_dataset(faces, everything, tmp_path):
    out = tmp_path / "real-ds"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes=2"]
    launch += ["--num_machines=1", "--mixed_precision=no", "--dynamo_backend=no", "-m", "controlkit", "data"]
    argv = [
        "realify",
        "--dataset",
        str(faces),
        "--base",
        str(DEMO_BASE),
        "--out",
        str(out),
        "--strength",
        "0.5",
    ]
    argv += [
        "--steps",
        "4",
        "--guidance-scale",
        "3",
        "--batch-size",
        "2",
        "--shard-size",
        "2",
        "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    done = subprocess.run([*launch, *argv], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines() == [str(out)]  # the main process alone writes and reports
    report, first = everything
    summary = json.loads((out / "realify.json").read_text())
    assert summary["rows"] == report.records  # each row once, the same seed and score as in one process
    before = by_source(first)
    assert {s: pixels(r["image"]) for s, r in by_source(out).items()} == {
        s: pixels(r["image"]) for s, r in before.items()
    }


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_ray_engine_repaints_the_same_rows(faces, everything, tmp_path):
    ray = pytest.importorskip("ray")
    report, first = everything
    sigterm = signal.getsignal(signal.SIGTERM)
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = realify_dataset(config(faces, tmp_path / "real-ds", engine="ray"))
    finally:
        ray.shutdown()
        signal.signal(signal.SIGTERM, sigterm)  # ray leaves its handler behind: later tests need theirs
    assert on_ray.records == report.records
    before = by_source(first)
    assert {s: pixels(r["image"]) for s, r in by_source(tmp_path / "real-ds").items()} == {
        s: pixels(r["image"]) for s, r in before.items()
    }
