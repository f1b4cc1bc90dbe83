"""The speed features train the same: the latent cache by default, data-loader workers, reading the loss
every few steps, --compile, and --fast (which resumes exactly); the preset and the precision choice."""

from __future__ import annotations

import pytest
import torch

from controlkit.train import speed
from controlkit.train.config import TrainConfig
from train_helpers import interrupt_at, make_dataset, run_training, same_weights, train_args

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BASE = ["--pretrained_model_name_or_path=m", "--dataset_name=d", "--output_dir=o"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "pairs")


def _caches(root) -> list:
    """The latent caches in a cache folder (the decode checks kept beside them left out)."""
    return [p for p in root.iterdir() if p.name != "decode-checks"] if root.exists() else []


def _losses(records: list[dict]) -> list[float]:
    return [r["loss"] for r in records]


def test_fast_sets_its_preset_and_given_flags_win(capsys):
    config = TrainConfig.from_args([*BASE, "--fast"])
    assert config.cache_latents is True and config.mixed_precision == "bf16"
    assert "--fast: --cache_latents --mixed_precision=bf16" in capsys.readouterr().err
    mine = TrainConfig.from_args([*BASE, "--fast", "--mixed_precision=no", "--no-cache_latents"])
    assert mine.mixed_precision == "no" and mine.cache_latents is False
    assert TrainConfig.from_args(BASE).cache_latents is None  # decided per run: more than one epoch


