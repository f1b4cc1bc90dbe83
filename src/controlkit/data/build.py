"""The paired-dataset pipeline: source -> per-image function (workers or Ray) -> captions -> shards.

``build_dataset(BuildConfig(...))`` is what ``controlkit data build`` calls. The output follows the
dataset contract: a ``save_to_disk`` folder with ``image``, ``conditioning_image``, ``text``,
``annotation`` and ``source`` columns (renamable), its ``DatasetInfo`` record (the condition, the
columns and the resolution), a README.md card and ``preview.png``. The build runs as named steps:
check the settings, open the source, make the pairs (shard by shard, resumable), collect the shards,
write the dataset with its record, card and preview, and publish it. One build at a time writes an output
(a second one is refused, naming the process); SIGTERM or Ctrl-C saves the shard in hand and stops with
``Stopped`` (the CLI's exit code 75), a second signal stops at once; ``--resume`` continues.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controlkit import conditions
from controlkit.conditions import Condition
from controlkit.data.captioners import Captioner, make_captioner, parse_spec
from controlkit.data.config import ENGINES, LANDMARKS, BuildConfig
from controlkit.data.engines import results as engine_results
from controlkit.data.engines import start as start_engine
from controlkit.data.inputs import InputItem, Source, decode
from controlkit.data.pairs import NOTHING_FOUND, PairMaker, PairResult, PairSettings
from controlkit.data.shards import ShardStore, holding, work_dir_for
from controlkit.data.sources import GROUND_TRUTH, ground_truth_format, open_source
from controlkit.errors import UserError, first_line
from controlkit.metadata import DatasetInfo
from controlkit.stopping import Stopped, StopRequest, graceful_stop

COLUMNS = ("image", "conditioning_image", "text", "annotation", "source")
CHUNK = 4
"""Inputs per unit of work sent to a local worker process (less inter-process traffic per photo); in this
process and on Ray a unit is one input, so each finished input reaches the shard writer at once."""


@dataclass
class BuildReport:
    """What a build did: counts over all runs of it (a resumed build included) and every skipped input."""

    out: Path
    inputs: int
    rows: int
    kept_empty: int
    skipped: list[dict[str, str]]
    resumed: int
    seconds: float
    processed_this_run: int
    hub_url: str | None = None
    ignored: list[dict[str, str]] = field(default_factory=list)
    """Files of a photo folder the build did not read, with the reason (an unsupported extension, say)."""

    @property
    def no_annotation(self) -> int:
        return sum(1 for s in self.skipped if s["reason"] == NOTHING_FOUND)


def _validate(config: BuildConfig) -> None:
    if config.engine not in ENGINES:
        raise UserError(f"--engine must be one of {', '.join(ENGINES)}, not {config.engine!r}")
    if config.landmarks not in LANDMARKS:
        raise UserError(f"--landmarks must be one of {', '.join(LANDMARKS)}, not {config.landmarks!r}")
    if min(config.num_workers, config.shard_size, config.caption_batch_size) < 1:
        raise UserError("--num-workers, --shard-size and --caption-batch-size must be at least 1")
    if config.resolution is not None and config.resolution < 8:
        raise UserError(f"--resolution must be at least 8 pixels, not {config.resolution}")
    if config.limit is not None and config.limit < 1:
        raise UserError(f"--limit must be at least 1, not {config.limit}")
    unknown = set(config.rename_columns) - set(COLUMNS)
    if unknown:
        raise UserError(f"--rename-columns: unknown column(s) {', '.join(sorted(unknown))}; rename {COLUMNS}")
    names = [config.rename_columns.get(c, c) for c in COLUMNS]
    if len(set(names)) != len(names):
        raise UserError(f"--rename-columns gives two columns the same name: {names}")
    parse_spec(config.captioner)


def _check_ground_truth(config: BuildConfig, condition: Condition) -> None:
    """``--landmarks ground-truth`` needs a source whose annotations are in the condition's format."""
    if config.landmarks != "ground-truth":
        return
    have = ground_truth_format(config.source)
    if have is None:
        raise UserError(
            f"--landmarks ground-truth needs --source {' or '.join(GROUND_TRUTH)} (inputs that carry "
            f"ground-truth annotations); {config.source} carries none"
        )
    if have != condition.annotation_format:
        needs = condition.annotation_format or "annotations of its own (it declares no format)"
        raise UserError(
            f"--landmarks ground-truth: the source {config.source} has {have} annotations, "
            f"the condition {condition.name} needs {needs}"
        )


