"""A checkpoint's manifest, and the check that tells a complete checkpoint from a damaged one.

Every checkpoint records its files with their sizes and sha256 in ``manifest.json``, written last inside
the temporary folder that becomes ``checkpoint-N`` only when complete. A disk that filled up, a copy that
was cut short or a file that was overwritten then shows as a file that is missing, has another size or
fails its hash. Checkpoints written before manifests existed are checked by their structure instead: the
files a resume needs are there, the safetensors headers parse and cover their data, and the torch files
(optimizer, schedule, random states) are complete zip archives.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

MANIFEST_FILE = "manifest.json"
FORMAT = 1
_CHUNK = 8 << 20


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)  # hashlib releases the GIL on large buffers: files hash in parallel
    return digest.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST_FILE)


def _hash_all(folder: Path, paths: list[Path]) -> dict[str, str]:
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        hashes = pool.map(_sha256, [folder / p for p in paths])
        return {str(p): h for p, h in zip(paths, hashes, strict=True)}


def write_manifest(folder: Path) -> dict:
    """Record every file of ``folder`` (relative path, size, sha256) in its manifest.json; returns it."""
    paths = [p.relative_to(folder) for p in _files(folder)]
    hashes = _hash_all(folder, paths)
    files = {str(p): {"size": (folder / p).stat().st_size, "sha256": hashes[str(p)]} for p in paths}
    manifest = {"format": FORMAT, "files": files}
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def checkpoint_size(folder: Path) -> int:
    """The bytes a checkpoint takes on disk."""
    return sum(p.stat().st_size for p in _files(folder))


def check_checkpoint(folder: Path, state_file: str) -> str | None:
    """What is wrong with a checkpoint, in a few words, or None when it is complete."""
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        return _check_structure(folder, state_file)
    try:
        files = json.loads(manifest_path.read_text())["files"]
    except (ValueError, KeyError, TypeError):
        return f"its {MANIFEST_FILE} does not parse"
    for name, entry in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != entry["size"]:
            return f"{name} has {size} of its {entry['size']} bytes"
    hashes = _hash_all(folder, [Path(name) for name in files])
    bad = [name for name, entry in files.items() if hashes[name] != entry["sha256"]]
    return f"{bad[0]} fails its sha256 check" if bad else None


def _check_structure(folder: Path, state_file: str) -> str | None:
    """The check of a checkpoint without a manifest (written by an older controlkit)."""
    try:
        json.loads((folder / state_file).read_text())["global_step"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{state_file} does not parse"
    needed = [
        "controlnet/config.json",
        "controlnet/diffusion_pytorch_model.safetensors",
        "generator_0.safetensors",
    ]
    missing = [name for name in needed if not (folder / name).is_file()]
    if not list(folder.glob("optimizer*.bin")):
        missing.append("optimizer.bin (the optimizer state)")
    if missing:
        return f"{missing[0]} is missing"
    for path in sorted(folder.rglob("*.safetensors")):
        if not _safetensors_complete(path):
            return f"{path.relative_to(folder)} is not a complete safetensors file"
    for path in sorted(p for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pkl")):
        if not zipfile.is_zipfile(path):
            return f"{path.name} is not a complete torch file"
    return None


def _safetensors_complete(path: Path) -> bool:
    """Whether the header parses and the data it describes is all there (a cut file fails)."""
    try:
        with path.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > path.stat().st_size - 8:
                return False
            header = json.loads(f.read(length))
        ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
        return 8 + length + max(ends, default=0) == path.stat().st_size
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return False
