"""Shared fixtures: no network, small models built from configs, data the project generates."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def small_model_dir(tmp_path_factory):
    """A small SD-shaped model folder (random weights, real architectures), written once per session."""
    from controlkit.models.small import write_small_model

    return write_small_model(tmp_path_factory.mktemp("models") / "small-sd")
