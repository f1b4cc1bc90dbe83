"""Faults a data build meets: a full disk, two builds into one output, a failed set-up, odd files.

Each test injects the fault (a writer that fails midway, a live process holding the output, a missing
captioner model, a 16-bit PNG, an animated GIF) and checks the one line the user gets and that the same
command can then go on.
"""

from __future__ import annotations

import errno
import io
import json
import subprocess
import sys
from pathlib import Path

import cv2
import datasets
import numpy as np
import pytest
from PIL import Image

from controlkit.data.build import BuildConfig, build_dataset
from controlkit.data.realify import realify_dataset
from controlkit.data.realify_config import RealifyConfig
from controlkit.errors import UserError
from controlkit.images import to_rgb
from controlkit.infer.generate import load_photo
from controlkit.locks import LOCK_FILE
from controlkit.quickstart.config import DEMO_BASE
from data_conditions import WhiteSquare, square_picture

N = 12
TESTS = Path(__file__).parent


@pytest.fixture
def photos(tmp_path):
    """N small pictures with a white square each (noise around it, so the shards have some size)."""
    root = tmp_path / "photos"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(N):
        image = square_picture((24, 24), (i % 9, 2, i % 9 + 5, 9))
        pixels = np.asarray(image).copy()
        pixels[12:] = rng.integers(0, 150, (12, 24, 3))
        Image.fromarray(pixels).save(root / f"{i:03d}.png")
    return root


def config(photos, out, **kwargs) -> BuildConfig:
    return BuildConfig(
        source=str(photos), out=str(out), condition="white-square", progress=False, shard_size=4, **kwargs
    )


def rows(folder) -> list[dict]:
    ds = datasets.load_from_disk(str(folder))
    ds = ds.cast_column("image", datasets.Image(decode=False))
    return list(ds.cast_column("conditioning_image", datasets.Image(decode=False)))


def failing_save(monkeypatch, fails_on) -> list[str]:
    """``save_to_disk`` that writes part of its files and then fails with ENOSPC where ``fails_on(path)``."""
    save, calls = datasets.Dataset.save_to_disk, []

    def save_to_disk(self, path, **kwargs):
        calls.append(path)
        if fails_on(path, len(calls)):
            Path(path).mkdir(parents=True, exist_ok=True)
            (Path(path) / "data-00000-of-00001.arrow").write_bytes(b"\0" * 1000)  # half-written
            raise OSError(errno.ENOSPC, "No space left on device")
        return save(self, path, **kwargs)

    monkeypatch.setattr(datasets.Dataset, "save_to_disk", save_to_disk)
    return calls


def test_a_full_disk_stops_the_build_in_one_line_and_resume_goes_on(photos, tmp_path, monkeypatch):
    whole = tmp_path / "whole"
    build_dataset(config(photos, whole))
    out = tmp_path / "ds"
    failing_save(monkeypatch, lambda path, n: n == 3)  # the third shard
    with pytest.raises(UserError) as caught:
        build_dataset(config(photos, out))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"cannot write a shard in {out}.partial: No space left on device; ")
    needed = float(message.split("needs about ")[1].split()[0])
    assert needed > 0 and "is free there; free some space and run the same command with --resume" in message
    work = tmp_path / "ds.partial"
    assert sorted(p.name for p in work.iterdir() if not p.name.startswith(".controlkit")) == [
        "build.json",
        "shard-00000",
        "shard-00001",
    ]  # the half-written shard is gone, the finished ones are kept
    monkeypatch.undo()
    report = build_dataset(config(photos, out, resume=True))
    assert report.resumed == 8 and report.processed_this_run == 4
    assert rows(out) == rows(whole)


