"""The latent cache: each image's VAE latent distribution, computed once and kept on disk; optionally
each caption's text embedding too.

The cache stores the latent distribution's mean and std (not a sample), so the training loop samples
latents with the same random generator whether or not the cache is used, and trains the same. Text
embeddings are large (77 x 1024 values per caption at SD 2.1's size, more than the latents) and the text
encoder costs about 2% of a step, so by default the captions' token ids go to the text encoder each step;
``--cache_text_embeddings`` stores the embeddings too (and the empty-prompt embedding, for caption
dropout), so the text encoder can leave the device. A cache lives in a folder named by a key of (base
model, revision, variant, tokenizer, weights dtype, resolution, dataset fingerprint, columns, transforms,
whether it holds embeddings), is written to a temporary folder and renamed when complete, and is reused
across epochs and runs.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from controlkit.console import say
from controlkit.paths import cache_dir
from controlkit.train.data import TRANSFORM_VERSION, PairedImages, TrainingData, collate, digest, tokenize

SHARD_SIZE = 256
MANIFEST = "manifest.json"


def default_cache_root(config) -> Path:
    """``--latents_cache_dir``, else controlkit's cache folder (``~/.cache/controlkit/latents``)."""
    return Path(config.latents_cache_dir) if config.latents_cache_dir else cache_dir("latents")


def _model_identity(config) -> list:
    """The base model's name, plus the size and time of its VAE/text-encoder weights when it is a folder."""
    identity: list = [
        config.pretrained_model_name_or_path,
        config.revision,
        config.variant,
        config.tokenizer_name,
    ]
    local = Path(config.pretrained_model_name_or_path)
    if local.is_dir():
        for sub in ("vae", "text_encoder", "tokenizer"):
            for path in sorted((local / sub).glob("*")):
                stat = path.stat()
                identity.append((sub, path.name, stat.st_size, stat.st_mtime_ns))
    return identity


def cache_key(config, data: TrainingData, weight_dtype: torch.dtype, with_text: bool) -> str:
    from datasets import Value

    settings = data.settings
    caption_feature = data.dataset.features[settings.caption_column]
    caption_seed = None if caption_feature == Value("string") else settings.seed  # list captions pick by seed
    return digest(
        _model_identity(config),
        str(weight_dtype),
        settings.resolution,
        data.fingerprint,
        settings.image_column,
        settings.caption_column,
        caption_seed,
        TRANSFORM_VERSION,
        *(["text"] if with_text else []),  # keys of latents-only caches stay as they were
    )


class LatentCache:
    """Read access to a complete cache folder: per-row latent mean and std, and the prompt embedding when
    the cache holds them (``empty_prompt_embeds`` is then the empty prompt's, else None)."""

    def __init__(self, folder: Path):
        self.folder = folder
        manifest = json.loads((folder / MANIFEST).read_text())
        self.count, self.shard_size = manifest["count"], manifest["shard_size"]
        self.keys = tuple(manifest.get("keys", ("latent_mean", "latent_std", "prompt_embeds")))
        self.empty_prompt_embeds = None
        if "prompt_embeds" in self.keys:
            with safe_open(folder / "empty.safetensors", "pt") as f:
                self.empty_prompt_embeds = f.get_tensor("prompt_embeds")
        self._open: dict[int, object] = {}

    @property
    def has_text(self) -> bool:
        return "prompt_embeds" in self.keys

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        shard, offset = divmod(index, self.shard_size)
        if shard not in self._open:
            self._open[shard] = safe_open(self.folder / f"shard-{shard:05d}.safetensors", "pt")
        handle = self._open[shard]
        return {key: handle.get_slice(key)[offset : offset + 1][0] for key in self.keys}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_open": {}}  # file handles do not cross into dataloader workers


class CachedPairs(torch.utils.data.Dataset):
    """Rows -> conditioning image (computed), cached latent mean/std, and the cached prompt embedding or
    the caption's token ids. Only the columns it needs are read, so the target image is never decoded."""

    def __init__(self, pairs: PairedImages, cache: LatentCache):
        self.pairs, self.cache = pairs, cache
        settings = pairs.settings
        columns = [settings.conditioning_image_column]
        if not cache.has_text:
            columns.append(settings.caption_column)
        self.rows = pairs.data.dataset.select_columns(columns)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        row = self.rows[index]
        item = {
            "index": index,
            "conditioning_pixel_values": self.pairs.conditioning(index, row),
            **self.cache[index],
        }
        if not self.cache.has_text:
            item["input_ids"] = self.pairs.input_ids(index, row)
        return item


