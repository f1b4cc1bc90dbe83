"""The shared pieces of fault handling: a graceful stop on SIGTERM, and one writer per folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from controlkit import cli
from controlkit.errors import UserError
from controlkit.locks import FolderLock
from controlkit.stopping import EXIT_STOPPED, Stopped, graceful_stop


def test_the_first_signal_is_a_request_and_the_second_stops_at_once():
    # SIG_DFL, or the handler an earlier test in this process left (ray.init installs one)
    before = signal.getsignal(signal.SIGTERM)
    with graceful_stop() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.signal == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_stopped_command_exits_with_its_own_code_and_one_line(monkeypatch, capsys):
    def stop(args):
        raise Stopped("saved checkpoint-5; run the same command with --resume_from_checkpoint latest")

    monkeypatch.setattr("controlkit.train.command.run", stop)
    assert cli.main(["train", "--pretrained_model_name_or_path=b", "--dataset_name=d"]) == EXIT_STOPPED
    assert capsys.readouterr().err == (
        "controlkit train: stopped: saved checkpoint-5; run the same command with --resume_from_checkpoint "
        "latest\n"
    )


def test_a_folder_held_by_a_live_process_is_refused_naming_it(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        lock = tmp_path / "out" / ".controlkit.lock"
        lock.parent.mkdir()
        lock.write_text(json.dumps({"pid": sleeper.pid, "host": os.uname().nodename, "command": "train x"}))
        with pytest.raises(UserError, match=f"in use by process {sleeper.pid} \\(train x\\)"):
            FolderLock(lock, "out").acquire()
    finally:
        sleeper.kill()
        sleeper.wait()
    with FolderLock(lock, "out"):  # the holder is gone: its lock is taken over
        assert json.loads(lock.read_text())["pid"] == os.getpid()
        with pytest.raises(UserError, match=f"in use by process {os.getpid()}"):
            FolderLock(lock, "out").acquire()
    assert not lock.exists()