def test_a_full_disk_while_writing_the_finished_dataset(photos, tmp_path, monkeypatch):
    out = tmp_path / "ds"
    failing_save(monkeypatch, lambda path, n: path.endswith(".tmp-final"))
    with pytest.raises(UserError, match=r"cannot write the finished dataset in .*ds.partial: No space left"):
        build_dataset(config(photos, out))
    assert not out.exists() and not list((tmp_path / "ds.partial").glob(".tmp-*"))
    monkeypatch.undo()
    report = build_dataset(config(photos, out, resume=True))
    assert report.resumed == N and report.processed_this_run == 0 and report.rows == N


def test_a_second_build_into_the_same_output_is_refused_naming_the_process(photos, tmp_path):
    out = tmp_path / "ds"
    script = (
        f"import sys; sys.path.insert(0, {str(TESTS)!r}); import data_conditions\n"
        "from controlkit.data.build import BuildConfig, build_dataset\n"
        f"build_dataset(BuildConfig(**{config(photos, out, condition_options={'delay': 5.0}).__dict__!r}))\n"
    )
    first = subprocess.Popen([sys.executable, "-c", script])
    lock = tmp_path / "ds.partial" / LOCK_FILE
    try:
        for _ in range(600):
            if lock.is_file() and lock.read_text():
                break
            assert first.poll() is None
            subprocess.run(["sleep", "0.05"])
        with pytest.raises(UserError, match=rf"^--out {out} is in use by process {first.pid} \("):
            build_dataset(config(photos, out, resume=True))
    finally:
        first.kill()  # a crash: the lock it leaves names a process that is gone
        first.wait()
    report = build_dataset(config(photos, out, resume=True))  # taken over, no stuck folder
    assert report.rows == N and not lock.exists()


