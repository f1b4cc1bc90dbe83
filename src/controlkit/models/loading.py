"""Load a Stable Diffusion base model's parts, and a ControlNet, from a Hub id or a local folder.

Safetensors only unless the user allows pickle weights by flag; remote code is never trusted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controlkit.errors import UserError, first_line
from controlkit.paths import check_exists

_PARTS = ("tokenizer", "text_encoder", "vae", "unet", "scheduler")
PICKLE_HINT = (
    "convert them to safetensors, or if you trust them, allow them with `controlkit train --allow_pickle` "
    "(other commands load safetensors only)"
)


@dataclass
class BaseComponents:
    tokenizer: Any
    text_encoder: Any
    vae: Any
    unet: Any
    noise_scheduler: Any


PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth")


def _pickle_only(path: Path) -> list[str]:
    """Pickle weight files in folders that hold no safetensors beside them."""
    found = (p for suffix in PICKLE_SUFFIXES for p in path.rglob(f"*{suffix}"))
    return sorted(str(p.relative_to(path)) for p in found if not list(p.parent.glob("*.safetensors")))


def _check_source(name: str, allow_pickle: bool, what: str = "model folder") -> None:
    if not check_exists(name, what):
        return
    local = Path(name)
    if not local.is_dir():
        raise UserError(f"{name} is a file; give a model folder in the diffusers layout or a Hub id")
    pickled = [] if allow_pickle else _pickle_only(local)
    if pickled:
        raise UserError(
            f"{name} has only pickle weights for some parts ({', '.join(pickled[:3])}), which can run code "
            f"when loaded; {PICKLE_HINT}"
        )


def controlnet_subfolder(name: str) -> str | None:
    """Where a ControlNet folder keeps its model: at its root (as `controlkit train` saves it), or in
    ``controlnet/`` (a checkpoint, or a pipeline folder); None for the root and for a Hub id."""
    local = Path(name)
    if not local.exists() or (local / "config.json").is_file():
        return None
    if (local / "controlnet" / "config.json").is_file():
        return "controlnet"
    raise UserError(
        f"{name} is not a ControlNet folder (no config.json at its root or in controlnet/); give a folder "
        "that `controlkit train` wrote, or a Hub id"
    )


def controlnet_config(controlnet: str | Path) -> dict[str, Any] | None:
    """The config.json of a local ControlNet folder, once it is known to be one: a ControlNetModel's
    config with safetensors weights beside it (``controlnet_subfolder`` says where). For a Hub id, its
    config.json where the Hub (or its cache) gives it, else None. For commands that load safetensors only
    (generate, app): pickle weights get the command that converts them."""
    name = str(controlnet)
    if not check_exists(name, "ControlNet"):
        return _hub_config(name)
    subfolder = controlnet_subfolder(name)
    model = Path(name) / subfolder if subfolder else Path(name)
    try:
        config = json.loads((model / "config.json").read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(
            f"{model / 'config.json'} is not valid JSON ({exc}); is {name} a ControlNet?"
        ) from exc
    kind = config.get("_class_name") if isinstance(config, dict) else type(config).__name__
    if kind not in (None, "ControlNetModel"):
        raise UserError(f"{name} is not a ControlNet folder: its config.json describes a {kind}")
    if not list(model.glob("*.safetensors")):
        pickled = sorted(p.name for p in model.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if not pickled:
            raise UserError(
                f"{name} is not a ControlNet folder: no weights (*.safetensors) beside its config.json"
            )
        convert = (
            f"from diffusers import ControlNetModel; ControlNetModel.from_pretrained('{model}', "
            f"use_safetensors=False).save_pretrained('{model}')"
        )
        raise UserError(
            f"{name} has only pickle weights ({', '.join(pickled)}), which can run code when loaded; if you "
            f'trust where they came from, convert them to safetensors once: python -c "{convert}"'
        )
    return config


def _hub_config(repo: str) -> dict[str, Any] | None:
    from huggingface_hub import hf_hub_download

    try:
        config = json.loads(Path(hf_hub_download(repo, "config.json")).read_text())
    except Exception:  # offline, no such repo, a damaged file: loading the model will say what is wrong
        return None
    return config if isinstance(config, dict) else None


def _use_safetensors(allow_pickle: bool) -> bool | None:
    # True: safetensors or fail. None: prefer safetensors, fall back to pickle (only when the user allows it).
    return None if allow_pickle else True


def _load_error(what: str, name: str, exc: Exception, allow_pickle: bool = True) -> UserError:
    """One line; when safetensors were required and not found, it says how pickle weights are allowed."""
    message = first_line(exc)
    if not allow_pickle and "safetensors" in message:
        message += f" (if it has only pickle weights: {PICKLE_HINT})"
    return UserError(f"cannot load the {what} from {name}: {message}")


def load_base_components(
    name: str,
    revision: str | None = None,
    variant: str | None = None,
    cache_dir: str | None = None,
    tokenizer_name: str | None = None,
    allow_pickle: bool = False,
) -> BaseComponents:
    """Tokenizer, CLIP text encoder, VAE, UNet and DDPM noise scheduler of an SD 1.x/2.x model."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextModel

    _check_source(name, allow_pickle)
    parts = ("text_encoder", "vae", "unet", "scheduler") if tokenizer_name else _PARTS
    missing = [f"{part}/" for part in parts if Path(name).is_dir() and not (Path(name) / part).is_dir()]
    if missing:
        raise UserError(
            f"cannot load the base model from {name}: not a diffusers model folder (no {', '.join(missing)})"
        )
    common = {"revision": revision, "cache_dir": cache_dir}
    weights = {**common, "variant": variant, "use_safetensors": _use_safetensors(allow_pickle)}
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            tokenizer_name or name,
            subfolder=None if tokenizer_name else "tokenizer",
            use_fast=False,
            trust_remote_code=False,
            **common,
        )
        text_encoder = CLIPTextModel.from_pretrained(
            name, subfolder="text_encoder", trust_remote_code=False, **weights
        )
        vae = AutoencoderKL.from_pretrained(name, subfolder="vae", **weights)
        unet = UNet2DConditionModel.from_pretrained(name, subfolder="unet", **weights)
        noise_scheduler = DDPMScheduler.from_pretrained(name, subfolder="scheduler", **common)
    except (OSError, ValueError) as exc:
        raise _load_error("base model", name, exc, allow_pickle) from exc
    return BaseComponents(tokenizer, text_encoder, vae, unet, noise_scheduler)


