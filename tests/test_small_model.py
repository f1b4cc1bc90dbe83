"""Small SD-shaped model folders load by path as a Hub id would, with the asked prediction type and words."""

from diffusers import ControlNetModel, StableDiffusionPipeline

from controlkit.models.small import SmallModelConfig, write_small_model


def test_small_model_loads_by_path_like_a_hub_id(small_model_dir):
    pipe = StableDiffusionPipeline.from_pretrained(small_model_dir)
    controlnet = ControlNetModel.from_unet(pipe.unet)
    assert pipe.unet.config.cross_attention_dim == pipe.text_encoder.config.hidden_size
    assert controlnet.config.block_out_channels == pipe.unet.config.block_out_channels
    assert 2 ** (len(pipe.vae.config.block_out_channels) - 1) == 8
    ids = pipe.tokenizer("a close-up photo of a face").input_ids
    assert ids[0] == pipe.tokenizer.bos_token_id and ids[-1] == pipe.tokenizer.eos_token_id
    assert not list(small_model_dir.rglob("*.bin"))


def test_prediction_type_is_written_to_the_scheduler(tmp_path):
    path = write_small_model(tmp_path / "v", SmallModelConfig(prediction_type="v_prediction"))
    pipe = StableDiffusionPipeline.from_pretrained(path)
    assert pipe.scheduler.config.prediction_type == "v_prediction"


def test_words_become_single_tokens(tmp_path):
    path = write_small_model(tmp_path / "w", words=("face",))
    pipe = StableDiffusionPipeline.from_pretrained(path)
    assert len(pipe.tokenizer("face").input_ids) == 3
