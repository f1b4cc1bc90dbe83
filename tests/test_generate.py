"""`controlkit generate` on a small ControlNet and real face photos: files, panel, scores, failure paths."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from controlkit import conditions
from controlkit.cli import main
from controlkit.errors import UserError
from controlkit.infer.config import GenerateConfig
from controlkit.infer.generate import annotate_photo, generate, output_size, resolve_condition
from controlkit.infer.panel import make_panel, score_caption, tile_size
from controlkit.metadata import ControlNetInfo

pytest.importorskip("dlib")

TINY = ["--steps", "2", "--prompt", "a portrait photo"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def photo_run(small_controlnet_dir, photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("gen") / "astronaut"
    result = generate(
        GenerateConfig(
            controlnet=small_controlnet_dir,
            prompt="a portrait photo",
            image=photos / "astronaut.png",
            num_images=2,
            steps=2,
            out=out,
        )
    )
    return result, out


def test_photo_run_writes_images_conditioning_panel_and_scores(photo_run):
    result, out = photo_run
    assert sorted(p.name for p in out.iterdir()) == [
        "conditioning.png",
        "image-00.png",
        "image-01.png",
        "panel.png",
        "scores.json",
    ]
    assert [img.size for img in result.images] == [(64, 64), (64, 64)]
    with Image.open(out / "image-01.png") as img:
        assert img.size == (64, 64)
    # The astronaut's landmarks are drawn: the conditioning image is not blank.
    assert np.asarray(result.conditioning_image).max() > 0
    assert result.annotation.shape == (1, 68, 2)


def test_panel_is_photo_conditioning_and_outputs_side_by_side(photo_run):
    result, out = photo_run
    tile_w, tile_h = tile_size((64, 64))
    with Image.open(out / "panel.png") as panel:
        assert panel.width == (2 + 2) * tile_w
        assert panel.height > tile_h  # the band of scores under the outputs
        first_tile = panel.crop((0, 0, tile_w, tile_h)).resize((16, 16), Image.Resampling.BOX)
    photo = result.photo.resize((16, 16), Image.Resampling.BOX)
    assert np.abs(np.asarray(first_tile, dtype=int) - np.asarray(photo, dtype=int)).mean() < 8


def test_scores_are_returned_printed_and_written_as_strict_json(photo_run):
    result, out = photo_run
    assert len(result.scores) == 2
    assert all(set(s) == {"landmark_nme", "detection_rate"} for s in result.scores)
    record = json.loads((out / "scores.json").read_text(), parse_constant=pytest.fail)
    assert record["condition"] == "face-landmarks" and record["scored"] is True
    assert [(i["file"], i["seed"]) for i in record["images"]] == [("image-00.png", 0), ("image-01.png", 1)]
    assert all(0.0 <= i["detection_rate"] <= 1.0 for i in record["images"])


def test_image_i_is_made_again_alone_with_seed_plus_i(photo_run, small_controlnet_dir, photos):
    result, _ = photo_run
    again = generate(
        GenerateConfig(
            controlnet=small_controlnet_dir,
            prompt="a portrait photo",
            image=photos / "astronaut.png",
            num_images=1,
            steps=2,
            seed=1,
        )
    )
    a, b = (np.asarray(img, dtype=int) for img in (result.images[1], again.images[0]))
    assert np.abs(a - b).max() <= 2


def test_cli_prints_each_score(small_controlnet_dir, photos, tmp_path, capsys):
    out = tmp_path / "cli"
    rc = main(
        ["generate", "--controlnet", str(small_controlnet_dir), "--image", str(photos / "astronaut.png")]
        + TINY
        + ["--num-images", "1", "--out", str(out)]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "image-00.png" in printed and "landmark_nme" in printed and "detection_rate" in printed
    assert (out / "panel.png").is_file()


def test_no_face_is_one_line_exit_2_and_writes_nothing(small_controlnet_dir, photos, tmp_path, capsys):
    out = tmp_path / "none"
    rc = main(
        ["generate", "--controlnet", str(small_controlnet_dir), "--image", str(photos / "sky.png")]
        + TINY
        + ["--out", str(out)]
    )
    err = capsys.readouterr().err
    assert rc == 2
    assert "no face found" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary folder left behind either


def test_conditioning_image_path_has_no_scores_said_once(photo_run, small_controlnet_dir, tmp_path, capsys):
    result, out = photo_run
    dest = tmp_path / "from-conditioning"
    rc = main(
        ["generate", "--controlnet", str(small_controlnet_dir)]
        + ["--conditioning-image", str(out / "conditioning.png")]
        + TINY
        + ["--num-images", "3", "--out", str(dest)]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert printed.count("no adherence scores") == 1
    assert json.loads((dest / "scores.json").read_text())["scored"] is False
    with Image.open(dest / "panel.png") as panel:
        assert panel.size == ((1 + 3) * tile_size((64, 64))[0], tile_size((64, 64))[1])
    with Image.open(dest / "conditioning.png") as cond:
        assert (
            np.abs(np.asarray(cond, dtype=int) - np.asarray(result.conditioning_image, dtype=int)).max() <= 1
        )


def generate_once(controlnet, photos, out, **options):
    return generate(
        GenerateConfig(
            controlnet=controlnet,
            prompt="x",
            image=photos / "astronaut.png",
            steps=1,
            num_images=1,
            out=out,
            **options,
        )
    )


def test_out_folder_with_files_is_refused_unless_overwrite(small_controlnet_dir, photos, tmp_path):
    (tmp_path / "image-07.png").write_bytes(b"old")
    with pytest.raises(UserError, match="--overwrite"):
        generate_once(small_controlnet_dir, photos, tmp_path)
    generate_once(small_controlnet_dir, photos, tmp_path, overwrite=True)
    assert sorted(p.name for p in tmp_path.glob("image-*.png")) == ["image-00.png"]


def test_an_out_folder_under_a_file_is_refused_before_generating(small_controlnet_dir, photos, tmp_path):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(UserError, match="not a folder this user can write to"):
        generate_once(small_controlnet_dir, photos, tmp_path / "a-file" / "results")


def test_missing_photo_and_missing_condition_are_user_errors(small_controlnet_dir, tmp_path):
    with pytest.raises(UserError, match="not found"):
        generate(GenerateConfig(controlnet=small_controlnet_dir, prompt="x", image=tmp_path / "nope.jpg"))
    with pytest.raises(UserError, match="exactly one"):
        generate(GenerateConfig(controlnet=small_controlnet_dir, prompt="x"))
    ControlNetInfo(base_model="somewhere").write(tmp_path)
    with pytest.raises(UserError, match="records no condition"):
        resolve_condition(None, ControlNetInfo.read(tmp_path), tmp_path)


def test_output_size_defaults_to_training_resolution_rounded_to_8():
    assert output_size(None, None, 64) == (64, 64)
    assert output_size(100, None, 512) == (512, 104)
    assert output_size(None, 70, 64) == (72, 64)


def test_panel_captions_and_nan():
    outs = [Image.new("RGB", (64, 48), (0, 0, 200))] * 3
    panel = make_panel(Image.new("RGB", (64, 48)), outs, captions=["a"] * 3)
    assert panel.width == 4 * tile_size((64, 48))[0]
    labels = conditions.get("face-landmarks").score_labels
    caption = score_caption({"landmark_nme": float("nan"), "detection_rate": 0.5}, labels)
    assert caption == "nme n/a · det 0.500"
    assert score_caption({"landmark_nme": 0.1}) == "landmark_nme 0.100"


def test_controlkit_generate_is_exported_lazily():
    import subprocess
    import sys

    code = (
        "import sys, controlkit; controlkit.GenerateConfig; assert 'torch' not in sys.modules; "
        "print(controlkit.generate.__module__)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "controlkit.infer.generate"


def test_pipeline_uses_unipc_and_picks_precision_by_device(small_controlnet_dir, monkeypatch):
    import torch

    from controlkit.devices import pick_dtype
    from controlkit.infer.pipeline import load_pipeline

    pipe = load_pipeline(small_controlnet_dir, ControlNetInfo.read(small_controlnet_dir), device="cpu")
    assert type(pipe.scheduler).__name__ == "UniPCMultistepScheduler"
    assert pipe.controlnet.dtype == torch.float32 and pipe.unet.dtype == torch.float32
    assert pick_dtype("cpu") == torch.float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert pick_dtype("cuda:0") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert pick_dtype("cuda") == torch.float16


def test_a_bad_or_unavailable_device_is_a_user_error(monkeypatch):
    import torch

    from controlkit.devices import pick_device

    assert pick_device("cpu") == "cpu"
    with pytest.raises(UserError, match="unknown --device 'gpu0'"):
        pick_device("gpu0")
    with pytest.raises(UserError, match="unknown --device 'meta'"):
        pick_device("meta")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(UserError, match="MPS is not available"):
        pick_device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="no CUDA GPU"):
        pick_device("cuda:1")


@pytest.mark.parametrize("size", [(512, 512), (384, 256)])
def test_scores_compare_outputs_in_the_annotation_frame(photos, size):
    """An output that is the photo itself scores near-perfect, whatever the output size and shape."""
    from controlkit.conditions import get
    from controlkit.infer.generate import annotate_photo, fit, score_images

    condition = get("face-landmarks")
    astronaut = Image.open(photos / "astronaut.png").convert("RGB")
    annotation, conditioning = annotate_photo(astronaut, condition, size)
    assert conditioning.size == size
    (scores,) = score_images([fit(astronaut, size)], annotation, condition)
    assert scores["detection_rate"] == 1.0
    assert scores["landmark_nme"] < 0.08


def test_condition_options_recorded_at_training_are_used_for_that_condition(tmp_path):
    ControlNetInfo(condition="face-landmarks", condition_options={"upsample": 1}).write(tmp_path)
    info = ControlNetInfo.read(tmp_path)
    assert resolve_condition(None, info, tmp_path).detector.upsample == 1
    assert resolve_condition("face-landmarks", info, tmp_path).detector.upsample == 1
    assert resolve_condition("canny", info, tmp_path).name == "canny"


def test_a_condition_that_finds_nothing_says_so_by_name():
    from data_conditions import WhiteSquare

    navy = Image.new("RGB", (64, 64), "navy")
    with pytest.raises(UserError, match="^the white-square condition finds nothing in the photo"):
        annotate_photo(navy, WhiteSquare(), (64, 64))


def test_a_controlnet_without_a_recorded_base_asks_for_base(tmp_path, monkeypatch):
    from controlkit.infer.pipeline import load_pipeline

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "plain").mkdir()
    with pytest.raises(UserError, match=r"records no base model \(no controlkit.json\); pass --base MODEL"):
        load_pipeline(tmp_path / "plain", ControlNetInfo.read(tmp_path / "plain"))
    hub_id = "someone/not-cached-controlnet"
    with pytest.raises(UserError, match="no controlkit.json, or the Hub is out of reach"):
        load_pipeline(hub_id, ControlNetInfo.read(hub_id))


def test_the_controlnet_record_is_read_once_per_generate(small_controlnet_dir, photos, controlnet_reads):
    generate(
        GenerateConfig(
            controlnet=small_controlnet_dir, prompt="x", image=photos / "astronaut.png", steps=1, num_images=1
        )
    )
    assert len(controlnet_reads) == 1


def test_photo_and_conditioning_image_are_a_required_pair_and_prompt_and_out_are_required(capsys):
    base = ["generate", "--controlnet", "x"]
    for argv, message in [
        (
            base + ["--prompt", "p", "--out", "o"],
            "one of the arguments --image --conditioning-image is required",
        ),
        (
            base + ["--image", "a", "--conditioning-image", "b", "--prompt", "p", "--out", "o"],
            "not allowed with",
        ),
        (base + ["--image", "a", "--out", "o"], "the following arguments are required: --prompt"),
        (base + ["--image", "a", "--prompt", "p"], "the following arguments are required: --out"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
