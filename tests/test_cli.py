"""The `controlkit` command itself: every flag explained, user errors as one line, exit codes."""

from __future__ import annotations

import argparse

import pytest

from controlkit import cli
from controlkit.errors import UserError, first_line


def _parsers(parser: argparse.ArgumentParser, prog: str = "controlkit"):
    """Every parser under ``parser`` (subcommands and their actions), with its command line."""
    yield prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{prog} {name}")


def test_every_subcommand_has_a_description_and_every_flag_a_help_text():
    seen = []
    for prog, parser in _parsers(cli.build_parser()):
        seen.append(prog)
        assert parser.description, f"{prog} has no description"
        for action in parser._actions:
            if action.option_strings and action.help != argparse.SUPPRESS:
                assert action.help and action.help.strip(), f"{prog} {action.option_strings[0]} has no help"
    assert {
        "controlkit train",
        "controlkit data build",
        "controlkit generate",
        "controlkit app",
        "controlkit quickstart",
        "controlkit pretrain-demo-base",
    } <= set(seen)


def test_a_user_error_is_one_line_on_stderr_and_exit_code_2(monkeypatch, capsys):
    def fail(args):
        raise UserError("the photo has no face")

    monkeypatch.setattr("controlkit.infer.generate_command.run", fail)
    code = cli.main(["generate", "--controlnet", "x", "--image", "y.png", "--prompt", "p", "--out", "o"])
    err = capsys.readouterr().err
    assert code == 2
    assert err == "controlkit generate: error: the photo has no face\n"


def test_a_bad_flag_value_is_an_argparse_error_not_a_traceback(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--resolution", "big"])
    assert exit_info.value.code == 2
    assert "argument --resolution: invalid int value: 'big'" in capsys.readouterr().err


def test_first_line_keeps_one_line_and_names_the_type_of_an_empty_message():
    assert first_line(OSError("no such file\n  details the user does not need")) == "no such file"
    assert first_line(ValueError("")) == "ValueError"
    assert first_line(RuntimeError("\n  spaced out  \nmore")) == "spaced out"


def test_a_user_error_in_a_nested_action_names_the_whole_command(capsys):
    code = cli.main(["data", "build", "--source", "synthetic-faces", "--out", "unused", "--limit", "0"])
    assert code == 2
    assert capsys.readouterr().err == "controlkit data build: error: --limit must be at least 1, not 0\n"
