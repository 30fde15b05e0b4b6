"""How every command reports bad usage or bad input: a message, exit code 2, no traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape

from ingest.errors import PinscopeError

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_BAD_INPUT = 2

_err = Console(stderr=True, highlight=False, soft_wrap=True)

__all__ = ["EXIT_BAD_INPUT", "EXIT_FINDINGS", "EXIT_OK", "PinscopeError", "fail", "user_errors"]


def fail(message: str) -> typer.Exit:
    _err.print(f"[bold red]pinscope:[/] {escape(message)}")  # paths may hold [brackets]
    return typer.Exit(EXIT_BAD_INPUT)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn PinscopeError (and the OS errors users cause) into exit 2 with a clear message."""
    try:
        yield
    except PinscopeError as exc:
        raise fail(str(exc)) from None
    except FileNotFoundError as exc:
        raise fail(f"{exc.filename}: no such file") from None
    except IsADirectoryError as exc:
        raise fail(f"{exc.filename}: is a directory, expected a file") from None
    except PermissionError as exc:
        raise fail(f"{exc.filename}: permission denied") from None
