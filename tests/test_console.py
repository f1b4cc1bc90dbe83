"""Notes for the person at the terminal print once per job: from the main process only."""

from __future__ import annotations

import pytest

from controlkit.console import is_main_process, say


@pytest.fixture
def accelerate_not_set_up(monkeypatch):
    """As in a process that `accelerate launch` started, before it has built its Accelerator."""
    from accelerate.state import PartialState

    monkeypatch.setattr(PartialState, "_shared_state", {})


@pytest.mark.parametrize(("rank", "printed"), [("0", True), ("1", False), (None, True)])
def test_say_prints_on_the_main_process_only(monkeypatch, capsys, accelerate_not_set_up, rank, printed):
    if rank is None:
        monkeypatch.delenv("RANK", raising=False)
    else:
        monkeypatch.setenv("RANK", rank)
    say("using cached latents from /somewhere")
    captured = capsys.readouterr()
    assert is_main_process() is printed and captured.out == ""
    assert captured.err == ("using cached latents from /somewhere\n" if printed else "")


def test_once_accelerate_is_set_up_its_answer_wins(monkeypatch, capsys, accelerate_not_set_up):
    from accelerate.state import PartialState

    monkeypatch.setenv("RANK", "1")  # a lone process that accelerate knows to be the main one
    PartialState(cpu=True)  # its state goes with the fixture's empty one
    say("resumed")
    assert capsys.readouterr().err == "resumed\n"
