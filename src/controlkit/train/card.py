"""The model card (``output_dir/README.md``) written at the end of every run, pushed or not.

It says what was trained (base model, dataset, condition, resolution, from the run's ``ControlNetInfo``),
shows the latest validation grid, how to use the ControlNet with diffusers and with controlkit, and the
training flags (the effective config, which never holds the token). ``--push_to_hub`` uploads it as is.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import yaml

from controlkit import __version__
from controlkit.metadata import ControlNetInfo
from controlkit.paths import is_hub_id

TAGS = ["controlnet", "diffusers", "stable-diffusion", "controlkit"]

KNOWN_LICENSES = {
    "stabilityai/stable-diffusion-2-1-base": "openrail++",
    "stabilityai/stable-diffusion-2-1": "openrail++",
    "stabilityai/stable-diffusion-2-base": "openrail++",
    "stabilityai/stable-diffusion-2": "openrail++",
    "runwayml/stable-diffusion-v1-5": "creativeml-openrail-m",
    "stable-diffusion-v1-5/stable-diffusion-v1-5": "creativeml-openrail-m",
    "CompVis/stable-diffusion-v1-4": "creativeml-openrail-m",
}
"""Licenses of the usual base models, so the card is right without a network call."""


def base_license(base_model: str) -> str | None:
    """The base model's license when known: a table of common bases, or a local folder's model card."""
    if base_model in KNOWN_LICENSES:
        return KNOWN_LICENSES[base_model]
    readme = Path(base_model) / "README.md"
    if readme.is_file():
        from huggingface_hub import metadata_load

        return (metadata_load(readme) or {}).get("license")
    return None


def write_model_card(
    output_dir: str | Path, info: ControlNetInfo, training_flags: dict[str, Any], repo_id: str
) -> Path:
    """Write ``output_dir/README.md``: YAML front matter (base model, dataset, tags, license) and usage.

    ``training_flags`` are shown as they are (pass the effective config, without the token); ``repo_id``
    is the name the usage examples load the ControlNet by.
    """
    from huggingface_hub import ModelCard, ModelCardData

    output_dir = Path(output_dir)
    base, dataset, condition = info.base_model, info.dataset, info.condition
    data = ModelCardData(
        base_model=base if base and is_hub_id(base) else None,
        datasets=[dataset] if dataset and is_hub_id(dataset) else None,
        license=base_license(base) if base else None,
        library_name="diffusers",
        pipeline_tag="text-to-image",
        tags=TAGS + ([condition] if condition else []),
    )
    grids = sorted(
        (output_dir / "validation").glob("step-*.png"), key=lambda path: int(path.stem.split("-")[1])
    )
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n" + _body(repo_id, info, training_flags, grids))
    path = output_dir / "README.md"
    card.save(path)
    return path


def _body(repo_id: str, info: ControlNetInfo, training_flags: dict[str, Any], grids: list[Path]) -> str:
    options = info.condition_options
    condition_text = (
        f"`{info.condition}`" + (f" with options `{options}`" if options else "")
        if info.condition
        else "none"
    )
    lines = [
        f"# {Path(repo_id).name}",
        "",
        f"A ControlNet trained with [controlkit](https://pypi.org/project/controlkit/) {__version__}.",
        "",
        f"- Base model: `{info.base_model}`",
        f"- Dataset: `{info.dataset}`",
        f"- Condition: {condition_text}",
        f"- Resolution: {info.resolution}",
        "",
    ]
    if grids:
        latest = grids[-1]
        lines += [
            "## Validation",
            "",
            f"Each row: the conditioning image, then generated images. Latest ({latest.stem}):",
            "",
            f"![validation {latest.stem}](validation/{latest.name})",
            "",
        ]
        if len(grids) > 1:
            lines += ["Earlier: " + ", ".join(f"[{g.stem}](validation/{g.name})" for g in grids[:-1]), ""]
    prompt = (training_flags.get("validation_prompt") or ["a photo"])[0]
    lines += [
        "## Use it with diffusers",
        "",
        "```python",
        "import torch",
        "from diffusers import ControlNetModel, StableDiffusionControlNetPipeline, UniPCMultistepScheduler",
        "from diffusers.utils import load_image",
        "",
        f'controlnet = ControlNetModel.from_pretrained("{repo_id}", torch_dtype=torch.float16)',
        "pipe = StableDiffusionControlNetPipeline.from_pretrained(",
        f'    "{info.base_model}", controlnet=controlnet, torch_dtype=torch.float16',
        ').to("cuda")',
        "pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config)",
        'conditioning = load_image("conditioning.png")',
        f"image = pipe({prompt!r}, image=conditioning, num_inference_steps=20).images[0]",
        "```",
        "",
        "## Use it with controlkit",
        "",
        "```bash",
        f"controlkit generate --controlnet {repo_id} --image photo.jpg --prompt {shlex.quote(prompt)} "
        "--out out/",
        f"controlkit app --controlnet {repo_id}",
        "```",
        "",
        "`--image` annotates your photo with the condition recorded in `controlkit.json`; "
        "`--conditioning-image` takes a conditioning image as it is.",
        "",
        "## Training flags",
        "",
        "```yaml",
        yaml.safe_dump(
            {k: v for k, v in training_flags.items() if v is not None},
            sort_keys=True,
            default_flow_style=False,
        ).rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)
