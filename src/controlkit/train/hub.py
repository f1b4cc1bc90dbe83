"""Publishing a trained ControlNet on the Hugging Face Hub: access check first, then a card and one upload.

The access check runs before training, so a missing token or an unusable repo is found in seconds, not
after hours. Only the final ControlNet, its card, ``controlkit.json`` and the validation grids are
uploaded: never ``checkpoint-*``, optimizer state, logs or the effective config (which may hold a token).
"""

from __future__ import annotations

import fnmatch
import shlex
from pathlib import Path

import yaml

from controlkit import __version__
from controlkit.errors import UserError, first_line
from controlkit.metadata import is_hub_id

TAGS = ["controlnet", "diffusers", "stable-diffusion", "controlkit"]

UPLOAD_PATTERNS = (
    "*.safetensors",
    "diffusion_pytorch_model.safetensors.index.json",
    "config.json",
    "README.md",
    "controlkit.json",
    "validation/*.png",
)
"""What a published ControlNet holds, as paths relative to output_dir (``*`` never crosses a folder)."""

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


def _hub_errors() -> tuple[type[Exception], ...]:
    from huggingface_hub.errors import HTTPError

    return (OSError, HTTPError)


def repo_name(config) -> str:
    """The repo the reference trainer pushes to: ``--hub_model_id`` or the output_dir's folder name."""
    return config.hub_model_id or Path(config.output_dir).resolve().name


def check_push_access(config) -> str:
    """The full repo id to push to, once the token is checked and the repo created; run before training.

    Each problem is one ``UserError`` line: no token, a rejected or read-only token, a namespace the token
    cannot write to, the Hub out of reach.
    """
    from huggingface_hub import HfApi, get_token

    token = config.hub_token or get_token()
    if not token:
        raise UserError(
            "--push_to_hub needs a Hugging Face token: log in with `hf auth login`, "
            "set HF_TOKEN, or pass --hub_token"
        )
    api = HfApi(token=token)
    name = repo_name(config)
    try:
        user = api.whoami()
    except _hub_errors() as exc:
        raise UserError(
            f"--push_to_hub: the Hub rejected the token or is out of reach ({first_line(exc)})"
        ) from exc
    role = user.get("auth", {}).get("accessToken", {}).get("role")
    if role == "read":
        raise UserError("--push_to_hub: the Hugging Face token is read-only; use a token with write access")
    namespaces = {user.get("name")} | {org.get("name") for org in user.get("orgs", [])}
    if "/" in name and name.split("/", 1)[0] not in namespaces:
        raise UserError(
            f"--push_to_hub: the token of {user.get('name')} cannot write to {name.split('/', 1)[0]}/; "
            f"set --hub_model_id to one of: {', '.join(sorted(n for n in namespaces if n))}"
        )
    try:
        return api.create_repo(name, exist_ok=True).repo_id
    except _hub_errors() as exc:
        raise UserError(f"--push_to_hub: cannot create or use the repo {name} ({first_line(exc)})") from exc


def base_license(base_model: str) -> str | None:
    """The base model's license when known: a table of common bases, or a local folder's model card."""
    if base_model in KNOWN_LICENSES:
        return KNOWN_LICENSES[base_model]
    readme = Path(base_model) / "README.md"
    if readme.is_file():
        from huggingface_hub import ModelCard

        return ModelCard.load(readme).data.to_dict().get("license")
    return None


def write_model_card(output_dir: str | Path, config, metadata: dict) -> Path:
    """Write ``output_dir/README.md``: YAML front matter (base model, dataset, tags, license) and usage."""
    from huggingface_hub import ModelCard, ModelCardData

    output_dir = Path(output_dir)
    base = metadata.get("base_model") or config.pretrained_model_name_or_path
    dataset = metadata.get("dataset") or config.dataset_name or config.train_data_dir
    condition = metadata.get("condition")
    repo_id = repo_name(config)
    data = ModelCardData(
        base_model=base if base and is_hub_id(base) else None,
        datasets=[dataset] if dataset and is_hub_id(dataset) else None,
        license=base_license(base),
        library_name="diffusers",
        pipeline_tag="text-to-image",
        tags=TAGS + ([condition] if condition else []),
    )
    grids = sorted(
        (output_dir / "validation").glob("step-*.png"), key=lambda path: int(path.stem.split("-")[1])
    )
    card = ModelCard(
        f"---\n{data.to_yaml()}\n---\n" + _body(repo_id, base, dataset, condition, metadata, config, grids)
    )
    path = output_dir / "README.md"
    card.save(path)
    return path


def _body(repo_id, base, dataset, condition, metadata, config, grids) -> str:
    options = metadata.get("condition_options") or {}
    condition_text = (
        f"`{condition}`" + (f" with options `{options}`" if options else "") if condition else "none"
    )
    resolution = metadata.get("resolution", config.resolution)
    lines = [
        f"# {Path(repo_id).name}",
        "",
        f"A ControlNet trained with [controlkit](https://pypi.org/project/controlkit/) {__version__}.",
        "",
        f"- Base model: `{base}`",
        f"- Dataset: `{dataset}`",
        f"- Condition: {condition_text}",
        f"- Resolution: {resolution}",
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
    prompt = (config.validation_prompt or ["a photo"])[0]
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
        f'    "{base}", controlnet=controlnet, torch_dtype=torch.float16',
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
            {k: v for k, v in config.public_dict().items() if v is not None},
            sort_keys=True,
            default_flow_style=False,
        ).rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def upload_file_list(output_dir: str | Path) -> list[str]:
    """The files ``push_to_hub`` uploads, relative to ``output_dir``, sorted (see ``UPLOAD_PATTERNS``)."""
    root = Path(output_dir)
    files = []
    for path in root.rglob("*"):
        relative = path.relative_to(root).as_posix()
        if path.is_file() and any(_matches(relative, pattern) for pattern in UPLOAD_PATTERNS):
            files.append(relative)
    return sorted(files)


def _matches(relative: str, pattern: str) -> bool:
    return relative.count("/") == pattern.count("/") and fnmatch.fnmatchcase(relative, pattern)


def push_to_hub(output_dir: str | Path, repo_id: str, token: str | None) -> None:
    """Upload ``upload_file_list(output_dir)`` to ``repo_id`` in one commit."""
    from huggingface_hub import CommitOperationAdd, HfApi

    root = Path(output_dir)
    operations = [CommitOperationAdd(path, root / path) for path in upload_file_list(root)]
    try:
        HfApi(token=token).create_commit(
            repo_id, operations, commit_message="Upload ControlNet trained with controlkit"
        )
    except _hub_errors() as exc:
        raise UserError(
            f"--push_to_hub: upload to {repo_id} failed ({first_line(exc)}); "
            f"the ControlNet is saved in {root}"
        ) from exc
