"""Progress when stderr is not a terminal: plain lines a log file can show, not a silent bar."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

import camloc.commands.common as common


@pytest.fixture
def log_console(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    buf = io.StringIO()
    monkeypatch.setitem(common.__dict__, "console", Console(file=buf, width=200))
    return buf


def test_plain_lines_when_not_a_terminal(log_console: io.StringIO,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "PLAIN_PROGRESS_EVERY", 0.0)
    with common.progress_bar("evaluate") as update:
        for done in (5, 10):
            update(done, 10)
    lines = log_console.getvalue().splitlines()
    assert lines[0].startswith("evaluate: 5/10 (50%), 0:00 elapsed, about 0:00 left")
    assert lines[-1].startswith("evaluate: 10/10 (100%), 0:00 elapsed")
    assert "\x1b[" not in log_console.getvalue()  # no terminal control codes in a log


def test_short_runs_and_failed_runs_stay_quiet(log_console: io.StringIO) -> None:
    with common.progress_bar("evaluate") as update:  # finishes within the interval
        update(10, 10)
    assert log_console.getvalue() == ""
    with pytest.raises(RuntimeError):
        with common.progress_bar("evaluate") as update:
            update(3, 10)
            raise RuntimeError("a failed run prints its error, not a 'done' line")
    assert log_console.getvalue() == ""


def test_clock() -> None:
    assert common._clock(65) == "1:05"
    assert common._clock(3725) == "1:02:05"
