"""`pinscope probes bpftrace|ftrace`: print the shipped collection script or tracefs recipe."""

from __future__ import annotations

import sys

import typer

from pinscope.errors import user_errors

TARGETS = ("bpftrace", "ftrace")


def register(app: typer.Typer) -> None:
    @app.command("probes")
    def probes(
        target: str = typer.Argument(
            ...,
            help="bpftrace (a bpftrace script) or ftrace (a bash recipe for tracefs / trace-cmd).",
        ),
        kernel: str | None = typer.Option(
            None,
            "--kernel",
            help="Kernel release the probes are for (e.g. 5.10, 6.8). "
            "Default: the recipe picks by `uname -r` when it runs.",
        ),
    ) -> None:
        """Print the shipped collection script (bpftrace) or tracefs recipe (ftrace)."""
        with user_errors():
            from ingest.errors import InputError
            from ingest.probes.recipe import bpftrace_script, ftrace_recipe

            if target not in TARGETS:
                raise InputError(f"probes: unknown target {target!r} (expected bpftrace or ftrace)")
            try:
                text = ftrace_recipe(kernel) if target == "ftrace" else bpftrace_script(kernel)
            except ValueError as exc:
                raise InputError(f"--kernel: {exc}") from None
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
