"""What the eval tests share: a tiny CLIP model saved like a Hub one, and a small synthetic-faces dataset."""

from __future__ import annotations

from pathlib import Path


def write_tiny_clip(path: Path) -> Path:
    """A CLIPModel with small text and vision towers (random weights, safetensors) and its processor: the
    small models' byte-level tokenizer and a 32 px CLIPImageProcessor."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from controlkit.models.tokenizer import write_byte_level_tokenizer

    tokenizer = write_byte_level_tokenizer(path)
    tower = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
    text = {
        **tower,
        "vocab_size": len(tokenizer),
        "max_position_embeddings": tokenizer.model_max_length,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    config = CLIPConfig(
        text_config=text, vision_config={**tower, "image_size": 32, "patch_size": 8}, projection_dim=16
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(path, safe_serialization=True)
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(path)
    return path


def faces_dataset(path: Path, n: int, seed: int = 0) -> Path:
    """A face-landmarks dataset of ``n`` 64 px synthetic faces (exact landmarks), like quickstart's."""
    from controlkit.data.build import BuildConfig, build_dataset

    config = BuildConfig(
        source="synthetic-faces", out=str(path), landmarks="ground-truth", limit=n, resolution=64, seed=seed
    )
    return Path(build_dataset(config).out)
