"""report.html: what quickstart did and whether the ControlNet learned control, as pictures and numbers.

Every picture is a file beside the report (linked by a relative path, so the folder can be zipped or served
as is); the figures are also in quickstart.json.
"""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path
from types import SimpleNamespace

SUMMARY_FILE = "quickstart.json"
BENCHMARK_FILE = "control_benchmark.json"

GPU_COMMANDS = """\
# 1. a paired dataset from your photos (or use the walkthrough's, below): landmarks, masks, BLIP captions
controlkit data build --source ./my-face-photos --condition face-landmarks --captioner blip \\
  --resolution 512 --num-workers 8 --out ./faces-dataset

# 2. the walkthrough's run on Stable Diffusion 2.1-base, its flags unchanged; --vram 24 fits a 24 GB GPU
#    (use --vram 16, 12 or 8 on smaller cards: fp16, gradient checkpointing, 8-bit Adam, cached latents)
controlkit train --pretrained_model_name_or_path=stabilityai/stable-diffusion-2-1-base \\
  --output_dir=model_out \\
  --dataset_name=multimodalart/facesyntheticsspigacaptioned --conditioning_image_column=spiga_seg \\
  --image_column=image --caption_column=image_caption --resolution=512 --learning_rate=1e-5 \\
  --validation_image ./face_landmarks1.jpeg ./face_landmarks2.jpeg \\
  --validation_prompt "High-quality close-up dslr photo of man wearing a hat with trees in the background" \\
    "Girl smiling, professional dslr photograph" \\
  --train_batch_size=4 --num_train_epochs=3 --tracker_project_name=controlnet \\
  --enable_xformers_memory_efficient_attention --checkpointing_steps=5000 --validation_steps=5000 \\
  --report_to wandb --vram 24

# 3. use it
controlkit generate --controlnet model_out --image photo.jpg --prompt "close-up dslr photo of a smiling woman"
controlkit app --controlnet model_out
"""


def _figure_loss(metrics_file: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    records = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    steps = [r["step"] for r in records if "loss" in r]
    losses = np.array([r["loss"] for r in records if "loss" in r])
    fig, ax = plt.subplots(figsize=(5, 3), dpi=100)
    ax.plot(steps, losses, alpha=0.35, label="loss")
    if len(losses) >= 10:
        window = max(5, len(losses) // 10)
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1 :], smooth, label=f"mean of {window}")
    ax.set_xlabel("step")
    ax.set_ylabel("noise-prediction MSE")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def _figure_adherence(rows: list[dict], control: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3), dpi=100)
    ax.plot([r["step"] for r in rows], [r["point_error"] for r in rows], marker="o", label="matched")
    for case, style in (("shuffled", "--"), ("disabled", ":")):
        if case in control:
            ax.axhline(control[case]["point_error"], linestyle=style, color="grey", label=f"{case} (final)")
    ax.set_xlabel("training step")
    ax.set_ylabel("landmark error / inter-ocular")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def _number(value: float) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _image(path: str, caption: str) -> str:
    src = html.escape(path)
    text = html.escape(caption)
    return (
        f'<figure><a href="{src}"><img src="{src}" alt="{text}"></a><figcaption>{text}</figcaption></figure>'
    )


def _benchmark_section(out: Path) -> str:
    """The benchmark's figures (benchmarks/quickstart_control.py), when it has run on this folder."""
    path = out / BENCHMARK_FILE
    if not path.is_file():
        return ""
    bench = json.loads(path.read_text())
    keys = ("point_error", "landmark_nme", "detection_rate")
    rows = [[case, *(_number(scores[k]) for k in keys)] for case, scores in bench["scores"].items()]
    return (
        f"<h3>Benchmark: {bench['faces']} more held-out faces, {bench['sampling_steps']} sampling steps</h3>"
        + _table(
            ["case", "landmark error / inter-ocular", "landmark_nme (found faces)", "detection rate"], rows
        )
        + f'<p>Figures: <a href="{BENCHMARK_FILE}">{BENCHMARK_FILE}</a></p>'
        + _image("control_benchmark.png", "conditioning | matched | shuffled | disabled")
    )


