"""Prompt fidelity: how well images match their prompts, by a CLIP model's image-text similarity.

The figure is CLIP score style: 100 x the cosine of the image and text embeddings (not clipped at 0, so a
ratio of means stays defined for any model). The evaluation reports it as a ratio: the ControlNet's mean
over the base model's mean on the same prompts and seeds, so 1 means the ControlNet costs no fidelity.
The model loads from safetensors only, from a Hub id or a local folder; remote code is never trusted.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from controlkit.errors import UserError, first_line


def _check_is_clip(name: str) -> None:
    from transformers import AutoConfig

    folder = Path(name)
    if folder.exists() and not (folder / "config.json").is_file():
        raise UserError(f"--clip {name} is not a CLIP model folder (no config.json)")
    try:
        kind = AutoConfig.from_pretrained(name, trust_remote_code=False).model_type
    except (OSError, ValueError) as exc:
        raise UserError(f"--clip {name}: cannot read its config ({first_line(exc)})") from exc
    if kind != "clip":
        raise UserError(f"--clip {name} is a {kind!r} model, not a CLIP model")


class ClipScorer:
    """A CLIP model and its processor on one device; ``similarity`` scores (image, prompt) pairs."""

    def __init__(self, name: str, device: str = "cpu"):
        from transformers import CLIPModel, CLIPProcessor

        _check_is_clip(name)
        try:
            self.model = CLIPModel.from_pretrained(name, use_safetensors=True, trust_remote_code=False)
            self.processor = CLIPProcessor.from_pretrained(name, trust_remote_code=False)
        except (OSError, ValueError) as exc:
            raise UserError(
                f"--clip {name}: cannot load it ({first_line(exc)}); safetensors weights only"
            ) from exc
        self.name, self.device = name, device
        self.model.to(device).eval()

    def similarity(self, images: list[Image.Image], prompts: list[str]) -> list[float]:
        """100 x cos(image embedding, text embedding) for each pair."""
        import torch

        tokenizer = self.processor.tokenizer
        inputs = self.processor(
            text=prompts,
            images=[image.convert("RGB") for image in images],
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=tokenizer.model_max_length,
        ).to(self.device)
        with torch.no_grad():
            out = self.model(**inputs)
        image = torch.nn.functional.normalize(out.image_embeds.float(), dim=-1)
        text = torch.nn.functional.normalize(out.text_embeds.float(), dim=-1)
        return (100 * (image * text).sum(-1)).tolist()
