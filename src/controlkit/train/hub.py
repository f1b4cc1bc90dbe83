"""Publishing a trained ControlNet on the Hugging Face Hub: access check first, then one upload.

The access check runs before training, so a missing token or an unusable repo is found in seconds, not
after hours. Only the final ControlNet, its card (written by ``train/card.py`` at the end of every run),
``controlkit.json`` and the validation grids are uploaded: never ``checkpoint-*``, optimizer state, logs or
the effective config.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

from controlkit.errors import UserError, first_line

UPLOAD_PATTERNS = (
    "*.safetensors",
    "diffusion_pytorch_model.safetensors.index.json",
    "config.json",
    "README.md",
    "controlkit.json",
    "validation/*.png",
)
"""What a published ControlNet holds, as paths relative to output_dir (``*`` never crosses a folder)."""


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
