"""Repaint a dataset with img2img and keep the rows whose annotation survived: `controlkit data realify`.

The walkthrough's next step: a ControlNet trained on rendered faces draws rendered-looking faces, so run
Stable Diffusion img2img over every picture to make it look real, and train on that. A repainted picture
is only worth keeping where it still shows what the row's annotation says (the same landmarks), so the
dataset's own condition reads every repainted picture again (``Condition.score``) and a row whose
adherence score (``Condition.adherence_score``) is worse than ``--threshold``, or where the condition
finds nothing at all, is rejected: left out, or kept with its original picture. The conditioning image,
the annotation, the caption and every other column stay the row's own.

``realify_dataset(RealifyConfig(...))`` runs as named steps: check the settings and the models, open the
dataset, repaint the rows not done yet (batched, on the engines of ``data build``; shard by shard,
resumable), then write the new dataset with its ``DatasetInfo``, card, preview, error histogram and
``realify.json`` (every row's seed, score and outcome). Under ``accelerate launch`` each process repaints
its share of the rows into the same shards; the main process writes the result. As in ``data build``, one
run at a time writes an output (the main process holds it), and SIGTERM or Ctrl-C saves the shard in hand
and stops with ``Stopped``; each process stops on its own signal (``accelerate launch`` passes it on).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controlkit import conditions
from controlkit.conditions import Condition
from controlkit.data.build import datasets_bars_off, new_out_folder, stopped_line
from controlkit.data.engines import ray_gpus_per_worker
from controlkit.data.engines import results as engine_results
from controlkit.data.engines import start as start_engine
from controlkit.data.realify_config import RealifyConfig
from controlkit.data.realify_worker import Realifier, RealifyResult, RealifySettings, row_key
from controlkit.data.shards import ShardStore, holding, work_dir_for
from controlkit.errors import UserError
from controlkit.metadata import DatasetInfo
from controlkit.seeds import check_seed_range
from controlkit.stopping import Stopped, StopRequest, graceful_stop

ROW_COLUMN = "_realify_row"
ORIGINAL_COLUMN = "_realify_original"
"""Work columns of the shards: the row's number, and its original picture where the row was rejected."""
NOTHING_FOUND = "the condition finds nothing in the repainted picture"


@dataclass
class RealifyReport:
    """What a run did, over all its runs (a resumed one included): counts, and every rejected row."""

    out: Path
    rows: int
    kept: int
    kept_original: int
    unchecked: int
    rejected: list[dict[str, Any]]
    resumed: int
    processed_this_run: int
    seconds: float = 0.0
    score_key: str | None = None
    records: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class RealifyInput:
    """The dataset to repaint, its record and its condition."""

    dataset: Any
    info: DatasetInfo
    condition: Condition
    rows: int


def realify_dataset(config: RealifyConfig) -> RealifyReport | None:
    """Repaint the dataset ``config`` names; see the module docstring. None on the processes other than
    the main one under ``accelerate launch`` (they only repaint their share)."""
    with datasets_bars_off():
        return _realify(config)


def _realify(config: RealifyConfig) -> RealifyReport | None:
    started = time.perf_counter()
    _validate(config)
    out = new_out_folder(config.out)
    _check_models(config)
    data = open_input(config)
    check_seed_range(config.seed, data.rows, "rows", "row i is repainted with")
    processes = _processes()
    work_dir = work_dir_for(out)
    start_engine(config.engine)
    held = holding(work_dir, f"--out {out}") if processes.is_main_process else contextlib.nullcontext()
    with held, graceful_stop() as stop:
        store = _open_store(config, out, processes, data.rows)
        done = {entry["key"] for entry in store.manifest()}
        todo = [row for row in range(data.rows) if row_key(row) not in done]
        mine = todo[processes.process_index :: processes.num_processes]
        shown_done = len(done) if processes.num_processes == 1 else 0
        processed = _repaint_rows(config, data, mine, store, processes, shown_done, stop)
        if stop.requested:
            raise Stopped(stopped_line(len(store.manifest()), data.rows, "rows", work_dir))
        processes.wait_for_everyone()
        if not processes.is_main_process:
            return None
        dataset, report = _collect(config, data, store, out, resumed=len(done), processed=processed)
        store.finish(dataset, out, lambda folder: _write_extras(folder, config, data, store, report))
    report.seconds = time.perf_counter() - started
    if config.progress:
        print_summary(report)
    return report


