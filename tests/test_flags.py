"""The one way a command declares its flags: dataclass fields made with `option`, turned into argparse."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import pytest

from controlkit import flags
from controlkit.flags import option


@dataclass
class Example:
    """Every kind of field a command uses."""

    out: str = option(help="where to write")
    size: int = option(64, "picture size")
    scale: float | None = option(None, "a scale")
    folder: Path = option(Path("runs"), "a folder")
    progress: bool = option(True, "show progress")
    resume: bool = option(False, "continue")
    widths: tuple[int, ...] = option((32, 64), "block widths")
    prompts: list[str] | None = option(None, "prompts")
    options: dict = option({}, "options as JSON")
    kind: str = option("a", "a kind", choices=("a", "b"))
    image: str | None = option(None, "an image", group="input")
    ready: str | None = option(None, "a ready image", group="input")
    internal: int = option(3, "not a flag", hidden=True)


def parse(*argv: str, underscores: bool = False, suppress: bool = False) -> argparse.Namespace:
    parser = argparse.ArgumentParser(exit_on_error=False)
    flags.add_arguments(parser, Example, underscores=underscores, suppress=suppress)
    return parser.parse_args(list(argv))


def test_every_kind_of_field_parses_into_its_type():
    args = parse(
        "--out", "o", "--size", "32", "--scale", "0.5", "--folder", "f", "--no-progress", "--resume",
        "--widths", "1,2,3", "--prompts", "a", "b", "--options", '{"k": 1}', "--kind", "b", "--image", "i",
    )  # fmt: skip
    config = flags.from_namespace(Example, args)
    assert config == Example(
        out="o", size=32, scale=0.5, folder=Path("f"), progress=False, resume=True, widths=(1, 2, 3),
        prompts=["a", "b"], options={"k": 1}, kind="b", image="i",
    )  # fmt: skip
    defaults = flags.from_namespace(Example, parse("--out", "o", "--ready", "r"))
    assert defaults == Example(out="o", ready="r") and defaults.options == {} and defaults.internal == 3


def test_required_fields_groups_and_choices_are_enforced():
    for argv in (["--image", "i"], ["--out", "o"], ["--out", "o", "--image", "i", "--ready", "r"]):
        with pytest.raises((argparse.ArgumentError, SystemExit)):
            parse(*argv)
    with pytest.raises((argparse.ArgumentError, SystemExit)):
        parse("--out", "o", "--image", "i", "--kind", "c")
    with pytest.raises((argparse.ArgumentError, SystemExit)):
        parse("--out", "o", "--image", "i", "--widths", "1,x")


def test_help_shows_defaults_but_not_empty_ones_and_hidden_fields_are_no_flags():
    parser = argparse.ArgumentParser()
    flags.add_arguments(parser, Example)
    helps = {a.dest: a.help for a in parser._actions if a.option_strings and a.dest != "help"}
    assert "internal" not in helps
    assert helps["size"] == "picture size (default: 64)"
    assert helps["widths"] == "block widths (default: 32,64)"
    assert helps["progress"].endswith("(default: True)")
    for quiet in ("scale", "resume", "prompts", "options", "out"):
        assert "(default:" not in helps[quiet], quiet


def test_underscored_names_and_suppressed_defaults_for_the_trainer():
    args = parse("--out", "o", "--image", "i", "--no-progress", underscores=True, suppress=True)
    assert vars(args) == {"out": "o", "image": "i", "progress": False}
    with pytest.raises((argparse.ArgumentError, SystemExit)):
        parse("--out", "o", "--image", "i", "--no-resume", "--widths=1", "--internal", "4", underscores=True)