def _check_hub_token(repo: str | None) -> None:
    """Fail before any work when publishing is asked for but no Hugging Face token is available."""
    if repo is None:
        return
    from huggingface_hub import get_token

    if not get_token():
        raise UserError(
            f"--push-to-hub {repo} needs a Hugging Face token: run `hf auth login` or set HF_TOKEN"
        )


def _fingerprint(config: BuildConfig) -> dict[str, Any]:
    """The settings that decide which rows there are and what they hold; a resume must use the same ones.

    ``--shard-size``, ``--num-workers`` and ``--engine`` may change: they decide how the work is cut up,
    not its result.
    """
    keys = (
        "source", "condition", "condition_options", "captioner", "image_column", "split", "resolution",
        "seed", "landmarks", "keep_empty", "caption_prefix", "caption_suffix", "limit",
    )  # fmt: skip
    return json.loads(json.dumps({key: getattr(config, key) for key in keys}, default=str))


def _chunks(items: Iterable[InputItem], size: int) -> Iterator[list[InputItem]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _features(condition: Condition) -> Any:
    """The shards' schema; the annotation's is None (inferred per shard) when the condition declares none."""
    import datasets

    return datasets.Features(
        {
            "image": datasets.Image(),
            "conditioning_image": datasets.Image(),
            "text": datasets.Value("string"),
            "annotation": condition.record_feature(),
            "source": datasets.Value("string"),
        }
    )


class _ShardWriter:
    """Buffers finished results and writes them, captioned, as one shard at a time."""

    def __init__(self, store: ShardStore, captioner: Captioner, features: Any, size: int):
        self.store, self.captioner, self.features, self.size = store, captioner, features, size
        self.buffer: list[PairResult] = []

    def add(self, result: PairResult) -> None:
        self.buffer.append(result)
        if len(self.buffer) >= self.size:
            self.flush()

    def flush(self) -> None:
        """Write the buffered results as a shard; they leave the buffer first, so a failed write (a full
        disk) is not tried again on the way out: its inputs are simply not done."""
        buffer, self.buffer = self.buffer, []
        if not buffer:
            return
        kept = [r for r in buffer if r.reason is None]
        images = [decode(r.image)[0] for r in kept] if self.captioner.needs_images else [None] * len(kept)
        own = [r.caption for r in kept]
        texts = self.captioner.caption(images, [r.columns for r in kept], own) if kept else []
        rows = {
            "image": [{"bytes": r.image, "path": None} for r in kept],
            "conditioning_image": [{"bytes": r.conditioning_image, "path": None} for r in kept],
            "text": texts,
            "annotation": [r.annotation for r in kept],
            "source": [r.source for r in kept],
        }
        features = self.features
        if features["annotation"] is None:
            import datasets

            inferred = datasets.Dataset.from_dict({"annotation": rows["annotation"]}).features["annotation"]
            features = datasets.Features({**features, "annotation": inferred})
        manifest = [{"key": r.key, "source": r.source, "reason": r.reason, "empty": r.empty} for r in buffer]
        self.store.write(rows, features, manifest)


@contextlib.contextmanager
def datasets_bars_off() -> Iterator[None]:
    """Hide ``datasets``' per-shard "Saving the dataset" bars under the build's own bar."""
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            enable_progress_bars()


def build_dataset(config: BuildConfig) -> BuildReport:
    """Build the paired dataset that ``config`` describes; see the module docstring for the output."""
    with datasets_bars_off():
        return _build(config)


def _build(config: BuildConfig) -> BuildReport:
    started = time.perf_counter()
    _validate(config)
    _check_hub_token(config.push_to_hub)
    out = new_out_folder(config.out)
    condition = conditions.get(config.condition, **config.condition_options)
    _check_ground_truth(config, condition)
    source = _open_source(config)
    total = len(source) if config.limit is None else min(config.limit, len(source))
    work_dir = work_dir_for(out)
    start_engine(config.engine)
    with holding(work_dir, f"--out {out}"), graceful_stop() as stop:
        store = ShardStore(work_dir, _fingerprint(config), config.resume, expected=total)
        done = {entry["key"] for entry in store.manifest()}
        captioner, processed = _make_pairs(config, condition, source, store, done, stop)
        if stop.requested:
            raise Stopped(stopped_line(len(done) + processed, total, "inputs", work_dir))
        dataset, report = _collect(config, store, out, resumed=len(done), processed=processed)
        report.ignored = list(source.ignored)
        info = _card_info(config, condition, captioner, source, report)
        store.finish(dataset, out, lambda folder: _write_extras(folder, config, dataset, info))
    if config.push_to_hub:
        report.hub_url = publish(out, config.push_to_hub)
    report.seconds = time.perf_counter() - started
    if config.progress:
        print_summary(report)
    return report


def stopped_line(done: int, total: int, what: str, work_dir: Path) -> str:
    """What a build stopped by a signal says: how far it got, where the work is, how to go on."""
    return f"{done} of {total} {what} done, kept in {work_dir}; run the same command with --resume to finish"


def new_out_folder(name: str) -> Path:
    out = Path(name)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out} already exists and is not empty; choose a new folder")
    return out


