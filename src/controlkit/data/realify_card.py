"""What a repainted dataset shows about itself: README.md (the card), preview.png and the score histogram.

The card tells how the pictures were repainted (base, ControlNet, strength, prompt, seeds), how they were
checked (the condition's adherence score and the threshold), the counts, and every rejected row with its
score and reason. The preview puts original | repainted | conditioning side by side for a few rows (one
rejected row among them where there is one); the histogram shows the score of every repainted row.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from controlkit import __version__
from controlkit.conditions import Condition
from controlkit.pictures import image_grid

if TYPE_CHECKING:
    from controlkit.data.realify import RealifyInput, RealifyReport
    from controlkit.data.realify_config import RealifyConfig

PREVIEW_ROWS = 4
_TILE = (192, 192)
HISTOGRAM_FILE = "score-histogram.png"


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _score_text(score: float | None) -> str:
    return "none" if score is None else f"{score:.4f}"


def preview_rows(
    shards: Any, data: RealifyInput, report: RealifyReport
) -> list[tuple[Image.Image, Image.Image, Image.Image, str]]:
    """(original, repainted, conditioning, text) of the first kept rows and the first rejected one (where
    a row was rejected); ``shards`` is every repainted row (``ShardStore.consolidate``)."""
    from controlkit.data.realify import ORIGINAL_COLUMN, ROW_COLUMN

    if shards is None:
        return []
    records = {record["row"]: record for record in report.records}
    numbers = list(shards[ROW_COLUMN])
    order = sorted(range(len(shards)), key=numbers.__getitem__)
    kept = [i for i in order if records[numbers[i]]["kept"]]
    rejected = [i for i in order if not records[numbers[i]]["kept"]]
    picks = kept[: PREVIEW_ROWS - min(1, len(rejected))]
    picks = sorted(picks + rejected[: PREVIEW_ROWS - len(picks)], key=numbers.__getitem__)
    info, rows = data.info, []
    for position in picks:
        shard_row = shards[position]
        number = shard_row[ROW_COLUMN]
        original = shard_row[ORIGINAL_COLUMN] or data.dataset[number][info.image_column]
        record = records[number]
        verdict = "kept" if record["kept"] else f"rejected: {record['reason']}"
        text = f"row {number} · {report.score_key or 'score'} {_score_text(record['score'])} · {verdict}"
        rows.append((original, shard_row[info.image_column], shard_row[info.conditioning_image_column], text))
    return rows


def write_preview(rows: Sequence[tuple[Image.Image, Image.Image, Image.Image, str]], path: Path) -> Path:
    """original | repainted | conditioning, one row per dataset row, its score and verdict below."""
    sheet = image_grid(
        [(original, repainted, conditioning) for original, repainted, conditioning, _ in rows],
        _TILE,
        fit="contain",
        titles=("original", "repainted", "conditioning"),
        row_text=[text for *_, text in rows],
        row_text_lines=2,
    )
    sheet.save(path)
    return path


def write_histogram(
    path: Path, report: RealifyReport, threshold: float | None, condition: Condition
) -> Path | None:
    """The adherence score of every repainted row, with the threshold; None when no row was scored."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from controlkit.data.realify import NOTHING_FOUND

    scores = [record["score"] for record in report.records if record["score"] is not None]
    if not scores:
        return None
    nothing = sum(1 for record in report.records if record["reason"] == NOTHING_FOUND)
    figure, axes = plt.subplots(figsize=(6, 3.4), dpi=100)
    axes.hist(scores, bins=max(5, min(40, len(scores) // 3)), color="#4c72b0")
    if threshold is not None:
        side = "lower" if condition.adherence_higher_is_better else "higher"
        axes.axvline(
            threshold, color="#c44e52", linestyle="--", label=f"--threshold {threshold} ({side}: rejected)"
        )
        axes.legend(loc="upper right", fontsize=8)
    axes.set_xlabel(f"{report.score_key} of the repainted picture against the row's annotation")
    axes.set_ylabel("rows")
    title = f"{len(scores)} repainted rows scored"
    axes.set_title(title + (f"; nothing found again in {nothing}" if nothing else ""), fontsize=10)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def write_card(
    folder: Path, config: RealifyConfig, data: RealifyInput, report: RealifyReport, histogram: bool
) -> Path:
    """README.md for the repainted dataset in ``folder``; local folders appear by their last component."""
    from huggingface_hub import DatasetCard, DatasetCardData

    from controlkit.paths import public_name, public_settings

    info, condition = data.info, data.condition
    dataset, base, controlnet = (
        public_name(name) for name in (config.dataset, config.base, config.controlnet)
    )
    direction = "higher" if condition.adherence_higher_is_better else "lower"
    settings = {
        "dataset": dataset,
        "base model": base,
        "ControlNet": controlnet or "none (plain img2img)",
        "strength": config.strength,
        "prompt": f"`{config.prompt}` ({{text}}: the row's caption)",
        "negative prompt": config.negative_prompt or "none",
        "steps": f"{config.steps} (img2img runs {int(config.steps * config.strength)} of them)",
        "guidance scale": config.guidance_scale,
        "seeds": f"row i: {config.seed} + i (realify.json lists every row's seed and score)",
        "checked by": f"`{info.condition}` {json.dumps(info.condition_options)}: Condition.score",
        "adherence score": f"{report.score_key or 'none'} ({direction} is better)",
        "threshold": config.threshold
        if config.threshold is not None
        else "none: only rows where nothing is found",
        "rejected rows": "kept with their original picture" if config.keep_rejected_original else "left out",
        "repainted": f"with controlkit {__version__}",
    }
    if config.controlnet:
        settings["ControlNet scale"] = config.controlnet_scale
    intro = " ".join(
        [
            f"The rows of `{dataset}` repainted by `controlkit data realify`: img2img with",
            f"`{base}` at strength {config.strength}, then each repainted picture read again by the",
            f"`{info.condition}` condition and compared with the row's annotation; rows whose picture no",
            "longer follows it were rejected. The conditioning images, annotations, captions and sources",
            "are the original rows'.",
        ]
    )
    lines = [
        f"# {report.out.name}",
        "",
        intro,
        "",
        "![preview](preview.png)",
        "",
        *([f"![{report.score_key} of every repainted row]({HISTOGRAM_FILE})", ""] if histogram else []),
        "## Settings",
        "",
        "| | |",
        "| --- | --- |",
        *(f"| {key} | {_cell(value)} |" for key, value in settings.items()),
        "",
        "## Counts",
        "",
        "| rows | kept, repainted | of them unchecked | rejected | rejected, kept as the original |",
        "| --- | --- | --- | --- | --- |",
        f"| {report.rows} | {report.kept} | {report.unchecked} | {len(report.rejected)} "
        f"| {report.kept_original} |",
        "",
        "## Train on it",
        "",
        "```bash",
        f"controlkit train --pretrained_model_name_or_path={base} \\",
        f"  --dataset_name={report.out.name} --output_dir=model_out",
        "```",
        "",
        f"`controlkit.json` names the condition and the columns (`{info.image_column}`, "
        f"`{info.conditioning_image_column}`, `{info.caption_column}`, `{info.annotation_column}`), as in "
        "the original dataset.",
        "",
        f"## Rejected rows ({len(report.rejected)})",
        "",
    ]
    if report.rejected:
        lines += [f"| row | input | {report.score_key or 'score'} | reason |", "| --- | --- | --- | --- |"]
        lines += [
            f"| {r['row']} | {_cell(r['source'])} | {_score_text(r['score'])} | {_cell(r['reason'])} |"
            for r in report.rejected
        ]
    else:
        lines.append("None.")
    lines += [
        "",
        "## Realify settings",
        "",
        "```json",
        json.dumps(public_settings(asdict(config)), indent=2),
        "```",
        "",
    ]
    front_matter = DatasetCardData(tags=["controlnet", "controlkit", "realify", info.condition]).to_yaml()
    path = folder / "README.md"
    DatasetCard(f"---\n{front_matter}\n---\n\n" + "\n".join(lines)).save(path)
    return path
