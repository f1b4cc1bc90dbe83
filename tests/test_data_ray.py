"""`--engine ray`: the same per-image function as a Ray Data job, on a local one-CPU Ray instance."""

from __future__ import annotations

import functools
import signal

import datasets
import pytest

from controlkit.data.build import BuildConfig, build_dataset
from controlkit.data.shards import ShardStore
from controlkit.stopping import StopRequest
from data_conditions import square_picture

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
ray = pytest.importorskip("ray")


def test_ray_engine_builds_the_same_dataset_as_local_processes(tmp_path, monkeypatch):
    """... and SIGTERM stays the build's own: ray.init (which installs a handler that exits at once) runs
    before the build takes SIGTERM over, so a preempted Ray build still saves its shard and says how far."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(4):
        square_picture((32, 32), (i, 2 * i, i + 9, 2 * i + 9)).save(photos / f"{i}.png")
    (photos / "broken.png").write_bytes(b"not a png")

    def build(engine: str):
        out = tmp_path / engine
        config = BuildConfig(
            source=str(photos), out=str(out), condition="canny", engine=engine, progress=False
        )
        return build_dataset(config), datasets.load_from_disk(str(out))

    local_report, local = build("local")
    sigterm, handlers, write = signal.getsignal(signal.SIGTERM), [], ShardStore.write

    def recording(self, *args):
        handlers.append(signal.getsignal(signal.SIGTERM))
        return write(self, *args)

    monkeypatch.setattr(ShardStore, "write", recording)
    monkeypatch.setattr(ray, "init", functools.partial(ray.init, num_cpus=1, include_dashboard=False))
    try:
        ray_report, on_ray = build("ray")  # the build starts Ray itself
    finally:
        ray.shutdown()
        signal.signal(signal.SIGTERM, sigterm)  # ray leaves its handler behind: later tests need theirs
    assert handlers and all(isinstance(getattr(h, "__self__", None), StopRequest) for h in handlers)
    assert on_ray["source"] == local["source"] == ["0.png", "1.png", "2.png", "3.png"]
    assert on_ray["annotation"] == local["annotation"]
    assert ray_report.skipped == local_report.skipped and "broken.png" in ray_report.skipped[0]["source"]