def test_fast_adds_the_cuda_options_only_where_cuda_is(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    config = TrainConfig.from_args([*BASE, "--fast"])
    assert config.allow_tf32 and config.channels_last
    assert not speed.channels_last_applies(config, torch.device("cpu"))
    assert speed.channels_last_applies(config, torch.device("cuda"))


@pytest.mark.parametrize(("cores", "expected"), [(16, 4), (3, 2), (1, 0)])
def test_workers_load_data_on_cuda_unless_told_otherwise(monkeypatch, cores, expected):
    import os

    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    default = TrainConfig.from_args(BASE)
    assert default.dataloader_num_workers == 0  # the reference's default, kept
    assert speed.data_workers(default, cuda) == expected
    assert speed.data_workers(default, cpu) == 0
    assert speed.data_workers(TrainConfig.from_args([*BASE, "--dataloader_num_workers=0"]), cuda) == 0
    assert speed.data_workers(TrainConfig.from_args([*BASE, "--dataloader_num_workers=3"]), cpu) == 3


def test_bf16_becomes_fp16_on_a_gpu_without_it(capsys):
    assert speed.mixed_precision_for("bf16", bf16_supported=False) == "fp16"
    assert "no bf16" in capsys.readouterr().err
    assert speed.mixed_precision_for("bf16", bf16_supported=True) == "bf16"
    assert speed.mixed_precision_for("bf16", bf16_supported=None) == "bf16"  # a CPU
    assert speed.mixed_precision_for(None, bf16_supported=False) is None


def test_fused_adam_and_pinned_workers_only_on_cuda():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert speed.optimizer_options(cuda, use_8bit_adam=False) == {"fused": True}
    assert speed.optimizer_options(cuda, use_8bit_adam=True) == {}
    assert speed.optimizer_options(cpu, use_8bit_adam=False) == {}
    assert speed.loader_options(2, cuda) == {
        "num_workers": 2,
        "persistent_workers": True,
        "prefetch_factor": 4,
        "pin_memory": True,
    }
    assert speed.loader_options(0, cpu) == {"num_workers": 0}
    assert (speed.sync_every(cpu), speed.sync_every(cuda)) == (1, speed.SYNC_EVERY_STEPS_ON_GPU)


@pytest.mark.parametrize(
    ("flags", "rows", "epochs"),
    [
        ([], 8, 1),
        (["--num_train_epochs=3"], 8, 3),
        (["--max_train_steps=5"], 8, 2),  # 4 steps of batch 2 per epoch
        (["--max_train_steps=5", "--gradient_accumulation_steps=2"], 8, 3),
    ],
)
def test_the_latent_cache_is_on_for_runs_of_more_than_one_epoch(flags, rows, epochs):
    config = TrainConfig.from_args([*BASE, "--train_batch_size=2", *flags])
    assert speed.epochs_planned(config, rows, processes=1) == epochs
    assert speed.uses_latent_cache(config, rows, processes=1) is (epochs > 1)
    assert not speed.uses_latent_cache(TrainConfig.from_args([*BASE, *flags, "--no-cache_latents"]), rows, 1)
    assert speed.uses_latent_cache(TrainConfig.from_args([*BASE, *flags, "--cache_text_embeddings"]), rows, 1)


def test_a_multi_epoch_run_caches_by_default_and_trains_as_without(
    small_model_dir, dataset, tmp_path, monkeypatch
):
    from diffusers import AutoencoderKL

    extra = ["--max_train_steps=8", "--proportion_empty_prompts=0.5", f"--latents_cache_dir={tmp_path / 'c'}"]
    plain = run_training(
        train_args(small_model_dir, dataset, tmp_path / "plain", *extra, "--no-cache_latents")
    )
    assert _caches(tmp_path / "c") == []
    encodes = []
    original = AutoencoderKL.encode

    def counting(self, *args, **kwargs):
        encodes.append(args[0].shape[0])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(AutoencoderKL, "encode", counting)
    cached = run_training(train_args(small_model_dir, dataset, tmp_path / "auto", *extra))
    assert sum(encodes) == 8  # each of the 8 images once, for 2 epochs
    assert len(_caches(tmp_path / "c")) == 1
    assert [r["epoch"] for r in cached] == [0] * 4 + [1] * 4
    assert _losses(cached) == pytest.approx(_losses(plain), rel=1e-4)
    assert same_weights(tmp_path / "plain", tmp_path / "auto", atol=1e-5)


def test_data_loader_workers_train_the_same(small_model_dir, dataset, tmp_path):
    extra = ["--max_train_steps=4", "--proportion_empty_prompts=0.5"]
    main = run_training(train_args(small_model_dir, dataset, tmp_path / "main", *extra))
    workers = run_training(
        train_args(small_model_dir, dataset, tmp_path / "workers", *extra, "--dataloader_num_workers=2")
    )
    assert _losses(workers) == pytest.approx(_losses(main), rel=1e-6)
    assert same_weights(tmp_path / "main", tmp_path / "workers")


def test_reading_the_loss_every_few_steps_records_every_step_the_same(
    small_model_dir, dataset, tmp_path, monkeypatch
):
    """As on a GPU (one read every few steps), on a CPU: every step's line, the same losses, and the
    checkpoint, stop and non-finite checks at the reads."""
    extra = ["--max_train_steps=7", "--checkpointing_steps=5"]
    each = run_training(train_args(small_model_dir, dataset, tmp_path / "each", *extra))
    monkeypatch.setattr(speed, "sync_every", lambda device: 3)
    reads = []
    from controlkit.train import trainer

    original = trainer._StepMeter.read

    def counting(self, *args, **kwargs):
        steps, seconds, stop = original(self, *args, **kwargs)
        reads.append([s[0] for s in steps])
        return steps, seconds, stop

    monkeypatch.setattr(trainer._StepMeter, "read", counting)
    batched = run_training(train_args(small_model_dir, dataset, tmp_path / "batched", *extra))
    assert reads == [[1, 2, 3], [4, 5], [6], [7]]  # every 3 steps, and at the checkpoint and the end
    assert [r["step"] for r in batched] == list(range(1, 8))
    assert _losses(batched) == pytest.approx(_losses(each), rel=1e-6)
    assert (tmp_path / "batched" / "checkpoint-5").is_dir()


def test_fast_resumes_exactly(small_model_dir, dataset, tmp_path, monkeypatch):
    """--fast on a CPU (bf16 and the latent cache): a run cut after its checkpoint and resumed ends as the
    uninterrupted one."""
    extra = [
        "--fast",
        "--max_train_steps=6",
        "--checkpointing_steps=3",
        f"--latents_cache_dir={tmp_path / 'c'}",
    ]
    whole = run_training(train_args(small_model_dir, dataset, tmp_path / "whole", *extra))
    with monkeypatch.context() as patch:
        interrupt_at(patch, 5)
        with pytest.raises(KeyboardInterrupt):
            run_training(train_args(small_model_dir, dataset, tmp_path / "cut", *extra))
    resumed = run_training(
        train_args(small_model_dir, dataset, tmp_path / "cut", *extra, "--resume_from_checkpoint=latest")
    )
    assert [r["step"] for r in resumed] == list(range(1, 7))
    assert _losses(resumed) == pytest.approx(_losses(whole), rel=1e-5)
    assert same_weights(tmp_path / "whole", tmp_path / "cut", atol=1e-6)


def test_compile_trains_like_eager(small_model_dir, dataset, tmp_path, capsys, monkeypatch):
    """Regional torch.compile of the repeated blocks gives the eager loss sequence (inductor's fused
    kernels round differently: within 1e-4), or eager mode and one line where no compiler works."""
    from torch._dynamo.utils import counters

    extra = ["--max_train_steps=3"]
    eager = run_training(train_args(small_model_dir, dataset, tmp_path / "eager", *extra))
    compiled_blocks = []
    compile_blocks = speed.compile_blocks
    monkeypatch.setattr(speed, "compile_blocks", lambda *a: compiled_blocks.append(compile_blocks(*a)))
    graphs_before = counters["stats"]["unique_graphs"]
    compiled = run_training(train_args(small_model_dir, dataset, tmp_path / "compiled", *extra, "--compile"))
    if speed.compiler_works(torch.device("cpu")) is None:
        assert compiled_blocks[0] > 0  # both models' resnet and transformer blocks
        assert counters["stats"]["unique_graphs"] > graphs_before  # and they ran compiled
    else:
        assert compiled_blocks == [0] and "training in eager mode" in capsys.readouterr().err
    assert _losses(compiled) == pytest.approx(_losses(eager), rel=1e-4)
    assert same_weights(tmp_path / "eager", tmp_path / "compiled", atol=1e-4)


def test_compile_without_a_compiler_is_one_line_and_eager(small_model_dir, monkeypatch, capsys):
    from diffusers import UNet2DConditionModel

    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler found\nmore detail")

    monkeypatch.setattr(torch, "compile", broken)
    unet = UNet2DConditionModel.from_pretrained(small_model_dir, subfolder="unet")
    assert speed.compile_blocks([unet], torch.device("cpu")) == 0
    err = capsys.readouterr().err
    assert "torch.compile does not work here (RuntimeError: no C++ compiler found)" in err
    assert "more detail" not in err
