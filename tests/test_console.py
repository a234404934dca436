"""Progress on stderr: a bar on a terminal, plain lines in a log file."""

from __future__ import annotations

import io

from rich.console import Console

from mmalign.cli.console import LOG_EVERY, RichReporter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_progress_in_a_log_file_is_a_line_per_interval_with_the_time_left() -> None:
    out, clock = io.StringIO(), Clock()
    reporter = RichReporter(console=Console(file=out, force_terminal=False, width=200), clock=clock)
    with reporter.progress("probing clusters", total=1000) as task:
        task.advance(100)
        clock.now += LOG_EVERY / 2
        task.advance(100)  # within the interval: no line
        clock.now += LOG_EVERY / 2
        task.advance(50, loss=1.5)
        clock.now += 30
    lines = out.getvalue().splitlines()
    assert lines == [
        "probing clusters: 250 / 1,000 (25%), 0:01:00 elapsed, about 0:03:00 left, loss 1.5",
        "probing clusters: 250 / 1,000 (25%), done in 0:01:30, loss 1.5",
    ]


def test_progress_without_a_total_ends_with_its_time() -> None:
    out, clock = io.StringIO(), Clock()
    reporter = RichReporter(console=Console(file=out, force_terminal=False, width=200), clock=clock)
    with reporter.progress("clustering the candidates"):
        clock.now += 16.4
    assert out.getvalue() == "clustering the candidates: done in 0:00:16\n"


def test_quiet_writes_no_progress() -> None:
    out = io.StringIO()
    reporter = RichReporter(quiet=True, console=Console(file=out, force_terminal=False))
    with reporter.progress("ranking", total=10) as task:
        task.advance(10)
    assert out.getvalue() == ""