def _open_source(config: BuildConfig) -> Source:
    kind, column = parse_spec(config.captioner)
    return open_source(
        config.source,
        image_column=config.image_column,
        split=config.split,
        keep_columns=(column,) if kind == "column" else (),
        limit=config.limit,
        seed=config.seed,
    )


def _make_pairs(
    config: BuildConfig,
    condition: Condition,
    source: Source,
    store: ShardStore,
    done: set[str],
    stop: StopRequest,
) -> tuple[Captioner, int]:
    """The per-image function over the inputs not ``done`` yet, captioned and written shard by shard,
    until every input is done or a ``stop`` is requested (then the shard in hand is written).

    Returns the captioner (the card describes it) and how many inputs this run processed.
    """
    from tqdm.auto import tqdm

    total = store.expected
    settings = PairSettings(
        config.condition, config.condition_options, config.resolution, config.landmarks, config.keep_empty
    )
    pooled = config.engine == "local" and config.num_workers > 1
    units = _chunks(source.items(skip=done, limit=config.limit), CHUNK if pooled else 1)
    results = engine_results(config.engine, functools.partial(PairMaker, settings), units, config.num_workers)
    processed = 0
    bar = tqdm(
        total=total, initial=min(len(done), total), unit="img", desc="build", disable=not config.progress
    )
    try:
        first = next(results, None)  # start the workers before the captioner loads torch, so they fork light
        captioner = make_captioner(
            config.captioner,
            prefix=config.caption_prefix,
            suffix=config.caption_suffix,
            default_sentence=condition.default_caption,
            batch_size=config.caption_batch_size,
        )
        writer = _ShardWriter(store, captioner, _features(condition), config.shard_size)
        try:
            for result in itertools.chain([first] if first is not None else [], results):
                writer.add(result)
                processed += 1
                bar.update()
                if stop.requested:
                    break
        except Exception:
            writer.flush()  # finished work is kept when the build fails (not on a second signal: at once)
            raise
        writer.flush()
    finally:
        bar.close()
        results.close()
    return captioner, processed


def _collect(
    config: BuildConfig, store: ShardStore, out: Path, resumed: int, processed: int
) -> tuple[Any, BuildReport]:
    """Every shard as one dataset with the asked column names, and the counts over every run of the build."""
    manifest = store.manifest()
    skipped = [{"source": e["source"], "reason": e["reason"]} for e in manifest if e["reason"] is not None]
    dataset = store.consolidate()
    if dataset is None:
        reasons = sorted({s["reason"] for s in skipped})
        raise UserError(
            f"no rows: all {len(manifest)} inputs were skipped ({'; '.join(reasons[:3])}); "
            f"the partial build is in {store.work_dir}"
        )
    names = _column_names(config)
    dataset = dataset.rename_columns({k: v for k, v in names.items() if k != v})
    report = BuildReport(
        out=out,
        inputs=len(manifest),
        rows=len(dataset),
        kept_empty=sum(1 for e in manifest if e["reason"] is None and e["empty"]),
        skipped=skipped,
        resumed=resumed,
        seconds=0.0,
        processed_this_run=processed,
    )
    return dataset, report