def write_report(out: Path) -> Path:
    """Write report.html and its figures into ``out`` from quickstart.json (and the benchmark's JSON)."""
    out = Path(out)
    summary = json.loads((out / SUMMARY_FILE).read_text())
    result, config = SimpleNamespace(**summary), SimpleNamespace(**summary["config"])
    controlnet = Path(result.controlnet)
    _figure_loss(controlnet / "metrics.jsonl", out / "loss.png")
    _figure_adherence(result.adherence_by_step, result.control, out / "adherence.png")
    grids = sorted((controlnet / "validation").glob("step-*.png"), key=lambda p: int(p.stem.split("-")[1]))
    rel = lambda p: Path(os.path.relpath(p, out)).as_posix()  # noqa: E731
    keys = ("point_error", "landmark_nme", "detection_rate")
    control_rows = [[case, *(_number(result.control[case][k]) for k in keys)] for case in result.control]
    step_rows = [[r["step"], *(_number(r[k]) for k in keys)] for r in result.adherence_by_step]
    timing_rows = [[stage, f"{s:.0f} s"] for stage, s in result.seconds.items()]
    matched, shuffled, disabled = (
        result.control.get(c, {}).get("point_error") for c in ("matched", "shuffled", "disabled")
    )
    verdict = (
        "The ControlNet follows the landmarks: matched conditionings give a clearly lower error than "
        "shuffled ones or no ControlNet."
        if matched is not None and matched < 0.8 * min(shuffled, disabled)
        else "Control is not (yet) clearly learned at this length: train longer (--steps) and compare again."
    )
    sections = [
        "<h1>controlkit quickstart</h1>"
        f"<p>A ControlNet trained on <code>{html.escape(str(config.base))}</code> "
        f"with {config.images} synthetic faces, {config.steps} steps of batch {config.batch_size}. "
        f'Files: <a href="{rel(result.dataset)}/">dataset</a>, <a href="{rel(controlnet)}/">ControlNet</a>, '
        '<a href="quickstart.json">quickstart.json</a> (every figure), '
        '<a href="held_out/">held-out faces</a>.</p>',
        "<h2>Does it follow the condition?</h2>"
        f"<p>{html.escape(verdict)} Held-out faces (never trained on), same prompts and seeds in every case; "
        "scores from a landmark regressor trained on the synthetic ground truth (lower error is better).</p>"
        + _table(
            ["case", "landmark error / inter-ocular", "landmark_nme (found faces)", "detection rate"],
            control_rows,
        )
        + _image("control.png", "conditioning | matched | shuffled conditioning | ControlNet disabled"),
        _benchmark_section(out),
        "<h2>Dataset</h2>" + _image(f"{rel(result.dataset)}/preview.png", "image | conditioning | caption"),
        "<h2>Training</h2>" + _image("loss.png", "training loss") + _table(["stage", "time"], timing_rows),
        "<h2>Validation over steps</h2>"
        + "".join(_image(rel(g), f"step {g.stem.split('-')[1]}: conditioning | output") for g in grids),
        "<h2>Adherence over steps</h2>"
        + _image("adherence.png", "matched landmark error per checkpoint")
        + _table(["step", "landmark error / inter-ocular", "landmark_nme", "detection rate"], step_rows),
        "<h2>The same at full scale, on a GPU</h2><pre>" + html.escape(GPU_COMMANDS) + "</pre>",
    ]
    style = (
        "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
        "img{image-rendering:pixelated;max-width:100%;min-width:16em}figure{display:inline-block;margin:.5em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.2em .6em}pre{background:#f4f4f4;padding:1em;overflow-x:auto}"
    )
    head = f"<meta charset='utf-8'><title>controlkit quickstart</title><style>{style}</style>"
    page = f"<!doctype html><html><head>{head}</head><body>{''.join(sections)}</body></html>"
    path = out / "report.html"
    path.write_text(page)
    return path
