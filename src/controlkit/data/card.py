"""The dataset card (README.md: provenance, counts, every skipped or ignored input) and preview.png.

A card travels with the dataset to the Hub, so it names local folders by their last component only
(``public_name``): the user's directory layout stays on the user's machine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image

from controlkit import __version__
from controlkit.pictures import image_grid

PREVIEW_ROWS = 4
_TILE = (192, 192)


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def write_card(folder: Path, info: dict[str, Any]) -> Path:
    """README.md for ``folder``; ``info`` holds provenance, counts, columns, skipped inputs and the config."""
    columns = info["columns"]
    counts = info["counts"]
    provenance = {
        "source": info["source"],
        "condition": f"{info['condition']} {json.dumps(info['condition_options'])}",
        "detector": info.get("detector", "n/a"),
        "detector version": info.get("detector_version", "n/a"),
        "captioner": info["captioner"],
        "resolution": info["resolution"] or "as the photos came (original bytes)",
        "built": f"{info['built_at']} with controlkit {__version__}",
    }
    lines = [
        f"# {info['name']}",
        "",
        f"A paired dataset for training a ControlNet on the `{info['condition']}` condition, built by "
        "`controlkit data build`. Each row holds a photo, the conditioning image drawn from its "
        "annotation, a caption, the annotation itself (so the conditioning can be re-rendered or "
        "augmented without the detector) and where the photo came from.",
        "",
        "![preview](preview.png)",
        "",
        "## Provenance",
        "",
        "| | |",
        "| --- | --- |",
        *(f"| {key} | {_cell(value)} |" for key, value in provenance.items()),
        "",
        "## Counts",
        "",
        "| inputs | rows | kept without annotation | skipped: nothing found | skipped: other |",
        "| --- | --- | --- | --- | --- |",
        f"| {counts['inputs']} | {counts['rows']} | {counts['kept_empty']} | {counts['no_annotation']} "
        f"| {counts['failed']} |",
        "",
        "## Columns",
        "",
        f"- `{columns['image']}`: the photo",
        f"- `{columns['conditioning_image']}`: the rendered `{info['condition']}` conditioning image",
        f"- `{columns['text']}`: the caption",
        f"- `{columns['annotation']}`: the annotation (`Condition.to_record`)",
        f"- `{columns['source']}`: the input it came from",
        "",
        "## Train on it",
        "",
        "```bash",
        "controlkit train --pretrained_model_name_or_path=stabilityai/stable-diffusion-2-1-base \\",
        f"  --dataset_name={info['name']} --output_dir=model_out",
        "```",
        "",
        "`controlkit.json` names the condition and the columns, so no column flags are needed.",
        "",
        f"## Skipped inputs ({len(info['skipped'])})",
        "",
        *_listing(info["skipped"], "input"),
        "",
        f"## Ignored files ({len(info.get('ignored', []))})",
        "",
        "Files in the source folder that the build did not read.",
        "",
        *_listing(info.get("ignored", []), "file"),
    ]
    lines += [
        "",
        "## Build settings",
        "",
        "```json",
        json.dumps(info["config"], indent=2, default=str),
        "```",
        "",
    ]
    from huggingface_hub import DatasetCard, DatasetCardData

    front_matter = DatasetCardData(tags=["controlnet", "controlkit", info["condition"]]).to_yaml()
    path = folder / "README.md"
    DatasetCard(f"---\n{front_matter}\n---\n\n" + "\n".join(lines)).save(path)
    return path


def _listing(entries: list[dict[str, str]], what: str) -> list[str]:
    """A markdown table of ``source | reason`` rows, or "None."."""
    if not entries:
        return ["None."]
    rows = [f"| {_cell(e['source'])} | {_cell(e['reason'])} |" for e in entries]
    return [f"| {what} | reason |", "| --- | --- |", *rows]


def write_preview(
    rows: list[tuple[Image.Image, Image.Image, str]],
    path: Path,
    headers: tuple[str, str] = ("image", "conditioning_image"),
) -> Path:
    """A grid of the first rows: photo | conditioning image, titled by their columns, the caption below."""
    sheet = image_grid(
        [(image, conditioning) for image, conditioning, _ in rows],
        _TILE,
        fit="contain",
        titles=headers,
        row_text=[caption for _, _, caption in rows],
        row_text_lines=3,
    )
    sheet.save(path)
    return path
