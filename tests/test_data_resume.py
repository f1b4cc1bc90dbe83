"""An interrupted build (kill -9, Ctrl-C) resumed with --resume: nothing finished is redone or lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pytest

from controlkit.data.build import BuildConfig, build_dataset
from controlkit.data.pairs import NOTHING_FOUND
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


def config(photos, tmp_path, markers, **kwargs) -> BuildConfig:
    return BuildConfig(
        source=str(photos),
        out=str(tmp_path / "ds"),
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