def _column_names(config: BuildConfig) -> dict[str, str]:
    return {column: config.rename_columns.get(column, column) for column in COLUMNS}


def _detector(config: BuildConfig, condition: Condition, source: Source) -> dict[str, str]:
    """Which detector made the annotations; with ground truth none did (and dlib need not be installed)."""
    if config.landmarks == "ground-truth":
        return {
            "detector": f"none: the source's own ground-truth annotations ({source.annotation_format})",
            "detector_version": "n/a",
        }
    return condition.describe()


def _card_info(
    config: BuildConfig, condition: Condition, captioner: Captioner, source: Source, report: BuildReport
) -> dict[str, Any]:
    """What the dataset card tells: provenance, counts, columns, skipped and ignored inputs and the build
    settings, local folders named by their last component only (the card may be published)."""
    from controlkit.paths import public_settings

    return {
        "name": report.out.name,
        "source": source.description,
        "condition": config.condition,
        "condition_options": public_settings(config.condition_options),
        **_detector(config, condition, source),
        "captioner": captioner.description,
        "resolution": config.resolution,
        "built_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "columns": _column_names(config),
        "counts": {
            "inputs": report.inputs,
            "rows": report.rows,
            "kept_empty": report.kept_empty,
            "no_annotation": report.no_annotation,
            "failed": len(report.skipped) - report.no_annotation,
        },
        "skipped": report.skipped,
        "ignored": report.ignored,
        "config": public_settings(asdict(config)),
    }


def _write_extras(folder: Path, config: BuildConfig, dataset: Any, info: dict[str, Any]) -> None:
    """Beside the dataset: its DatasetInfo record, the card and the preview of its first rows."""
    from controlkit.data.card import PREVIEW_ROWS, write_card, write_preview

    names = _column_names(config)
    DatasetInfo(
        condition=config.condition,
        condition_options=config.condition_options,
        image_column=names["image"],
        conditioning_image_column=names["conditioning_image"],
        caption_column=names["text"],
        annotation_column=names["annotation"],
        source_column=names["source"],
        resolution=config.resolution,
    ).write(folder)
    write_card(folder, info)
    head = dataset.select(range(min(PREVIEW_ROWS, len(dataset))))
    write_preview(
        [(r[names["image"]], r[names["conditioning_image"]], r[names["text"]]) for r in head],
        folder / "preview.png",
        headers=(names["image"], names["conditioning_image"]),
    )


def publish(folder: Path, repo: str) -> str:
    """Push the dataset, then its card, preview and controlkit.json, to a Hub dataset repo."""
    import datasets
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HTTPError

    try:
        datasets.load_from_disk(str(folder)).push_to_hub(repo)
        HfApi().upload_folder(
            repo_id=repo,
            repo_type="dataset",
            folder_path=str(folder),
            allow_patterns=["README.md", "preview.png", "controlkit.json"],
        )
    except (OSError, HTTPError) as exc:
        raise UserError(f"--push-to-hub {repo}: {first_line(exc)}; the dataset is saved in {folder}") from exc
    return f"https://huggingface.co/datasets/{repo}"


def print_summary(report: BuildReport) -> None:
    """The end-of-build table: counts, skip reasons, speed and where the dataset is."""
    from collections import Counter

    from rich.console import Console
    from rich.table import Table

    table = Table(title="controlkit data build", show_header=False)
    table.add_row("dataset", str(report.out))
    table.add_row("inputs", str(report.inputs))
    table.add_row("rows", str(report.rows))
    table.add_row("kept without annotation", str(report.kept_empty))
    for reason, count in Counter(s["reason"] for s in report.skipped).most_common(5):
        table.add_row(f"skipped: {reason[:60]}", str(count))
    if report.ignored:
        table.add_row("files ignored (listed in the card)", str(len(report.ignored)))
    if report.resumed:
        table.add_row("done before --resume", str(report.resumed))
    rate = report.processed_this_run / report.seconds if report.seconds else 0.0
    table.add_row("time", f"{report.seconds:.1f} s ({rate:.1f} inputs/s this run)")
    if report.hub_url:
        table.add_row("published", report.hub_url)
    Console(stderr=True).print(table)
