"""The held-out samples an evaluation generates from: rows of a dataset the ControlNet did not train on.

Which rows (said in the report):
- ``--held-out N``: N rows chosen by ``--seed``, whatever the dataset;
- the training dataset, trained with ``--max_train_samples``: the rows that subset left out (training
  takes the first rows of the decodable rows shuffled by its seed; the rest are these, in that order);
  trained on every row, nothing is held out, and the user is told how to get held-out rows;
- any other dataset (a held-out split): rows chosen by ``--seed``.
Rows are read as training reads them (the same columns, the same decodable rows). Each sample is brought to
the ControlNet's resolution as training does (resize the short side, centre-crop), its annotation moved
with it by the condition; a dataset without an annotation column is annotated from its images. A row
whose annotation is empty is passed over.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from controlkit.conditions import Annotation, Condition
from controlkit.console import say
from controlkit.errors import UserError
from controlkit.images import to_rgb
from controlkit.metadata import ControlNetInfo, DatasetInfo

_COLUMNS = ("image_column", "conditioning_image_column", "caption_column", "annotation_column")


@dataclass
class HeldOutSample:
    """A prompt, the conditioning image the ControlNet sees (resolution x resolution), and its annotation
    in that frame; ``row``: where it came from (-1 when not from a dataset row)."""

    prompt: str
    conditioning_image: Image.Image
    annotation: Annotation
    row: int = -1


@dataclass
class HeldOut:
    """The samples, the condition that scores them, and how they were chosen (for the report)."""

    samples: list[HeldOutSample]
    condition: Condition
    dataset: str
    how: str


def training_record(controlnet: str) -> dict[str, Any] | None:
    """The effective training config beside a `controlkit train` output folder (None elsewhere)."""
    from controlkit.train.config import CONFIG_FILE_NAME, load_config_file

    path = Path(controlnet) / CONFIG_FILE_NAME
    return load_config_file(path) if path.is_file() else None


def fit_sample(
    prompt: str,
    conditioning: Image.Image,
    annotation: Annotation,
    frame: tuple[int, int],
    condition: Condition,
    resolution: int,
    row: int = -1,
) -> HeldOutSample:
    """A sample at ``resolution`` px: the conditioning image resized and centre-cropped as training does, the
    annotation (in the ``frame`` of size (w, h)) moved with it by the condition."""
    from controlkit.train.data import resize_center_crop

    square = (resolution, resolution)
    if frame != square:
        annotation = condition.resize_center_crop(annotation, frame, square)
    return HeldOutSample(prompt, resize_center_crop(conditioning, resolution), annotation, row)


def _is_image_folder(name: str) -> bool:
    folder = Path(name)
    return (folder / "metadata.jsonl").is_file() and not (folder / "state.json").is_file()


def _same_dataset(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    if Path(a).exists() and Path(b).exists():
        return Path(a).resolve() == Path(b).resolve()
    return a == b


def _training_view(dataset: str, record: dict | None, same: bool, resolution: int):
    """The dataset as training reads it (decodable rows; its columns), before any ``--max_train_samples``."""
    from controlkit.train.cache import default_cache_root
    from controlkit.train.config import TrainConfig
    from controlkit.train.data import load_training_data

    kept = {k: v for k, v in (record or {}).items() if same and k in _COLUMNS}
    source = {"train_data_dir": dataset} if _is_image_folder(dataset) else {"dataset_name": dataset}
    if record:
        kept.update(
            {k: record[k] for k in ("cache_dir", "dataset_config_name", "latents_cache_dir") if k in record}
        )
    values = {**kept, **source, "resolution": resolution}
    # Reading data needs no model; the flags given are those the run used, so the same columns are chosen.
    config = TrainConfig(pretrained_model_name_or_path="-", **values, given=tuple(values))
    return load_training_data(config, seed=0, cache_root=default_cache_root(config))


def left_out_rows(size: int, trained: int, seed: int) -> list[int]:
    """The rows ``--max_train_samples trained`` left out of ``size`` decodable rows: training keeps the
    first ``trained`` of the rows shuffled by ``datasets`` with its seed (a permutation fixed by the seed
    and the length), so the rest, in that order, were never seen."""
    from datasets import Dataset

    order = Dataset.from_dict({"row": list(range(size))}).shuffle(seed=seed, keep_in_memory=True)
    return list(order["row"])[trained:]


def _rows(
    config, size: int, dataset: str, record: dict | None, trained_on: str | None
) -> tuple[list[int], str]:
    """Candidate rows in the order they are taken, and how they were chosen."""
    seeded = np.random.default_rng(config.seed).permutation(size).tolist()
    if config.held_out:
        return seeded, f"rows chosen by seed {config.seed} (--held-out)"
    if not _same_dataset(dataset, trained_on):
        return seeded, f"rows chosen by seed {config.seed} (not the training dataset: every row is held out)"
    trained = (record or {}).get("max_train_samples")
    if record is None or trained is None or trained >= size:
        raise UserError(
            f"{config.controlnet} was trained on every row of {dataset}, so none is held out: give a "
            "held-out dataset (--dataset) or --held-out N (N rows chosen by seed, which it trained on)"
        )
    return left_out_rows(size, trained, record["seed"]), (
        f"rows training left out (it trained on --max_train_samples {trained} of {size})"
    )


def choose_condition(
    config, where: str, dataset: DatasetInfo, controlnet: ControlNetInfo, resolution: int
) -> Condition:
    """``--condition``, else the dataset's (``where``), else the ControlNet's, with its recorded options;
    scoring as suits the ControlNet's resolution."""
    from controlkit import conditions

    name = config.condition or dataset.condition or controlnet.condition
    if not name:
        raise UserError(f"{where} records no condition (controlkit.json): pass --condition NAME")
    options = config.condition_options
    if not options:
        recorded = [info.condition_options for info in (dataset, controlnet) if info.condition == name]
        options = recorded[0] if recorded else {}
    return conditions.get(name, **options).for_resolution(resolution)


