"""best/: the picked checkpoint as a ControlNet that `generate` and `app` load like any trained one.

Its diffusers files (config and safetensors weights) with the run's ``controlkit.json`` (base model,
condition, resolution) recording the step those weights come from. Written into a temporary folder and
moved into place, so an interrupted write never leaves a half model.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

from controlkit.eval.checkpoints import Candidate
from controlkit.metadata import ControlNetInfo

BEST = "best"
_MODEL_FILES = ("config.json", "*.safetensors", "*.safetensors.index.json")


def _model_folder(path: Path) -> Path:
    return path / "controlnet" if (path / "controlnet" / "config.json").is_file() else path


def write_best(candidate: Candidate, info: ControlNetInfo, out: Path) -> Path:
    """Write ``out/best`` from ``candidate``; ``info`` is the training run's record (its step is replaced)."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".best-", dir=out))
    try:
        source = Path(candidate.path)
        if source.exists():
            for pattern in _MODEL_FILES:
                for path in _model_folder(source).glob(pattern):
                    shutil.copy2(path, tmp / path.name)
        else:
            from controlkit.models.loading import load_controlnet

            load_controlnet(candidate.path).save_pretrained(tmp, safe_serialization=True)
        dataclasses.replace(info, step=candidate.step).write(tmp)
        final = out / BEST
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
