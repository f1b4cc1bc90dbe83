"""Where the photos come from: an image folder, a Hugging Face dataset, FaceSynthetics, or synthetic faces.

A source lists its inputs as small picklable items (``data.inputs``) with a stable key, so a resumed
build can skip the keys already done and worker processes can load the images themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from controlkit.data.facesynthetics_source import PREFIX as FACESYNTHETICS
from controlkit.data.facesynthetics_source import FaceSyntheticsSource
from controlkit.data.inputs import FileItem, InputItem, Source
from controlkit.data.synthetic_source import NAME as SYNTHETIC
from controlkit.data.synthetic_source import SyntheticSource
from controlkit.errors import UserError, first_line
from controlkit.paths import is_hub_id, public_name

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
GROUND_TRUTH: dict[str, str] = {
    SYNTHETIC: SyntheticSource.annotation_format,
    f"{FACESYNTHETICS}DIR": FaceSyntheticsSource.annotation_format,
}
"""The sources whose inputs carry ground-truth annotations (``--landmarks ground-truth``), and its format."""
_DATA_FILE_EXTENSIONS = (".parquet", ".arrow", ".jsonl", ".csv")


class FolderSource(Source):
    """Every jpg/png/webp/bmp file under a folder, recursively, in sorted order.

    Every other file is ``ignored``, with the reason: another extension (a GIF, a TIFF, a text file), a
    hidden file, or a hidden folder (one entry for the folder, with its number of files).
    """

    def __init__(self, root: Path):
        self.root = root.resolve()
        self.files: list[Path] = []
        self.ignored: list[dict[str, str]] = []
        hidden: dict[str, int] = {}
        for path in sorted(p for p in self.root.rglob("*") if p.is_file()):
            parts = path.relative_to(self.root).parts
            key = "/".join(parts)
            if any(part.startswith(".") for part in parts[:-1]):
                folder = "/".join(parts[: next(i for i, p in enumerate(parts) if p.startswith(".")) + 1])
                hidden[folder] = hidden.get(folder, 0) + 1
            elif parts[-1].startswith("."):
                self.ignored.append({"source": key, "reason": "a hidden file"})
            elif path.suffix.lower() not in IMAGE_EXTENSIONS:
                self.ignored.append({"source": key, "reason": _unsupported(path.suffix)})
            else:
                self.files.append(path)
        self.ignored += [
            {"source": f"{folder}/", "reason": f"a hidden folder ({count} files)"}
            for folder, count in hidden.items()
        ]
        self.description = f"the photo folder {self.root.name}/ ({len(self.files)} images)"

    def __len__(self) -> int:
        return len(self.files)

    def items(self, skip: set[str] = frozenset(), limit: int | None = None) -> Iterator[InputItem]:
        for path in self.files[:limit]:
            key = path.relative_to(self.root).as_posix()
            if key not in skip:
                yield FileItem(key=key, source=key, path=str(path))


def _unsupported(suffix: str) -> str:
    kind = f"extension {suffix}" if suffix else "no extension"
    return f"unsupported file type ({kind}); photos are read from {', '.join(IMAGE_EXTENSIONS)} files"


def ground_truth_format(source: str) -> str | None:
    """The format of the ground-truth annotations the source named by ``--source`` carries; None: none."""
    if source.startswith(FACESYNTHETICS):
        return FaceSyntheticsSource.annotation_format
    return GROUND_TRUTH.get(source)


def load_split(name: str, split: str) -> Any:
    """One split of a ``datasets`` dataset: a ``save_to_disk`` folder, a folder of data files or a Hub id."""
    import datasets

    try:
        saved = _is_saved_dataset(Path(name))
        loaded = datasets.load_from_disk(name) if saved else datasets.load_dataset(name)
    except Exception as exc:  # datasets raises many kinds; the user needs one line either way
        where = "" if Path(name).exists() else " (no such folder, so it was looked up on the Hub)"
        raise UserError(f"cannot load dataset {name!r}{where}: {first_line(exc)}") from exc
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise UserError(f"dataset {name!r} has no split {split!r}; it has: {', '.join(loaded)}")
        loaded = loaded[split]
    return loaded


class HFDatasetSource(Source):
    """One split of a ``datasets`` dataset (saved folder, local dataset folder or Hub id)."""

    def __init__(self, name: str, split: str, image_column: str, keep_columns: tuple[str, ...]):
        import datasets

        self.description = f"{public_name(name)} (split {split}, column {image_column})"
        self.name, self.split = name, split
        loaded = load_split(name, split)
        self.columns = tuple(loaded.column_names)
        for column in (image_column, *keep_columns):
            if column not in self.columns:
                raise UserError(
                    f"dataset {name!r} has no column {column!r}; it has: {', '.join(self.columns)}"
                )
        if isinstance(loaded.features[image_column], datasets.Image):
            loaded = loaded.cast_column(image_column, datasets.Image(decode=False))
        self.dataset = loaded.select_columns([image_column, *keep_columns])
        self.image_column, self.keep_columns = image_column, keep_columns

    def __len__(self) -> int:
        return len(self.dataset)

    def items(self, skip: set[str] = frozenset(), limit: int | None = None) -> Iterator[InputItem]:
        n = len(self.dataset) if limit is None else min(limit, len(self.dataset))
        for index in range(n):
            key = f"{self.split}[{index}]"
            if key in skip:
                continue
            row = self.dataset[index]
            path, data = _image_payload(row[self.image_column])
            columns = {column: row[column] for column in self.keep_columns}
            yield FileItem(key=key, source=f"{self.name}:{key}", path=path, data=data, columns=columns)


def _is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and any((path / name).is_file() for name in ("state.json", "dataset_dict.json"))


def _image_payload(value: Any) -> tuple[str | None, bytes | None]:
    """(path, bytes) of an image cell: an undecoded ``Image`` dict, a path string or raw bytes."""
    if isinstance(value, dict):
        return value.get("path"), value.get("bytes")
    if isinstance(value, str):
        return value, None
    if isinstance(value, bytes):
        return None, value
    raise UserError(f"the image column holds {type(value).__name__} values, not images")


def open_source(
    source: str,
    *,
    image_column: str = "image",
    split: str = "train",
    keep_columns: tuple[str, ...] = (),
    limit: int | None = None,
    seed: int = 0,
) -> Source:
    """The source named by ``--source``: ``synthetic-faces``, ``facesynthetics:DIR``, an image folder, a
    dataset folder or Hub id."""
    if source.startswith(FACESYNTHETICS):
        return _open_facesynthetics(source.removeprefix(FACESYNTHETICS), keep_columns)
    if source == SYNTHETIC:
        if limit is None:
            raise UserError(f"--source {SYNTHETIC} needs --limit N: how many faces to generate")
        if keep_columns:
            raise UserError(f"--source {SYNTHETIC} has no columns to caption from; use --captioner template")
        return SyntheticSource(limit, seed)
    path = Path(source)
    if path.is_dir() and not _is_saved_dataset(path) and not _has_data_files(path):
        if keep_columns:
            raise UserError(
                "an image folder has no columns to caption from; use --captioner template or blip"
            )
        folder = FolderSource(path)
        if not len(folder):
            raise UserError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {source}")
        return folder
    if not path.exists() and not is_hub_id(source):
        raise UserError(f"--source {source}: no such folder, and not a Hub dataset id (owner/name)")
    return HFDatasetSource(source, split, image_column, keep_columns)


def _open_facesynthetics(folder: str, keep_columns: tuple[str, ...]) -> Source:
    if keep_columns:
        raise UserError(
            f"--source {FACESYNTHETICS}DIR has no columns to caption from; use --captioner template or blip"
        )
    if not Path(folder).is_dir():
        raise UserError(
            f"--source {FACESYNTHETICS}{folder}: no such folder (give the unzipped FaceSynthetics folder)"
        )
    source = FaceSyntheticsSource(Path(folder))
    if not len(source):
        raise UserError(f"--source {FACESYNTHETICS}{folder}: no {{id}}.png images in it")
    return source


def _has_data_files(path: Path) -> bool:
    return any(p.suffix.lower() in _DATA_FILE_EXTENSIONS for p in path.rglob("*") if p.is_file())
