"""Training data: find the dataset, resolve its columns and resolution, check its rows, transform.

The dataset's record (``DatasetInfo``, written by `controlkit data build`) is read once; column flags and
``--resolution`` that the user did not give take its values, and the run's ``RunSettings`` hold the result.

Sources: a Hub dataset id, a `datasets.save_to_disk` folder (what `controlkit data build` writes), parquet
files or a folder of them, or an image folder (`--train_data_dir`) whose metadata.jsonl names each
`file_name` and `conditioning_image_file_name`. Transforms follow the diffusers example: resize the short
side to the resolution, center-crop; the image goes to [-1, 1], the conditioning image to [0, 1].

Every row is checked before training: a row without a caption is an error naming it (its metadata.jsonl
line); rows whose image or conditioning image is missing or does not decode are skipped and named, and
more than ``--max_unusable_rows_fraction`` of them stops the run (a wrong folder, not a few bad files).
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from controlkit.conditions.geometry import resize_center_crop_geometry
from controlkit.console import say
from controlkit.errors import UserError, first_line
from controlkit.images import to_rgb
from controlkit.metadata import DatasetInfo
from controlkit.paths import check_exists
from controlkit.train.config import RunSettings, TrainConfig

TRANSFORM_VERSION = "resize-bilinear+center-crop/v1"
_COLUMN_FLAGS = ("image_column", "conditioning_image_column", "caption_column")


@dataclass
class TrainingData:
    """The dataset to train on, with what the trainer needs to know about it."""

    dataset: Any  # datasets.Dataset, decodable images only
    settings: RunSettings  # its columns and resolution, and the run's seed
    fingerprint: str  # stable across runs for the same data: a key of the latents cache
    info: DatasetInfo = field(default_factory=DatasetInfo)  # what `controlkit data build` recorded
    skipped: list[int] = field(default_factory=list)  # indices of rows whose images failed to decode
    source: str = ""


def load_training_data(config: TrainConfig, *, seed: int, cache_root: Path | None = None) -> TrainingData:
    """Load, name columns, drop undecodable rows and subsample, as the config and the dataset's record say.

    The dataset's ``DatasetInfo`` is read once: where a column flag or ``--resolution`` was not given, the
    recorded value is used. ``seed`` is the run's (the same on every process): it picks the subsample.
    """
    if config.train_data_dir is not None:
        source = str(config.train_data_dir)
        dataset, fingerprint, lines = _load_image_folder(Path(source))
        info = DatasetInfo.read(source)
        where = f"{Path(source) / 'metadata.jsonl'} line"
    else:
        source = config.dataset_name
        dataset, fingerprint, recorded_in = _load_named(config)
        info = DatasetInfo.read(recorded_in)
        lines, where = list(range(len(dataset))), f"{source} row"
    settings = resolve_settings(config, info, dataset.column_names, seed, source)
    _check_captions(dataset, settings.caption_column, lines, where)
    for column in (settings.image_column, settings.conditioning_image_column):
        dataset = _as_image_column(dataset, column)
    unusable = _unusable_rows(dataset, settings, fingerprint, cache_root)
    skipped = sorted(unusable)
    if skipped:
        _check_unusable_share(unusable, len(dataset), source, config.max_unusable_rows_fraction)
        bad = set(skipped)
        dataset = dataset.select([i for i in range(len(dataset)) if i not in bad], keep_in_memory=True)
    if config.max_train_samples is not None:
        n = min(config.max_train_samples, len(dataset))
        dataset = dataset.shuffle(seed=seed, keep_in_memory=True).select(range(n), keep_in_memory=True)
        fingerprint = digest(fingerprint, "max", config.max_train_samples, seed)
    if len(dataset) == 0:
        raise UserError(f"the training dataset {source} has no usable rows")
    return TrainingData(dataset, settings, fingerprint, info=info, skipped=skipped, source=source)


def resolve_settings(
    config: TrainConfig, info: DatasetInfo, column_names: list[str], seed: int, source: str
) -> RunSettings:
    """Flags the user gave win; the others give way to the dataset's record (said for the resolution)."""
    columns = {}
    for flag in _COLUMN_FLAGS:
        value = getattr(config, flag) if config.is_given(flag) else getattr(info, flag)
        if value not in column_names:
            raise UserError(
                f"column {value!r} (--{flag}) is not in the dataset; "
                f"its columns are: {', '.join(column_names)}"
            )
        columns[flag] = value
    annotation = config.annotation_column if config.is_given("annotation_column") else info.annotation_column
    resolution = config.resolution
    if info.resolution is not None and not config.is_given("resolution"):
        resolution = info.resolution
        if resolution <= 0 or resolution % 8 != 0:
            raise UserError(
                f"{source} was built at {resolution} px, not a multiple of 8; give --resolution to train it"
            )
        say(f"training at --resolution {resolution}, the resolution {source} was built at")
    return RunSettings(seed=seed, resolution=resolution, annotation_column=annotation, **columns)


def digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:24]


def _first_split(loaded: Any, name: str) -> Any:
    from datasets import DatasetDict

    if isinstance(loaded, DatasetDict):
        if "train" in loaded:
            return loaded["train"]
        if len(loaded) == 1:
            return next(iter(loaded.values()))
        raise UserError(f"{name} has splits {sorted(loaded)} and none is called 'train'")
    return loaded


def _load_named(config: TrainConfig) -> tuple[Any, str, str]:
    """The dataset ``--dataset_name`` names, its fingerprint, and the folder or Hub id of its record."""
    import datasets

    name = config.dataset_name
    local = Path(name)
    is_local = check_exists(name, "dataset")
    try:
        if not is_local:
            loaded = datasets.load_dataset(name, config.dataset_config_name, cache_dir=config.cache_dir)
            dataset = _first_split(loaded, name)
            return dataset, dataset._fingerprint, name
        if local.is_dir() and ((local / "state.json").exists() or (local / "dataset_dict.json").exists()):
            dataset = _first_split(datasets.load_from_disk(str(local)), name)
            return dataset, dataset._fingerprint, name
        if local.is_dir():
            parquet = sorted(local.rglob("*.parquet"))
        else:
            parquet = [local] if local.suffix == ".parquet" else []
        if parquet:
            files = [str(p) for p in parquet]
            dataset = datasets.load_dataset(
                "parquet", data_files={"train": files}, split="train", cache_dir=config.cache_dir
            )
            stats = [(f, Path(f).stat().st_size, Path(f).stat().st_mtime_ns) for f in files]
            return dataset, digest("parquet", stats), str(local if local.is_dir() else local.parent)
        loaded = datasets.load_dataset(str(local), config.dataset_config_name, cache_dir=config.cache_dir)
    except (FileNotFoundError, ConnectionError, ValueError) as exc:
        raise UserError(f"cannot load dataset {name}: {first_line(exc)}") from exc
    dataset = _first_split(loaded, name)
    return dataset, dataset._fingerprint, name