def _caption(value: Any) -> str:
    if isinstance(value, list | tuple | np.ndarray):
        return str(value[0]) if len(value) else ""
    return str(value)


def _sample(row: dict, index: int, data, condition: Condition, resolution: int) -> HeldOutSample | None:
    settings = data.settings
    image = row[settings.image_column]
    if settings.annotation_column in row:
        record = row[settings.annotation_column]
        annotation = None if record is None else condition.from_record(record)
    else:
        annotation = condition.annotate(to_rgb(image))
    if condition.is_empty(annotation):
        return None
    conditioning = to_rgb(row[settings.conditioning_image_column])
    prompt = _caption(row[settings.caption_column])
    return fit_sample(prompt, conditioning, annotation, image.size, condition, resolution, index)


def samples_from_rows(
    data, rows: list[int], condition: Condition, resolution: int, count: int
) -> list[HeldOutSample]:
    """Up to ``count`` samples from ``data`` (a ``TrainingData``), taking ``rows`` in order and passing over
    rows whose annotation is empty."""
    samples: list[HeldOutSample] = []
    for index in rows:
        if len(samples) == count:
            break
        sample = _sample(data.dataset[index], index, data, condition, resolution)
        if sample is not None:
            samples.append(sample)
    return samples


def left_out_samples(
    config, seed: int, condition: Condition, resolution: int, count: int
) -> list[HeldOutSample]:
    """Samples from the rows a training run's ``--max_train_samples`` leaves out ([] when it leaves none);
    ``config`` is its ``TrainConfig``, ``seed`` the seed it resolved."""
    import dataclasses

    from controlkit.train.cache import default_cache_root
    from controlkit.train.data import load_training_data

    if config.max_train_samples is None:
        return []
    full = dataclasses.replace(
        config, max_train_samples=None, resolution=resolution, given=(*config.given, "resolution")
    )
    data = load_training_data(full, seed=seed, cache_root=default_cache_root(full))
    rows = left_out_rows(len(data.dataset), config.max_train_samples, seed)
    return samples_from_rows(data, rows, condition, resolution, count)


def load_held_out(config, info: ControlNetInfo, prompts: list[str] | None = None) -> HeldOut:
    """``config.samples`` held-out samples (an ``EvalConfig``) for the ControlNet ``info`` describes."""
    record = training_record(config.controlnet)
    trained_on = (record or {}).get("dataset_name") or (record or {}).get("train_data_dir") or info.dataset
    dataset = config.dataset or trained_on
    if not dataset:
        raise UserError(f"{config.controlnet} records no training dataset: pass --dataset")
    same = _same_dataset(dataset, trained_on)
    data = _training_view(str(dataset), record, same, info.resolution)
    condition = choose_condition(config, str(dataset), data.info, info, info.resolution)
    rows, how = _rows(config, len(data.dataset), str(dataset), record, trained_on)
    samples = samples_from_rows(data, rows, condition, info.resolution, config.samples)
    if len(samples) < 2:
        raise UserError(
            f"{dataset} gave {len(samples)} usable held-out rows; the evaluation needs at least 2"
        )
    if len(samples) < config.samples:
        say(f"{dataset} has only {len(samples)} usable held-out rows (asked for {config.samples})")
    if prompts:
        for k, sample in enumerate(samples):
            sample.prompt = prompts[k % len(prompts)]
    return HeldOut(samples, condition, str(dataset), f"{len(samples)} {how}")