@torch.no_grad()
def _encode_all(
    pairs: PairedImages,
    vae,
    text_encoder,
    tokenizer,
    device,
    weight_dtype,
    folder: Path,
    batch_size: int,
    num_workers: int,
) -> None:
    """Write the shards; the text embeddings too when ``text_encoder`` is given."""
    from tqdm.auto import tqdm

    loader = torch.utils.data.DataLoader(
        _TargetsOnly(pairs), batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate
    )
    keys = ["latent_mean", "latent_std"]
    if text_encoder is not None:
        keys.append("prompt_embeds")
        empty = text_encoder(tokenize(tokenizer, [""]).to(device), return_dict=False)[0]
        save_file(
            {"prompt_embeds": empty[0].to(weight_dtype).cpu().contiguous()}, folder / "empty.safetensors"
        )
    buffers: dict[str, list[torch.Tensor]] = {key: [] for key in keys}
    shard = 0

    def flush(final: bool) -> None:
        nonlocal shard
        while sum(len(t) for t in buffers["latent_mean"]) >= SHARD_SIZE or (final and buffers["latent_mean"]):
            joined = {k: torch.cat(v) for k, v in buffers.items()}
            head = {k: v[:SHARD_SIZE].contiguous() for k, v in joined.items()}
            save_file(head, folder / f"shard-{shard:05d}.safetensors")
            shard += 1
            for k, v in joined.items():
                buffers[k] = [v[SHARD_SIZE:]] if len(v) > SHARD_SIZE else []

    for batch in tqdm(loader, desc="caching latents", leave=False):
        dist = vae.encode(batch["pixel_values"].to(device, dtype=weight_dtype)).latent_dist
        buffers["latent_mean"].append(dist.mean.to(weight_dtype).cpu())
        buffers["latent_std"].append(dist.std.to(weight_dtype).cpu())
        if text_encoder is not None:
            embeds = text_encoder(batch["input_ids"].to(device), return_dict=False)[0]
            buffers["prompt_embeds"].append(embeds.to(weight_dtype).cpu())
        flush(final=False)
    flush(final=True)
    manifest = {"count": len(pairs), "shard_size": SHARD_SIZE, "keys": keys}
    (folder / MANIFEST).write_text(json.dumps(manifest) + "\n")


class _TargetsOnly(torch.utils.data.Dataset):
    """Rows -> target pixels and token ids, without decoding the conditioning image."""

    def __init__(self, pairs: PairedImages):
        self.pairs = pairs
        self.rows = pairs.data.dataset.select_columns(
            [pairs.settings.image_column, pairs.settings.caption_column]
        )

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        return self.pairs.target(index, self.rows[index])


def prepare_cache(
    *,
    config,
    data: TrainingData,
    pairs: PairedImages,
    vae,
    text_encoder,
    tokenizer,
    accelerator,
    weight_dtype,
    with_text: bool,
    workers: int = 0,
) -> LatentCache:
    """Find the cache for this run or build it (on the main process, while the others wait); with
    ``with_text`` it holds the text embeddings too."""
    root = default_cache_root(config)
    folder = root / cache_key(config, data, weight_dtype, with_text)
    with accelerator.main_process_first():
        if accelerator.is_main_process and not (folder / MANIFEST).is_file():
            tmp = folder.with_name(folder.name + f".tmp-{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            _encode_all(
                pairs,
                vae,
                text_encoder if with_text else None,
                tokenizer,
                accelerator.device,
                weight_dtype,
                tmp,
                config.train_batch_size,
                workers,
            )
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(tmp, folder)
            held = "latents and text embeddings" if with_text else "latents"
            say(f"cached the {held} of {len(pairs)} rows in {folder}")
        else:
            say(f"using cached latents from {folder}")
    return LatentCache(folder)
