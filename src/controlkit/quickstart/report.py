"""report.html: what quickstart did and whether the ControlNet learned control, as pictures and numbers.

Every picture is a file beside the report (linked by a relative path, so the folder can be zipped or served
as is); the figures are also in quickstart.json, and the evaluation's in eval/eval.json.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from types import SimpleNamespace

from controlkit.eval import page
from controlkit.eval.report import CURVES_FILE, EVAL_FILE, REPORT_FILE, checkpoint_table

SUMMARY_FILE = "quickstart.json"
BENCHMARK_FILE = "control_benchmark.json"
CASES = ("matched", "shuffled", "off", "off_domain")
OFFLINE_NOTE = (
    "Prompt fidelity is not measured here: offline there is no trained CLIP model (the demo base's text "
    "encoder was trained only on face captions), so quickstart reports adherence only. On a real model, "
    "`controlkit eval --clip openai/clip-vit-large-patch14` adds it and the forgetting probe's fidelity."
)

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

# 3. which checkpoint follows the landmarks without forgetting the prompt (writes model_out/eval/best)
controlkit eval --controlnet model_out --dataset ./held-out-faces --clip openai/clip-vit-large-patch14

# 4. use it
controlkit generate --controlnet model_out/eval/best --image photo.jpg \\
  --prompt "close-up dslr photo of a smiling woman"
controlkit app --controlnet model_out/eval/best
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


def _case_rows(scores: dict[str, dict[str, float]], key: str) -> list[list[str]]:
    return [
        [
            case.replace("_", "-"),
            page.number(scores[case].get(key)),
            page.number(scores[case].get("detection_rate")),
        ]
        for case in CASES
        if case in scores
    ]


def _benchmark_section(out: Path, key: str) -> str:
    """The benchmark's figures (benchmarks/quickstart_control.py), when it has run on this folder."""
    path = out / BENCHMARK_FILE
    if not path.is_file():
        return ""
    bench = json.loads(path.read_text())
    return (
        f"<h3>Benchmark: {bench['faces']} more held-out faces, {bench['sampling_steps']} sampling steps</h3>"
        + page.table(["case", key, "detection rate"], _case_rows(bench["scores"], key))
        + f'<p>Figures: <a href="{BENCHMARK_FILE}">{BENCHMARK_FILE}</a>, '
        f'<a href="{bench.get("report", "")}">its eval report</a></p>'
    )


def _verdict(control: dict[str, dict[str, float]], key: str) -> str:
    matched, shuffled, off = (control.get(case, {}).get(key) for case in ("matched", "shuffled", "off"))
    if None not in (matched, shuffled, off) and matched < 0.8 * min(shuffled, off):
        return (
            "The ControlNet follows the landmarks: matched conditionings give a clearly lower error than "
            "shuffled ones or no ControlNet."
        )
    return "Control is not (yet) clearly learned at this length: train longer (--steps) and compare again."


def eval_command(result: SimpleNamespace, rel) -> str:
    """The `controlkit eval` command line that measures what the report shows, from the report's folder."""
    config = result.config
    return (
        f"controlkit eval --controlnet {rel(Path(result.controlnet))} "
        f"--dataset {rel(Path(result.out) / 'held_out')} "
        f"--num {config['eval_faces']} --steps {config['eval_steps']} --guidance {config['guidance']} "
        f"--seed {config['seed']} --out eval-again"
    )


def _control_section(result: SimpleNamespace, rel) -> str:
    evaluation = result.evaluation
    key = evaluation["adherence_key"]
    eval_dir = Path(result.out) / "eval"
    final = evaluation["checkpoints"][-1]["name"]
    header, rows = checkpoint_table(evaluation)
    pick = evaluation["pick"]
    return (
        "<h2>Does it follow the condition?</h2>"
        + page.paragraph(
            f"{_verdict(result.control, key)} Held-out faces (never trained on: {evaluation['held_out']}), "
            f"the same prompts and seeds in every case; {key}: landmark error over inter-ocular distance, "
            "read by the face-landmarks condition's small-face regressor (lower is better)."
        )
        + page.table(["case (final checkpoint)", key, "detection rate"], _case_rows(result.control, key))
        + page.figure(
            rel(eval_dir / "checkpoints" / f"{final}.png"),
            f"{final}: conditioning | matched | shuffled | ControlNet off | off-domain prompt",
        )
        + "<h3>Every checkpoint (controlkit eval)</h3>"
        + page.table(header, rows)
        + page.figure(rel(eval_dir / CURVES_FILE), "adherence over training steps")
        + page.paragraph(f"Picked: {pick['reason']} (rule: {pick['rule']}); written to eval/best/.")
        + page.paragraph(OFFLINE_NOTE)
        + f'<p>The evaluation: <a href="{rel(eval_dir / REPORT_FILE)}">eval/report.html</a>, '
        f'<a href="{rel(eval_dir / EVAL_FILE)}">eval/eval.json</a>; the same again, from this folder: '
        f"<code>{html.escape(eval_command(result, rel))}</code>.</p>"
    )


def write_report(out: Path) -> Path:
    """Write report.html and its figures into ``out`` from quickstart.json (and the benchmark's JSON)."""
    out = Path(out)
    summary = json.loads((out / SUMMARY_FILE).read_text())
    result, config = SimpleNamespace(**summary), SimpleNamespace(**summary["config"])
    controlnet = Path(result.controlnet)
    _figure_loss(controlnet / "metrics.jsonl", out / "loss.png")
    grids = sorted((controlnet / "validation").glob("step-*.png"), key=lambda p: int(p.stem.split("-")[1]))
    rel = lambda p: Path(os.path.relpath(p, out)).as_posix()  # noqa: E731
    timing_rows = [[stage, f"{s:.0f} s"] for stage, s in result.seconds.items()]
    sections = [
        "<h1>controlkit quickstart</h1>"
        f"<p>A ControlNet trained on <code>{html.escape(str(config.base))}</code> "
        f"with {config.images} synthetic faces, {config.steps} steps of batch {config.batch_size}. "
        f'Files: <a href="{rel(result.dataset)}/">dataset</a>, <a href="{rel(controlnet)}/">ControlNet</a>, '
        '<a href="quickstart.json">quickstart.json</a> (every figure), '
        '<a href="held_out/">held-out faces</a>.</p>',
        _control_section(result, rel),
        _benchmark_section(out, result.evaluation["adherence_key"]),
        "<h2>Dataset</h2>"
        + page.figure(f"{rel(result.dataset)}/preview.png", "image | conditioning | caption"),
        "<h2>Training</h2>"
        + page.figure("loss.png", "training loss")
        + page.table(["stage", "time"], timing_rows),
        "<h2>Validation over steps</h2>"
        + "".join(page.figure(rel(g), f"step {g.stem.split('-')[1]}: conditioning | output") for g in grids),
        "<h2>The same at full scale, on a GPU</h2><pre>" + html.escape(GPU_COMMANDS) + "</pre>",
    ]
    path = out / "report.html"
    path.write_text(page.page("controlkit quickstart", sections))
    return path
