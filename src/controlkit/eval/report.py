"""What an evaluation shows: eval.json's figures as curves over steps, a grid per checkpoint, report.html.

``write_report(out)`` reads ``out/eval.json`` (so a report can be drawn again from the figures alone) and
writes ``curves.png`` and ``report.html``; the grids (``checkpoints/NAME.png``: conditioning | matched |
shuffled | off | off-domain) are drawn by ``checkpoint_grid`` as each checkpoint finishes.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

from PIL import Image

from controlkit.eval import page
from controlkit.eval.evaluator import GRID_CASES
from controlkit.eval.held_out import HeldOutSample
from controlkit.pictures import image_grid

EVAL_FILE = "eval.json"
REPORT_FILE = "report.html"
CURVES_FILE = "curves.png"
GRID_TITLES = ("conditioning", "matched", "shuffled", "ControlNet off", "off-domain prompt")
MIN_TILE = 128


def checkpoint_grid(
    samples: list[HeldOutSample],
    images: dict[str, list[Image.Image | None]],
    values: dict[str, list[float | None]],
    probes: list[str],
) -> Image.Image:
    """One row per sample: conditioning | matched | shuffled | off | off-domain, each output captioned with
    its adherence figure; under the row, its prompt and the off-domain prompt."""
    rows = len(images["matched"])
    size = samples[0].conditioning_image.width
    tile = (max(size, MIN_TILE), max(size, MIN_TILE))
    grid = [[samples[i].conditioning_image, *(images[case][i] for case in GRID_CASES)] for i in range(rows)]
    captions = [[None, *(page.number(values[case][i]) for case in GRID_CASES)] for i in range(rows)]
    text = [f"{samples[i].prompt} | off-domain: {probes[i]}" for i in range(rows)]
    return image_grid(grid, tile, titles=GRID_TITLES, captions=captions, row_text=text, row_text_lines=2)


def _get(record: dict, *path: str) -> float:
    value: Any = record
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    return float(value) if isinstance(value, int | float) else math.nan


def draw_curves(summary: dict[str, Any], path: Path) -> None:
    """Adherence of each case over steps (the base model as a line), and fidelity over steps with CLIP."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records, key = summary["checkpoints"], summary["adherence_key"]
    known = all(r["step"] is not None for r in records)
    xs = [r["step"] if known else i for i, r in enumerate(records)]
    fidelity = any(math.isfinite(_get(r, "off_domain_fidelity")) for r in records)
    fig, axes = plt.subplots(
        1, 2 if fidelity else 1, figsize=(10 if fidelity else 5.5, 3.4), dpi=100, squeeze=False
    )
    ax = axes[0][0]
    for case, style in (("matched", "o-"), ("shuffled", "s--"), ("off_domain", "^:")):
        ax.plot(xs, [_get(r, "adherence", case, key) for r in records], style, label=case.replace("_", "-"))
    ax.axhline(
        _get(summary["base"], "adherence", "off", key), color="grey", linestyle="-.", label="ControlNet off"
    )
    ax.set_ylabel(f"{key} ({'higher' if summary['higher_is_better'] else 'lower'} is better)")
    if fidelity:
        right = axes[0][1]
        right.plot(xs, [_get(r, "prompt_fidelity") for r in records], "o-", label="prompt fidelity")
        right.plot(xs, [_get(r, "off_domain_fidelity") for r in records], "^:", label="off-domain fidelity")
        right.axhline(summary["fidelity_floor"], color="grey", linestyle="--", label="the pick's floor")
        right.set_ylabel("CLIP score / base model's")
    picked = summary["pick"]["name"]
    for axis in axes[0]:
        for x, record in zip(xs, records, strict=True):
            if record["name"] == picked:
                axis.axvline(x, color="green", alpha=0.3, linewidth=6, label="picked")
        axis.set_xlabel("training step" if known else "checkpoint")
        if not known:
            axis.set_xticks(xs, [r["name"] for r in records])
        axis.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def checkpoint_table(summary: dict[str, Any]) -> tuple[list[str], list[list]]:
    """The header and rows of the per-checkpoint table (the base model last)."""
    key = summary["adherence_key"]
    header = ["checkpoint", "step", f"matched {key}", "shuffled", "off-domain"]
    fidelity = any(math.isfinite(_get(r, "off_domain_fidelity")) for r in summary["checkpoints"])
    if fidelity:
        header += ["prompt fidelity", "off-domain fidelity"]
    rows = []
    for r in summary["checkpoints"]:
        row = [r["name"] + (" (picked)" if r["name"] == summary["pick"]["name"] else ""), r["step"] or "?"]
        row += [
            page.number(_get(r, "adherence", case, key)) for case in ("matched", "shuffled", "off_domain")
        ]
        if fidelity:
            row += [page.number(_get(r, "prompt_fidelity")), page.number(_get(r, "off_domain_fidelity"))]
        rows.append(row)
    base = ["ControlNet off (base model)", "", page.number(_get(summary["base"], "adherence", "off", key))]
    rows.append(base + [""] * (len(header) - len(base)))
    return header, rows


def write_report(out: Path) -> Path:
    """Draw ``curves.png`` and write ``report.html`` from ``out/eval.json``."""
    out = Path(out)
    summary = json.loads((out / EVAL_FILE).read_text())
    draw_curves(summary, out / CURVES_FILE)
    pick = summary["pick"]
    chosen = (
        f"Picked: {pick['reason']}; written to best/ (a ControlNet that generate and app load)."
        if pick["name"]
        else f"No checkpoint picked: {pick['reason']}."
    )
    header, rows = checkpoint_table(summary)
    grids = [
        page.figure(f"checkpoints/{r['name']}.png", f"{r['name']}: " + " | ".join(GRID_TITLES))
        for r in summary["checkpoints"]
        if (out / "checkpoints" / f"{r['name']}.png").is_file()
    ]
    sections = [
        f"<h1>controlkit eval: {html.escape(summary['controlnet'])}</h1>",
        page.paragraph(chosen),
        page.paragraph(f"The rule: {pick['rule']}."),
        *(page.paragraph(note) for note in summary["notes"]),
        page.paragraph(
            f"Held out: {summary['held_out']} of {summary['dataset']}; condition {summary['condition']} "
            f"({summary['adherence_key']}); {summary['settings']['steps']} steps, guidance "
            f"{summary['settings']['guidance']}, seeds from {summary['settings']['seed']}; same prompts and "
            "seeds in every case. Every figure: eval.json."
        ),
        "<h2>Per checkpoint</h2>" + page.table(header, rows),
        "<h2>Over training</h2>" + page.figure(CURVES_FILE, "adherence (and fidelity) over steps"),
        "<h2>Grids</h2>" + "".join(grids),
    ]
    path = out / REPORT_FILE
    path.write_text(page.page("controlkit eval", sections))
    return path


def text_table(summary: dict[str, Any]) -> list[str]:
    """The per-checkpoint table as lines of text, then the pick and its rule."""
    header, rows = checkpoint_table(summary)
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)) for row in [header, *rows]
    ]
    pick = summary["pick"]
    lines.append(f"picked {pick['reason']}" if pick["name"] else f"no pick: {pick['reason']}")
    lines.append(f"rule: {pick['rule']}")
    return lines + summary["notes"]
