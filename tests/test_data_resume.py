"""An interrupted build (kill -9, Ctrl-C, SIGTERM) resumed with --resume: nothing done is redone or lost."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pytest

from controlkit.data.build import BuildConfig, build_dataset
from controlkit.data.pairs import NOTHING_FOUND
from controlkit.errors import UserError
from controlkit.stopping import EXIT_STOPPED, Stopped
from data_conditions import square_picture

N = 40
TESTS = Path(__file__).parent


@pytest.fixture
def photos(tmp_path):
    """N small pictures; every fifth has no square (skipped), the others have one at a known place."""
    root = tmp_path / "photos"
    root.mkdir()
    for i in range(N):
        box = None if i % 5 == 0 else (i % 7, i % 5, i % 7 + 4, i % 5 + 4)
        square_picture((16, 16), box).save(root / f"{i:03d}.png")
    return root


def config(photos, tmp_path, markers, out_name="ds", **kwargs) -> BuildConfig:
    return BuildConfig(
        source=str(photos),
        out=str(tmp_path / out_name),
        condition="white-square",
        condition_options={"delay": 0.05, "marker_dir": str(markers)},
        progress=False,
        **kwargs,
    )


def start_build(cfg: BuildConfig) -> subprocess.Popen:
    script = (
        f"import sys; sys.path.insert(0, {str(TESTS)!r}); import data_conditions\n"
        "from controlkit.data.build import BuildConfig, build_dataset\n"
        f"build_dataset(BuildConfig(**{cfg.__dict__!r}))\n"
    )
    return subprocess.Popen([sys.executable, "-c", script], start_new_session=True, stderr=subprocess.PIPE)


def wait_for(condition, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, (
            f"the build ended before the test could interrupt it: {proc.stderr.read()}"
        )
        assert time.monotonic() < deadline, "the build made no progress"
        time.sleep(0.05)


def check_complete(photos, tmp_path, report) -> None:
    ds = datasets.load_from_disk(str(tmp_path / "ds"))
    expected = sorted(p.name for i, p in enumerate(sorted(photos.iterdir())) if i % 5)
    assert sorted(ds["source"]) == expected  # no duplicates, nothing lost
    assert report.inputs == N
    assert sorted(s["source"] for s in report.skipped) == [f"{i:03d}.png" for i in range(0, N, 5)]
    assert all(s["reason"] == NOTHING_FOUND for s in report.skipped)
    assert not (tmp_path / "ds.partial").exists()


def test_resume_after_kill_9_neither_redoes_nor_loses_work(photos, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    cfg = config(photos, tmp_path, markers, shard_size=4, num_workers=2)
    proc = start_build(cfg)
    wait_for(lambda: len(list((tmp_path / "ds.partial").glob("shard-*"))) >= 2, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.2)  # let the killed workers' last marker files land
    annotated_before = len(list(markers.iterdir()))
    assert not (tmp_path / "ds").exists()

    cfg.resume, cfg.num_workers = True, 1  # the worker count may change between runs
    report = build_dataset(cfg)
    assert 8 <= report.resumed < N
    assert report.processed_this_run == N - report.resumed
    assert len(list(markers.iterdir())) - annotated_before == N - report.resumed  # finished work not redone
    check_complete(photos, tmp_path, report)


def test_ctrl_c_keeps_the_finished_work(photos, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    cfg = config(photos, tmp_path, markers, shard_size=1000)  # no shard would be written before the end
    proc = start_build(cfg)
    wait_for(lambda: len(list(markers.iterdir())) >= 6, proc)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) != 0
    manifests = list((tmp_path / "ds.partial").glob("shard-*/manifest.json"))
    assert len(manifests) == 1  # the partial shard was written on the way out

    cfg.resume = True
    report = build_dataset(cfg)
    assert report.resumed >= 5
    assert report.processed_this_run == N - report.resumed
    check_complete(photos, tmp_path, report)


def start_cli(args: list[str]) -> subprocess.Popen:
    """`controlkit ARGS` in its own process group (a machine going away signals every process in it)."""
    script = (
        f"import sys; sys.path.insert(0, {str(TESTS)!r}); import data_conditions\n"
        f"from controlkit.cli import main; sys.exit(main({args!r}))\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", script], start_new_session=True, stderr=subprocess.PIPE, text=True
    )


def cli_args(cfg: BuildConfig) -> list[str]:
    return [
        "data", "build", "--source", cfg.source, "--out", cfg.out, "--condition", cfg.condition,
        "--condition-options", json.dumps(cfg.condition_options), "--shard-size", str(cfg.shard_size),
        "--num-workers", str(cfg.num_workers), "--no-progress",
    ]  # fmt: skip


def rows(folder) -> list[dict]:
    ds = datasets.load_from_disk(str(folder)).cast_column("image", datasets.Image(decode=False))
    ds = ds.cast_column("conditioning_image", datasets.Image(decode=False))
    return sorted(ds, key=lambda row: row["source"])


def test_sigterm_saves_the_shard_in_hand_and_resume_gives_the_rows_of_an_uninterrupted_build(
    photos, tmp_path
):
    """Preemption: SIGTERM to the build and its workers; it writes what is finished, says how far it got,
    exits 75; --resume (with another shard size) ends with exactly the rows of a build never stopped."""
    markers = tmp_path / "markers"
    markers.mkdir()
    cfg = config(photos, tmp_path, markers, shard_size=6, num_workers=2)
    proc = start_cli(cli_args(cfg))
    wait_for(lambda: len(list(markers.iterdir())) >= 10, proc)
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=60) == EXIT_STOPPED
    err = proc.stderr.read().strip().splitlines()
    match = re.fullmatch(
        r"controlkit data build: stopped: (\d+) of 40 inputs done, kept in (.+); "
        r"run the same command with --resume to finish",
        err[-1],
    )
    assert match and match[2] == str(tmp_path / "ds.partial"), err
    manifests = (tmp_path / "ds.partial").glob("shard-*/manifest.json")
    done = sum(len(json.loads(m.read_text())) for m in manifests)
    assert (
        int(match[1]) == done and 0 < done < N
    )  # every input it got through is saved, the shard in hand too

    cfg.resume, cfg.shard_size, cfg.num_workers = True, 5, 1  # how the work is cut up may change
    report = build_dataset(cfg)
    assert report.resumed == done and report.processed_this_run == N - done
    check_complete(photos, tmp_path, report)
    whole = config(photos, tmp_path, markers, out_name="whole")
    build_dataset(whole)
    assert rows(tmp_path / "ds") == rows(tmp_path / "whole")


def test_a_second_signal_stops_at_once(photos, tmp_path):
    """Ctrl-C twice: the second does not wait for the input in hand (a 1 s annotation) to be saved."""
    markers = tmp_path / "markers"
    markers.mkdir()
    cfg = config(photos, tmp_path, markers)
    cfg.condition_options["delay"] = 1.0
    proc = start_cli(cli_args(cfg))
    wait_for(lambda: len(list(markers.iterdir())) >= 2, proc)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    assert proc.stderr.read().strip().splitlines()[-1] == "controlkit data build: interrupted"
    assert not list(tmp_path.glob("ds.partial/shard-*"))  # stopped before saving the input in hand


def test_a_resume_with_another_limit_is_refused(photos, tmp_path, monkeypatch):
    """--limit decides which rows there are: a resume with another one is refused like other settings."""
    from data_conditions import WhiteSquare

    annotate, seen = WhiteSquare.annotate, []

    def stopping(self, image):
        seen.append(1)
        if len(seen) == 5:
            os.kill(os.getpid(), signal.SIGTERM)
        return annotate(self, image)

    monkeypatch.setattr(WhiteSquare, "annotate", stopping)
    cfg = config(photos, tmp_path, tmp_path, limit=20, shard_size=2)
    cfg.condition_options = {}
    with pytest.raises(Stopped, match="5 of 20 inputs done"):
        build_dataset(cfg)
    cfg.resume, cfg.limit = True, 10
    with pytest.raises(UserError, match=r"--resume with different settings \(limit\)"):
        build_dataset(cfg)
    cfg.limit = 20
    assert build_dataset(cfg).inputs == 20