def _validate(config: RealifyConfig) -> None:
    if not 0 < config.strength <= 1:
        raise UserError(f"--strength must be in (0, 1], not {config.strength}")
    if min(config.steps, config.batch_size, config.shard_size, config.num_workers) < 1:
        raise UserError("--steps, --batch-size, --shard-size and --num-workers must be at least 1")
    if int(config.steps * config.strength) < 1:
        raise UserError(
            f"--strength {config.strength} of --steps {config.steps} is no step at all; raise either"
        )
    if config.limit is not None and config.limit < 1:
        raise UserError(f"--limit must be at least 1, not {config.limit}")
    if config.threshold is not None and not math.isfinite(config.threshold):
        raise UserError(f"--threshold must be a number, not {config.threshold}")
    try:
        config.prompt.format(text="")
    except (KeyError, IndexError, ValueError) as exc:
        raise UserError(
            f"--prompt {config.prompt!r}: only {{text}} may stand in braces (double any other brace): {exc}"
        ) from exc


def _check_models(config: RealifyConfig) -> None:
    """A local ``--base`` must be a diffusers folder and ``--controlnet`` a ControlNet, before any work."""
    from controlkit.models.loading import controlnet_subfolder
    from controlkit.paths import check_exists

    if check_exists(config.base, "--base model"):
        base = Path(config.base)
        parts = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
        missing = [f"{part}/" for part in parts if not (base / part).is_dir()]
        if missing:
            raise UserError(
                f"--base {config.base} is not a diffusers model folder (no {', '.join(missing)}); give a "
                "Stable Diffusion folder or Hub id"
            )
    if config.controlnet and check_exists(config.controlnet, "--controlnet"):
        controlnet_subfolder(config.controlnet)


def open_input(config: RealifyConfig) -> RealifyInput:
    """The dataset, its ``DatasetInfo`` and condition; one line when a column realify needs is missing."""
    from controlkit.data.sources import load_split

    info = DatasetInfo.read(config.dataset)
    if info.condition is None:
        raise UserError(
            f"{config.dataset} records no condition (no controlkit.json from `controlkit data build`); "
            "realify reads each repainted picture again with the condition that annotated it"
        )
    dataset = load_split(config.dataset, config.split)
    needed = {
        "image": info.image_column,
        "conditioning image": info.conditioning_image_column,
        "annotation": info.annotation_column,
    }
    if "{text}" in config.prompt:
        needed["caption"] = info.caption_column
    for what, column in needed.items():
        if column not in dataset.column_names:
            raise UserError(
                f"dataset {config.dataset} has no {what} column {column!r} (it has: "
                f"{', '.join(dataset.column_names)}); realify compares each repainted picture with the row's "
                "annotation, so it needs a dataset built by `controlkit data build`"
            )
    condition = conditions.get(info.condition, **info.condition_options)
    if config.threshold is not None and condition.adherence_score is None:
        raise UserError(
            f"--threshold: the {info.condition} condition names no adherence score to compare it with"
        )
    rows = len(dataset) if config.limit is None else min(config.limit, len(dataset))
    return RealifyInput(dataset, info, condition, rows)


class _OneProcess:
    """The process group of a run that was not launched by `accelerate launch`: this process alone."""

    num_processes, process_index, is_main_process, device = 1, 0, True, None

    def wait_for_everyone(self) -> None:
        pass


def _processes() -> Any:
    """accelerate's process group under ``accelerate launch`` (several processes), else this process.

    ``accelerate launch --cpu`` says so only through ``ACCELERATE_USE_CPU``, which ``Accelerator`` reads and
    ``PartialState`` does not.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import PartialState
        from accelerate.utils import parse_flag_from_env

        return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    return _OneProcess()


def _fingerprint(config: RealifyConfig) -> dict[str, Any]:
    """The settings that decide each row's outcome; a resume must use the same ones."""
    keys = (
        "dataset", "split", "limit", "base", "controlnet", "strength", "prompt", "negative_prompt", "steps",
        "guidance_scale", "controlnet_scale", "seed", "threshold",
    )  # fmt: skip
    return {key: getattr(config, key) for key in keys}


def _open_store(config: RealifyConfig, out: Path, processes: Any, rows: int) -> ShardStore:
    """The main process opens (or checks, with --resume) the shards first; the others join it."""
    owner = f"p{processes.process_index}" if processes.num_processes > 1 else ""
    fingerprint, work_dir = _fingerprint(config), work_dir_for(out)
    store = None
    if processes.is_main_process:
        store = ShardStore(work_dir, fingerprint, config.resume, owner=owner, expected=rows)
    processes.wait_for_everyone()
    if store is None:
        store = ShardStore(work_dir, fingerprint, config.resume, owner=owner, join=True, expected=rows)
    return store


