"""`--engine ray`: the same per-image function as a Ray Data job, on a local one-CPU Ray instance."""

from __future__ import annotations

import datasets
import pytest

from controlkit.data.build import BuildConfig, build_dataset
from data_conditions import square_picture

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
ray = pytest.importorskip("ray")


def test_ray_engine_builds_the_same_dataset_as_local_processes(tmp_path):
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
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        ray_report, on_ray = build("ray")
    finally:
        ray.shutdown()
    assert on_ray["source"] == local["source"] == ["0.png", "1.png", "2.png", "3.png"]
    assert on_ray["annotation"] == local["annotation"]
    assert ray_report.skipped == local_report.skipped and "broken.png" in ray_report.skipped[0]["source"]
