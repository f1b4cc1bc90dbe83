"""The SD-2.1-base-shaped model has SD 2.1-base's parameter counts (built on the meta device: no weights)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    from controlkit.models.sd21_shapes import build_sd21_components

    return build_sd21_components(tmp_path_factory.mktemp("sd21") / "tokenizer", device="meta")


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts_are_sd21_base(parts):
    from diffusers import ControlNetModel

    assert all(p.device.type == "meta" for p in parts["unet"].parameters())
    assert _count(parts["unet"]) == 865_910_724
    assert _count(parts["text_encoder"]) == 340_387_840
    assert _count(parts["vae"]) == 83_653_863
    with torch.device("meta"):
        controlnet = ControlNetModel.from_unet(parts["unet"])
    # 364.2M with OpenCLIP's 1024-wide cross-attention; the often quoted 361.3M is SD 1.5's ControlNet.
    assert _count(controlnet) == 364_228_240


def test_text_encoder_embeds_clip_vocabulary_and_tokenizer_fits(parts):
    from controlkit.models.sd21_shapes import CLIP_VOCAB_SIZE

    embeddings = parts["text_encoder"].get_input_embeddings()
    assert embeddings.weight.shape == (CLIP_VOCAB_SIZE, 1024)
    ids = parts["tokenizer"]("a photo of a face", padding="max_length", return_tensors="pt").input_ids
    assert ids.shape == (1, 77)
    assert int(ids.max()) < CLIP_VOCAB_SIZE
    assert parts["text_encoder"].config.eos_token_id == parts["tokenizer"].eos_token_id


def test_configs_match_what_the_trainer_reads(parts):
    from diffusers import DDPMScheduler

    unet = parts["unet"].config
    assert unet.cross_attention_dim == 1024
    assert unet.use_linear_projection is True
    assert list(unet.attention_head_dim) == [5, 10, 20, 20]
    assert parts["vae"].config.scaling_factor == 0.18215
    # The trainer loads the noise scheduler as DDPM from the saved PNDM config, as for the real model.
    ddpm = DDPMScheduler.from_config(parts["scheduler"].config)
    assert ddpm.config.prediction_type == "epsilon"
    assert ddpm.config.clip_sample is False
    assert ddpm.config.beta_schedule == "scaled_linear"