def _load_image_folder(folder: Path) -> tuple[Any, str, list[int]]:
    """An image folder described by metadata.jsonl (paths must stay inside the folder), its fingerprint,
    and the metadata.jsonl line number of each row."""
    from datasets import Dataset
    from datasets import Image as ImageFeature

    meta = folder / "metadata.jsonl"
    if not meta.is_file():
        raise UserError(
            f"{folder} has no metadata.jsonl (one JSON line per image: file_name, "
            "conditioning_image_file_name, text)"
        )
    root = folder.resolve()
    rows: dict[str, list] = {}
    numbered = [(n, line) for n, line in enumerate(meta.read_text().splitlines(), 1) if line.strip()]
    for row, (number, line) in enumerate(numbered, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{meta} line {number} is not JSON: {exc}") from exc
        for key in ("file_name", "conditioning_image_file_name"):
            if key not in record:
                raise UserError(f"{meta} line {number} has no {key!r}")
            path = (folder / record[key]).resolve()
            if not path.is_relative_to(root):
                raise UserError(f"{meta} line {number}: {record[key]!r} points outside the dataset folder")
            record[key] = str(path)
        record["image"] = record.pop("file_name")
        record["conditioning_image"] = record.pop("conditioning_image_file_name")
        for key, value in record.items():
            rows.setdefault(key, [None] * (row - 1)).append(value)
        for values in rows.values():
            values.extend([None] * (row - len(values)))
    dataset = Dataset.from_dict(rows)
    for column in ("image", "conditioning_image"):
        dataset = dataset.cast_column(column, ImageFeature())
    stats = [
        (p, Path(p).stat().st_size, Path(p).stat().st_mtime_ns)
        for p in rows["image"] + rows["conditioning_image"]
        if Path(p).exists()
    ]
    return dataset, digest("imagefolder", meta.read_text(), stats), [n for n, _ in numbered]


def _is_caption(value: Any) -> bool:
    if isinstance(value, str):
        return True
    return isinstance(value, (list, tuple)) and bool(value) and all(isinstance(v, str) for v in value)


def _check_captions(dataset, column: str, lines: list[int], where: str) -> None:
    """Every row has a caption (a string or a list of strings), or one line naming the first that don't."""
    values = dataset[column]
    bad = [i for i, value in enumerate(values) if not _is_caption(value)]
    if bad:
        shown = ", ".join(str(lines[i]) for i in bad[:5]) + (", ..." if len(bad) > 5 else "")
        raise UserError(
            f"{len(bad)} row(s) have no caption in {column!r} ({where} {shown}: "
            f"{values[bad[0]]!r}); give every row a caption (a string or a list of strings)"
        )


def _as_image_column(dataset, column: str):
    from datasets import Image as ImageFeature

    if not isinstance(dataset.features[column], ImageFeature):
        try:
            dataset = dataset.cast_column(column, ImageFeature())
        except (TypeError, ValueError) as exc:
            raise UserError(f"column {column!r} does not hold images ({dataset.features[column]})") from exc
    return dataset


MISSING, UNDECODABLE = "missing", "undecodable"


def _problem(value: dict | None, column: str) -> list | None:
    """[reason, what] for an image that cannot be used (its path, else its column), or None."""
    if value is None:
        return [MISSING, f"no {column}"]
    path = value.get("path")
    if not value.get("bytes") and (not path or not Path(path).is_file()):
        return [MISSING, path or f"no {column}"]
    try:
        with Image.open(io.BytesIO(value["bytes"]) if value.get("bytes") else path) as image:
            image.load()
        return None
    except Exception:  # any decoder failure means the row is skipped, never a crash
        return [UNDECODABLE, path or column]


def _unusable_rows(
    dataset, settings: RunSettings, fingerprint: str, cache_root: Path | None
) -> dict[int, list]:
    """{row: [reason, what]} for rows whose image or conditioning image is missing or fails to decode;
    remembered per dataset."""
    from datasets import Image as ImageFeature
    from tqdm.auto import tqdm

    names = [settings.image_column, settings.conditioning_image_column]
    record = None
    if cache_root is not None:
        record = cache_root / "decode-checks" / f"{digest(fingerprint, names, 'v2')}.json"
        if record.is_file():
            return {int(k): v for k, v in json.loads(record.read_text()).items()}
    raw = dataset.select_columns(names)
    for name in names:
        raw = raw.cast_column(name, ImageFeature(decode=False))

    def check(index: int) -> list | None:
        row = raw[index]
        return next((p for name in names if (p := _problem(row[name], name)) is not None), None)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(
            tqdm(pool.map(check, range(len(raw))), total=len(raw), desc="checking images", leave=False)
        )
    unusable = {i: problem for i, problem in enumerate(results) if problem is not None}
    if record is not None:
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(unusable))
    return unusable


