"""The 8 GB recipe (--vram 8): its settings, the frozen UNet's checkpointing, and that it trains the same."""

from __future__ import annotations

import pytest
import torch

from controlkit.train import memory
from controlkit.train.config import TrainConfig
from train_helpers import make_dataset, run_training, same_weights, train_args

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BASE = ["--pretrained_model_name_or_path=m", "--dataset_name=d", "--output_dir=o"]

CPU_8GB = ["--vram=8", "--mixed_precision=no", "--no-use_8bit_adam"]
"""--vram 8 less what needs CUDA (fp16 and bitsandbytes), so it runs here."""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "pairs")


def test_vram_8_is_the_8gb_recipe_and_asks_for_the_frozen_unet_to_be_checkpointed(capsys):
    config = TrainConfig.from_args([*BASE, "--vram=8"])
    assert config.mixed_precision == "fp16" and config.use_8bit_adam and config.cache_latents
    assert config.gradient_checkpointing and config.set_grads_to_none
    assert (config.train_batch_size, config.gradient_accumulation_steps) == (1, 4)
    assert memory.checkpoints_frozen_unet(config)
    assert "frozen UNet's blocks checkpointed" in capsys.readouterr().err
    assert not memory.checkpoints_frozen_unet(
        TrainConfig.from_args([*BASE, "--vram=8", "--no-gradient_checkpointing"])
    )
    capsys.readouterr()
    assert not memory.checkpoints_frozen_unet(TrainConfig.from_args([*BASE, "--vram=12"]))
    assert not memory.checkpoints_frozen_unet(TrainConfig.from_args([*BASE, "--gradient_checkpointing"]))
    assert "frozen UNet" not in capsys.readouterr().err


def _saved_bytes(unet, residuals) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of one frozen-UNet forward."""
    kept = {}

    def pack(tensor):
        kept[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    sample = torch.randn(1, 4, 8, 8)
    down, mid = residuals
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = unet(
            sample,
            torch.tensor([10]),
            encoder_hidden_states=torch.randn(1, 77, unet.config.cross_attention_dim),
            down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
            return_dict=False,
        )[0]
    out.square().mean().backward()
    return sum(kept.values())


def test_the_checkpointed_frozen_unet_keeps_fewer_activations_and_gives_the_same_gradients(small_model_dir):
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = (
        UNet2DConditionModel.from_pretrained(small_model_dir, subfolder="unet").requires_grad_(False).eval()
    )
    controlnet = ControlNetModel.from_unet(unet)
    torch.manual_seed(0)
    with torch.no_grad():
        down, mid = controlnet(
            torch.randn(1, 4, 8, 8),
            torch.tensor([10]),
            encoder_hidden_states=torch.randn(1, 77, unet.config.cross_attention_dim),
            controlnet_cond=torch.randn(1, 3, 64, 64),
            return_dict=False,
        )

    def residuals():
        return [r.clone().requires_grad_(True) for r in down], mid.clone().requires_grad_(True)

    torch.manual_seed(1)
    plain_inputs = residuals()
    plain = _saved_bytes(unet, plain_inputs)
    assert memory.checkpoint_frozen_unet(unet)
    assert unet.is_gradient_checkpointing and not unet.training
    torch.manual_seed(1)
    checkpointed_inputs = residuals()
    checkpointed = _saved_bytes(unet, checkpointed_inputs)
    assert checkpointed < 0.5 * plain
    pairs = zip(
        [*plain_inputs[0], plain_inputs[1]], [*checkpointed_inputs[0], checkpointed_inputs[1]], strict=True
    )
    for before, after in pairs:
        torch.testing.assert_close(after.grad, before.grad, rtol=1e-5, atol=1e-7)


def test_old_diffusers_keep_the_frozen_unet_unchanged_and_say_so(small_model_dir, monkeypatch, capsys):
    import diffusers
    from diffusers import UNet2DConditionModel

    unet = (
        UNet2DConditionModel.from_pretrained(small_model_dir, subfolder="unet").requires_grad_(False).eval()
    )
    monkeypatch.setattr(diffusers, "__version__", "0.31.0")
    assert not memory.checkpoint_frozen_unet(unet)
    assert not unet.is_gradient_checkpointing
    assert "diffusers>=0.32" in capsys.readouterr().err


def _count_frozen_checkpoints(monkeypatch) -> list[str]:
    """The class names of the frozen modules that torch's checkpoint recomputes while the test runs."""
    import torch.utils.checkpoint

    frozen = []
    original = torch.utils.checkpoint.checkpoint

    def counting(function, *args, **kwargs):
        module = getattr(function, "__self__", None)
        if isinstance(module, torch.nn.Module) and not any(p.requires_grad for p in module.parameters()):
            frozen.append(type(module).__name__)
        return original(function, *args, **kwargs)

    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", counting)
    return frozen


def test_vram_8_checkpoints_the_frozen_unet_and_trains_the_same(
    small_model_dir, dataset, tmp_path, monkeypatch
):
    """The same run with and without the frozen UNet's checkpointing: equal losses and weights."""
    from controlkit.train.models import load_models
    from controlkit.train.trainer import make_accelerator

    extra = ["--max_train_steps=3", "--train_batch_size=1", f"--latents_cache_dir={tmp_path / 'cache'}"]
    config = TrainConfig.from_args(train_args(small_model_dir, dataset, tmp_path / "m", *CPU_8GB, *extra))
    models = load_models(config, make_accelerator(config, tmp_path / "m"))
    assert models.base.unet.is_gradient_checkpointing and models.controlnet.is_gradient_checkpointing

    frozen = _count_frozen_checkpoints(monkeypatch)
    with_unet = run_training(train_args(small_model_dir, dataset, tmp_path / "a", *CPU_8GB, *extra))
    assert "ResnetBlock2D" in frozen and "BasicTransformerBlock" in frozen  # the UNet's blocks, recomputed
    frozen.clear()
    # The same options spelled out, without the preset: the ControlNet is checkpointed, the UNet is not.
    spelled = ["--gradient_checkpointing", "--cache_latents", "--gradient_accumulation_steps=4"]
    spelled += ["--set_grads_to_none", "--enable_xformers_memory_efficient_attention", "--mixed_precision=no"]
    without = run_training(train_args(small_model_dir, dataset, tmp_path / "b", *spelled, *extra))
    assert frozen == []
    assert [r["step"] for r in with_unet] == [r["step"] for r in without] == [1, 2, 3]
    assert [r["loss"] for r in with_unet] == pytest.approx([r["loss"] for r in without], rel=1e-6, abs=1e-9)
    assert same_weights(tmp_path / "a", tmp_path / "b", atol=1e-6)