def test_a_second_realify_into_the_same_output_is_refused(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = tmp_path / "real.partial" / LOCK_FILE
        lock.parent.mkdir()
        lock.write_text(json.dumps({"pid": sleeper.pid, "host": __import__("socket").gethostname()}))
        dataset = tmp_path / "synth"
        build_dataset(
            BuildConfig(
                source="synthetic-faces", landmarks="ground-truth", limit=2, resolution=64, out=str(dataset),
                progress=False,
            )
        )  # fmt: skip
        with pytest.raises(UserError, match=f"--out {tmp_path / 'real'} is in use by process {sleeper.pid}"):
            realify_dataset(
                RealifyConfig(dataset=str(dataset), base=str(DEMO_BASE), out=str(tmp_path / "real"), steps=4)
            )
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_build_that_failed_before_any_input_does_not_block_the_same_command(photos, tmp_path, monkeypatch):
    """A missing captioner model, or a condition whose extra is missing: the same command gives the same
    error again (not "an unfinished build"), and no work folder is left behind."""
    out, no_weights = tmp_path / "ds", tmp_path / "blip-without-weights"
    no_weights.mkdir()
    for _ in range(2):
        with pytest.raises(UserError, match="cannot load the BLIP captioner"):
            build_dataset(config(photos, out, captioner=f"blip:{no_weights}"))
        assert not (tmp_path / "ds.partial").exists()
    with pytest.raises(UserError, match="the BLIP captioner not found: .*no-such-folder"):
        build_dataset(config(photos, out, captioner=f"blip:{tmp_path / 'no-such-folder'}"))

    def annotate(self, image):
        raise UserError("dlib is not installed; install it with: pip install 'controlkit[faces]'")

    monkeypatch.setattr(WhiteSquare, "annotate", annotate)
    for _ in range(2):
        with pytest.raises(UserError, match="dlib is not installed"):
            build_dataset(config(photos, out))
        assert not (tmp_path / "ds.partial").exists()
    monkeypatch.undo()
    (tmp_path / "ds.partial").mkdir()  # a build killed before its first shard: nothing to resume
    (tmp_path / "ds.partial" / "build.json").write_text(json.dumps({"source": "elsewhere"}))
    assert build_dataset(config(photos, out)).rows == N


def sixteen_bit_png(pixels: np.ndarray) -> bytes:
    """``pixels`` (uint16, H x W or H x W x 3 RGB) as a 16-bit PNG."""
    ok, encoded = cv2.imencode(".png", pixels if pixels.ndim == 2 else pixels[..., ::-1].copy())
    assert ok
    return encoded.tobytes()


def test_16_bit_photos_are_scaled_not_clipped(tmp_path):
    """A 16-bit grayscale PNG (mode I;16) and a 16-bit RGB one: the square is found where it is, and the
    stored photo is an 8-bit picture of the same grey levels (PIL's own conversion turns I;16 white)."""
    grey = np.full((32, 32), 20_000, np.uint16)
    grey[4:12, 6:14] = 65_535
    colour = np.stack([grey, grey - grey // 8, grey // 2], axis=-1)
    root = tmp_path / "photos"
    root.mkdir()
    (root / "grey16.png").write_bytes(sixteen_bit_png(grey))
    (root / "rgb16.png").write_bytes(sixteen_bit_png(colour))
    with Image.open(root / "grey16.png") as opened:
        assert opened.mode == "I;16"
        assert np.asarray(opened.convert("RGB")).min() == 255  # the fault: PIL clips every value to 255
    build_dataset(
        BuildConfig(source=str(root), out=str(tmp_path / "ds"), condition="white-square", progress=False)
    )
    by_source = {row["source"]: row for row in datasets.load_from_disk(str(tmp_path / "ds"))}
    for name, pixels in (("grey16.png", grey), ("rgb16.png", colour)):
        row = by_source[name]
        assert row["annotation"] == [[[6.0, 4.0], [13.0, 11.0]]]
        stored = np.asarray(row["image"].convert("RGB"), np.int32)  # what any trainer decodes
        expected = np.asarray(pixels if pixels.ndim == 3 else np.stack([pixels] * 3, -1)) / 257
        assert np.abs(stored - expected).max() <= 1
    # generate's photo loading (a file, or a picture the app hands over) goes through the same conversion
    for photo in (root / "grey16.png", Image.open(io.BytesIO(sixteen_bit_png(grey)))):
        assert np.asarray(load_photo(photo))[0, 0].tolist() == [78, 78, 78]  # 20000 / 257
    assert to_rgb(Image.fromarray(grey)).getpixel((6, 4)) == (255, 255, 255)


def test_ignored_files_are_listed_with_their_reason_and_the_card_shows_no_local_folders(tmp_path):
    root = tmp_path / "photos"
    (root / ".thumbs").mkdir(parents=True)
    square_picture((16, 16), (2, 2, 5, 5)).save(root / "a.png")
    frames = [square_picture((16, 16), (i, i, i + 3, i + 3)) for i in range(3)]
    frames[0].save(root / "moving.gif", save_all=True, append_images=frames[1:])
    frames[0].save(root / "scan.tiff")
    (root / "notes.txt").write_text("not a photo")
    (root / ".DS_Store").write_bytes(b"\0")
    for i in range(2):
        frames[i].save(root / ".thumbs" / f"{i}.png")
    out = tmp_path / "ds"
    options = {"marker_dir": str(tmp_path)}
    report = build_dataset(
        BuildConfig(source=str(root), out=str(out), condition="white-square", condition_options=options)
    )
    ignored = {entry["source"]: entry["reason"] for entry in report.ignored}
    assert set(ignored) == {"moving.gif", "scan.tiff", "notes.txt", ".DS_Store", ".thumbs/"}
    assert ignored["moving.gif"].startswith("unsupported file type (extension .gif)")
    assert ignored[".thumbs/"] == "a hidden folder (2 files)"
    card = (out / "README.md").read_text()
    assert "## Ignored files (5)" in card and "| moving.gif | unsupported file type (extension .gif)" in card
    assert str(tmp_path) not in card  # neither the source, the output nor a path among the options
    assert "photo folder photos/" in card and '"out": "ds"' in card and '"marker_dir": "' in card
