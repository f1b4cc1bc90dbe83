"""Shared fixtures: no network, small models built from configs, data the project generates."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The test models are tiny: one thread per process beats several on 2 shared cores by 5-10x.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def own_cache_folder(tmp_path_factory):
    """controlkit's cache (latents of multi-epoch runs, decode checks) in a folder of the test session,
    never the user's ~/.cache."""
    before = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if before is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = before


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run several times faster on one thread on shared cores (no OpenMP spinning); restored.

    Use it with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def small_model_dir(tmp_path_factory):
    """A small SD-shaped model folder (random weights, real architectures), written once per session."""
    from controlkit.models.small import write_small_model

    return write_small_model(tmp_path_factory.mktemp("models") / "small-sd")


@pytest.fixture(scope="session")
def small_controlnet_dir(small_model_dir, tmp_path_factory):
    """A ControlNet made from the small UNet, saved as `controlkit train` saves one (contract 4)."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    from controlkit.metadata import ControlNetInfo

    out = tmp_path_factory.mktemp("controlnet") / "face-controlnet"
    unet = UNet2DConditionModel.from_pretrained(small_model_dir, subfolder="unet")
    ControlNetModel.from_unet(unet).save_pretrained(out, safe_serialization=True)
    ControlNetInfo(
        base_model=str(small_model_dir),
        condition="face-landmarks",
        resolution=64,
        dataset="synthetic-faces",
        controlkit_version="0.1.0",
    ).write(out)
    return out


@pytest.fixture
def controlnet_reads(monkeypatch):
    """Every ``ControlNetInfo.read`` call made while the test runs (the calls still read)."""
    from controlkit.metadata import ControlNetInfo

    calls = []
    read = ControlNetInfo.read.__func__

    def counting(cls, *args, **kwargs):
        calls.append(args)
        return read(cls, *args, **kwargs)

    monkeypatch.setattr(ControlNetInfo, "read", classmethod(counting))
    return calls


@pytest.fixture(scope="session")
def photos(tmp_path_factory):
    """The astronaut (a face dlib finds) and a plain sky-blue picture with no face at all, as files."""
    from PIL import Image
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(data.astronaut()).save(folder / "astronaut.png")
    Image.new("RGB", (300, 200), (120, 160, 210)).save(folder / "sky.png")
    return folder