def load_controlnet(
    name: str,
    revision: str | None = None,
    variant: str | None = None,
    cache_dir: str | None = None,
    allow_pickle: bool = False,
    dtype: Any = None,
):
    """A diffusers ControlNetModel (a Hub id or a folder; see ``controlnet_subfolder``) to train or to use."""
    import warnings

    from diffusers import ControlNetModel

    _check_source(name, allow_pickle, "ControlNet")
    options = {"torch_dtype": dtype} if dtype is not None else {}
    # ``torch_dtype`` works on every supported diffusers; newer ones prefer ``dtype`` and warn.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Please use `dtype` instead.*", category=FutureWarning)
        try:
            return ControlNetModel.from_pretrained(
                name,
                subfolder=controlnet_subfolder(name),
                revision=revision,
                variant=variant,
                cache_dir=cache_dir,
                use_safetensors=_use_safetensors(allow_pickle),
                **options,
            )
        except (OSError, ValueError) as exc:
            raise _load_error("ControlNet", name, exc, allow_pickle) from exc


def controlnet_pipeline(base: str, controlnet: str, dtype: Any, device: str, progress: bool = True):
    """A StableDiffusionControlNetPipeline of ``base`` with ``controlnet`` (both loaded as above, in
    ``dtype``), the UniPC scheduler that 20 steps suffice for, and no safety checker, on ``device``."""
    import warnings

    from diffusers import StableDiffusionControlNetPipeline, UniPCMultistepScheduler

    model = load_controlnet(controlnet, dtype=dtype)
    # ``torch_dtype`` works on every supported diffusers; newer ones prefer ``dtype`` and warn.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Please use `dtype` instead.*", category=FutureWarning)
        try:
            pipe = StableDiffusionControlNetPipeline.from_pretrained(
                base,
                controlnet=model,
                torch_dtype=dtype,
                use_safetensors=True,
                safety_checker=None,
                requires_safety_checker=False,
            )
        except (OSError, ValueError) as exc:
            raise _load_error("base model", base, exc) from exc
    pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=not progress)
    return pipe.to(device)