def _shown(what: list[str], source: str) -> str:
    """The first few paths (relative to the dataset folder when inside it)."""
    root = Path(source).resolve()
    names = [str(Path(p).relative_to(root)) if Path(p).is_relative_to(root) else p for p in what[:3]]
    return ", ".join(names) + (", ..." if len(what) > 3 else "")


def _check_unusable_share(unusable: dict[int, list], total: int, source: str, allowed: float) -> None:
    """Name the unusable rows in one line: a note when they are few, an error beyond ``allowed``."""
    parts = []
    for reason, label in ((MISSING, "a missing file"), (UNDECODABLE, "an image that fails to decode")):
        what = [w for r, w in unusable.values() if r == reason]
        if what:
            parts.append(f"{len(what)} with {label} ({_shown(what, source)})")
    summary = f"{len(unusable)} of {total} rows of {source}: {'; '.join(parts)}"
    share = len(unusable) / total
    if share > allowed:
        raise UserError(
            f"cannot use {summary}; that is {share:.0%} of the rows, more than --max_unusable_rows_fraction "
            f"{allowed:g} allows (fix the paths, or raise it to train on the rest)"
        )
    say(f"skipped {summary}")


def resize_center_crop(image: Image.Image, resolution: int) -> Image.Image:
    """Resize the short side to ``resolution`` (bilinear, antialiased) and cut the center square."""
    geometry = resize_center_crop_geometry(image.size, (resolution, resolution))
    return geometry.image(to_rgb(image), Image.Resampling.BILINEAR)


def to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB -> float tensor (3, H, W) in [0, 1]."""
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def pick_caption(value: Any, index: int, seed: int | None, column: str) -> str:
    """A row's caption; for a list of captions, one chosen by (seed, row) so every run and cache agree."""
    if not _is_caption(value):
        raise UserError(f"caption column {column!r} should hold strings or lists of strings, got {value!r}")
    if isinstance(value, str):
        return value
    return random.Random(f"{seed}-{index}").choice(list(value))


class PairedImages(torch.utils.data.Dataset):
    """Rows -> tensors: pixel_values [-1,1], conditioning_pixel_values [0,1], input_ids, index."""

    def __init__(self, data: TrainingData, tokenizer):
        self.data, self.settings, self.tokenizer = data, data.settings, tokenizer

    def __len__(self) -> int:
        return len(self.data.dataset)

    def conditioning(self, index: int, row: dict[str, Any] | None = None) -> torch.Tensor:
        row = self.data.dataset[index] if row is None else row
        image = row[self.settings.conditioning_image_column]
        return to_tensor(resize_center_crop(image, self.settings.resolution))

    def target(self, index: int, row: dict[str, Any] | None = None) -> dict[str, torch.Tensor]:
        row = self.data.dataset[index] if row is None else row
        settings = self.settings
        pixels = to_tensor(resize_center_crop(row[settings.image_column], settings.resolution)) * 2.0 - 1.0
        return {"pixel_values": pixels, "input_ids": self.input_ids(index, row)}

    def input_ids(self, index: int, row: dict[str, Any]) -> torch.Tensor:
        settings = self.settings
        caption = pick_caption(row[settings.caption_column], index, settings.seed, settings.caption_column)
        return tokenize(self.tokenizer, [caption])[0]

    def __getitem__(self, index: int) -> dict[str, Any]:
        # One read per row: decoding the images dominates the data loader's time.
        row = self.data.dataset[index]
        return {
            "index": index,
            "conditioning_pixel_values": self.conditioning(index, row),
            **self.target(index, row),
        }


def tokenize(tokenizer, captions: list[str]) -> torch.Tensor:
    return tokenizer(
        captions,
        max_length=tokenizer.model_max_length,
        padding="max_length",
        truncation=True,
        return_tensors="pt",
    ).input_ids


def collate(examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack each field; the conditioning images stay float32 (the ControlNet trains in fp32)."""
    batch: dict[str, torch.Tensor] = {}
    for key in examples[0]:
        values = [example[key] for example in examples]
        batch[key] = torch.tensor(values) if key == "index" else torch.stack(values)
    return batch