def decide(
    result: RealifyResult, condition: Condition, threshold: float | None
) -> tuple[bool, float, str | None]:
    """(kept, adherence score, why it was rejected) of one repainted row.

    A row without a picture, or whose picture shows nothing the condition finds, is rejected; a row with
    no annotation to compare with (or a condition without an adherence score) is kept unchecked (NaN).
    """
    if result.reason is not None:
        return False, math.nan, result.reason
    key = condition.adherence_score
    if not result.checked or key is None:
        return True, math.nan, None
    score = result.scores.get(key, math.nan)
    if not math.isfinite(score):
        return False, score, NOTHING_FOUND
    if threshold is not None:
        higher = condition.adherence_higher_is_better
        if (score < threshold) if higher else (score > threshold):
            return False, score, f"{key} {score:.4f} {'<' if higher else '>'} --threshold {threshold}"
    return True, score, None


class _ShardWriter:
    """Buffers repainted rows and writes them, with the row's other columns, as one shard at a time."""

    def __init__(self, store: ShardStore, data: RealifyInput, config: RealifyConfig):
        import datasets

        self.store, self.data, self.config = store, data, config
        self.buffer: list[RealifyResult] = []
        info = data.info
        self.raw = data.dataset
        for column in (info.image_column, info.conditioning_image_column):
            self.raw = self.raw.cast_column(column, datasets.Image(decode=False))
        self.features = datasets.Features(
            {
                **data.dataset.features,
                ROW_COLUMN: datasets.Value("int64"),
                ORIGINAL_COLUMN: data.dataset.features[info.image_column],
            }
        )

    def add(self, result: RealifyResult) -> None:
        self.buffer.append(result)
        if len(self.buffer) >= self.config.shard_size:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows as a shard; they leave the buffer first, so a failed write (a full
        disk) is not tried again on the way out: its rows are simply not done."""
        buffer, self.buffer = self.buffer, []
        if not buffer:
            return
        image = self.data.info.image_column
        decided = [(r, *decide(r, self.data.condition, self.config.threshold)) for r in buffer]
        pictured = [(r, kept) for r, kept, _, _ in decided if r.image is not None]
        rows = self.raw.select([r.row for r, _ in pictured]).to_dict() if pictured else {}
        if pictured:
            originals = zip(pictured, rows[image], strict=True)
            rows[ORIGINAL_COLUMN] = [None if kept else original for (_, kept), original in originals]
            rows[image] = [{"bytes": r.image, "path": None} for r, _ in pictured]
            rows[ROW_COLUMN] = [r.row for r, _ in pictured]
        else:
            rows = {name: [] for name in self.features}
        manifest = [
            {
                "key": r.key,
                "source": r.source,
                "row": r.row,
                "seed": r.seed,
                "kept": kept,
                "score": None if math.isnan(score) else score,
                "reason": reason,
                "scores": r.scores,
            }
            for r, kept, score, reason in decided
        ]
        self.store.write(rows, self.features, manifest)


def _repaint_rows(
    config: RealifyConfig,
    data: RealifyInput,
    rows: list[int],
    store: ShardStore,
    processes: Any,
    done: int,
    stop: StopRequest,
) -> int:
    """The per-batch function over this process's ``rows``, written shard by shard, until they are all
    done or a ``stop`` is requested (then the shard in hand is written); how many it did.

    ``done`` rows (finished by earlier runs) start the progress bar, so its ETA covers the whole run.
    """
    from tqdm.auto import tqdm

    settings = RealifySettings(
        dataset=config.dataset,
        split=config.split,
        info=data.info,
        base=config.base,
        controlnet=config.controlnet,
        strength=config.strength,
        prompt=config.prompt,
        negative_prompt=config.negative_prompt,
        steps=config.steps,
        guidance_scale=config.guidance_scale,
        controlnet_scale=config.controlnet_scale,
        seed=config.seed,
        device=config.device or (str(processes.device) if processes.device is not None else None),
    )
    batches = [rows[i : i + config.batch_size] for i in range(0, len(rows), config.batch_size)]
    gpus = ray_gpus_per_worker() if config.engine == "ray" else 0.0
    results = engine_results(
        config.engine, functools.partial(Realifier, settings), batches, config.num_workers, gpus
    )
    writer = _ShardWriter(store, data, config)
    bar = tqdm(
        total=len(rows) + done,
        initial=done,
        unit="img",
        desc="realify",
        disable=not (config.progress and processes.is_main_process),
    )
    processed = 0
    try:
        for result in results:
            writer.add(result)
            processed += 1
            bar.update()
            if stop.requested and processed % config.batch_size == 0:  # the batch in hand is kept whole
                break
    except Exception:
        writer.flush()  # finished work is kept when the run fails (not on a second signal: at once)
        raise
    else:
        writer.flush()
    finally:
        bar.close()
        results.close()
    return processed


def _collect(
    config: RealifyConfig, data: RealifyInput, store: ShardStore, out: Path, resumed: int, processed: int
) -> tuple[Any, RealifyReport]:
    """The kept rows (and, with --keep-rejected-original, the rejected ones as they were), in row order."""
    import datasets

    manifest = sorted(store.manifest(), key=lambda entry: entry["row"])
    rejected = [
        {"row": e["row"], "source": e["source"], "score": e["score"], "reason": e["reason"]}
        for e in manifest
        if not e["kept"]
    ]
    kept = {e["row"] for e in manifest if e["kept"]}
    shards, image, parts = store.consolidate(), data.info.image_column, []
    if shards is not None:
        numbers = list(shards[ROW_COLUMN])
        repainted = shards.select([i for i, row in enumerate(numbers) if row in kept])
        parts.append(repainted.remove_columns(ORIGINAL_COLUMN))
        if config.keep_rejected_original:
            originals = shards.select([i for i, row in enumerate(numbers) if row not in kept])
            originals = originals.remove_columns(image).rename_column(ORIGINAL_COLUMN, image)
            parts.append(originals.select_columns(parts[0].column_names))
    parts = [part for part in parts if len(part)]
    if not parts:
        first = rejected[0]["reason"] if rejected else "none"
        raise UserError(
            f"no rows: all {len(manifest)} rows were rejected (first reason: {first}); the repainted "
            f"pictures are in {store.work_dir}"
        )
    dataset = datasets.concatenate_datasets(parts)
    numbers = list(dataset[ROW_COLUMN])
    dataset = dataset.select(sorted(range(len(dataset)), key=numbers.__getitem__))
    dataset = dataset.select_columns(data.dataset.column_names)
    report = RealifyReport(
        out=out,
        rows=len(manifest),
        kept=len(kept),
        kept_original=len(dataset) - len(kept),
        unchecked=sum(1 for e in manifest if e["kept"] and e["score"] is None),
        rejected=rejected,
        resumed=resumed,
        processed_this_run=processed,
        score_key=data.condition.adherence_score,
        records=[{k: e[k] for k in ("row", "source", "seed", "score", "kept", "reason")} for e in manifest],
    )
    return dataset, report


def _write_extras(
    folder: Path, config: RealifyConfig, data: RealifyInput, store: ShardStore, report: RealifyReport
) -> None:
    """Beside the dataset: its DatasetInfo, realify.json, the card, the preview and the score histogram."""
    from controlkit.data.realify_card import (
        HISTOGRAM_FILE,
        preview_rows,
        write_card,
        write_histogram,
        write_preview,
    )
    from controlkit.paths import public_settings

    data.info.write(folder)
    summary = {
        "dataset": config.dataset,
        "counts": _counts(report),
        "score_key": report.score_key,
        "higher_is_better": data.condition.adherence_higher_is_better,
        "settings": public_settings(asdict(config)),
        "realified_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "rows": report.records,
    }
    (folder / "realify.json").write_text(json.dumps(summary, indent=1) + "\n")
    histogram = write_histogram(folder / HISTOGRAM_FILE, report, config.threshold, data.condition)
    write_preview(preview_rows(store.consolidate(), data, report), folder / "preview.png")
    write_card(folder, config, data, report, histogram is not None)


def _counts(report: RealifyReport) -> dict[str, int]:
    return {
        "rows": report.rows,
        "kept_repainted": report.kept,
        "unchecked": report.unchecked,
        "rejected": len(report.rejected),
        "kept_original": report.kept_original,
    }


def print_summary(report: RealifyReport) -> None:
    """The end-of-run table: counts, rejection reasons, speed and where the dataset is."""
    from collections import Counter

    from rich.console import Console
    from rich.table import Table

    table = Table(title="controlkit data realify", show_header=False)
    table.add_row("dataset", str(report.out))
    for name, count in _counts(report).items():
        table.add_row(name.replace("_", " "), str(count))
    reasons = Counter(_kind(r) for r in report.rejected)
    for reason, count in reasons.most_common():
        table.add_row(f"rejected: {reason}", str(count))
    if report.resumed:
        table.add_row("done before --resume", str(report.resumed))
    rate = report.processed_this_run / report.seconds if report.seconds else 0.0
    table.add_row("time", f"{report.seconds:.1f} s ({rate:.2f} rows/s this run)")
    Console(stderr=True).print(table)


def _kind(rejected: dict[str, Any]) -> str:
    """A rejection's kind, for the summary: nothing found, over the threshold, or the row's failure."""
    if rejected["reason"] == NOTHING_FOUND:
        return "nothing found again"
    if rejected["score"] is not None:
        return "worse than --threshold"
    return rejected["reason"][:60]
