"""The Typer application and the one place that turns user errors into exit code 2."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Callable, TypeVar

import click
import typer
import typer.rich_utils
from rich.markup import escape

from mmalign.allocator import keep_freed_memory
from mmalign.cli.console import stderr
from mmalign.errors import MMAlignError

app = typer.Typer(
    name="mmalign",
    help="Align two multi-modal knowledge graphs (LoginMEA).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

def _one_line_usage_error(error: click.ClickException) -> None:
    """A wrong option value is bad input like any other: one line on stderr (exit code 2 follows).

    Typer draws usage errors in a box under the command's usage; this prints
    ``error: <problem> (see 'mmalign train --help')`` instead, the form every other error has.
    """
    if type(error).__name__ == "NoArgsIsHelpError":  # the help was already printed
        return
    ctx = getattr(error, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    message = error.format_message().replace("Value error, ", "")  # pydantic's prefix on Typer's checks
    stderr.print(f"[red]error:[/] {escape(message + hint)}", highlight=False, soft_wrap=True)


typer.rich_utils.rich_format_error = _one_line_usage_error

DEFAULT_WORKDIR = Path("mmalign-work")
WORKDIR_OPTION = typer.Option(
    DEFAULT_WORKDIR, "-w", "--workdir", help="Workspace folder.", envvar="MMALIGN_WORKDIR"
)

F = TypeVar("F", bound=Callable[..., object])


def user_errors(func: F) -> F:
    """Wrap a command: MMAlignError -> one red line on stderr and exit code 2, no traceback."""

    @functools.wraps(func)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return func(*args, **kwargs)
        except MMAlignError as error:
            stderr.print(f"[red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            stderr.print("[red]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def configure_compute() -> None:
    """Use all cores for torch unless the user set OMP/MKL threads, and keep freed memory warm.

    Keeping freed memory trades peak memory for speed (docs/benchmarks.md, "Memory and speed of
    the training step"); ``MMALIGN_RETURN_MEMORY=1`` keeps glibc's defaults instead.
    """
    if os.environ.get("MMALIGN_RETURN_MEMORY", "") in ("", "0"):
        keep_freed_memory()
    if "OMP_NUM_THREADS" not in os.environ:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
