"""What a run resolves (seed, column names, resolution) lives beside the config, which stays as given."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from controlkit.metadata import ControlNetInfo, DatasetInfo
from controlkit.train.config import TrainConfig
from controlkit.train.trainer import train
from train_helpers import make_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def short_run(model, dataset, out, *extra: str) -> list[str]:
    """One step on the small model without a seed or a resolution: what a run resolves is left open."""
    return [
        f"--pretrained_model_name_or_path={model}",
        f"--dataset_name={dataset}",
        f"--output_dir={out}",
        "--train_batch_size=2",
        "--max_train_steps=1",
        "--report_to=none",
        *extra,
    ]


def test_a_run_leaves_its_config_unchanged_and_its_card_in_output_dir(small_model_dir, tmp_path):
    columns = ("photo", "landmarks", "caption")
    info = DatasetInfo(image_column="photo", conditioning_image_column="landmarks", caption_column="caption")
    dataset = make_dataset(tmp_path / "ds", n=4, columns=columns)
    info.write(dataset)
    out = tmp_path / "out"
    extra = ["--resolution=64", "--validation_rows=1", "--num_validation_images=1"]
    config = TrainConfig.from_args(short_run(small_model_dir, dataset, out, *extra))
    config.validation_inference_steps = 2
    before = dataclasses.asdict(config)
    train(config)
    assert dataclasses.asdict(config) == before and config.seed is None
    effective = yaml.safe_load((out / "train_config.yaml").read_text())
    assert isinstance(effective["seed"], int)  # the seed drawn for this run, so --config reruns it
    assert (effective["image_column"], effective["conditioning_image_column"]) == ("photo", "landmarks")
    # The model card is written without --push_to_hub: the base model and the latest grid linked.
    card = (out / "README.md").read_text()
    assert f"- Base model: `{small_model_dir}`" in card and "](validation/step-1.png)" in card
    assert (out / "validation" / "step-1.png").is_file()


@pytest.mark.parametrize(("given", "expected"), [((), 32), (("--resolution=64",), 64)])
def test_the_resolution_a_dataset_was_built_at_is_used_unless_given(
    small_model_dir, tmp_path, capsys, given, expected
):
    dataset = make_dataset(tmp_path / "ds", n=2)
    DatasetInfo(resolution=32).write(dataset)
    out = tmp_path / "out"
    train(TrainConfig.from_args(short_run(small_model_dir, dataset, out, "--seed=1", *given)))
    assert ControlNetInfo.read(out).resolution == expected
    assert yaml.safe_load((out / "train_config.yaml").read_text())["resolution"] == expected
    said = [line for line in capsys.readouterr().err.splitlines() if "was built at" in line]
    assert said == (
        [f"training at --resolution 32, the resolution {dataset} was built at"] if not given else []
    )


def test_a_resolution_is_given_when_set_by_flag_or_file_or_changed_in_python(tmp_path):
    base = ["--pretrained_model_name_or_path=base", "--dataset_name=data"]
    assert TrainConfig.from_args([*base, "--resolution=512"]).is_given("resolution")
    assert not TrainConfig.from_args(base).is_given("resolution")
    (tmp_path / "run.yaml").write_text("resolution: 512\n")
    assert TrainConfig.from_args([*base, f"--config={tmp_path / 'run.yaml'}"]).is_given("resolution")
    assert TrainConfig(resolution=64).is_given("resolution") and not TrainConfig().is_given("resolution")
    assert TrainConfig().resolution == 512
