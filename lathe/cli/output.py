"""What every command shares: settings, consoles, one-line errors, JSON output."""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any, NoReturn

import typer
from rich.console import Console

from lathe.errors import LatheError
from lathe.settings import LatheSettings, load_settings

console = Console(width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def settings() -> LatheSettings:
    return load_settings()


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def run_guarded(app: typer.Typer, argv: list[str]) -> None:
    """Run the Typer app; a LatheError becomes one line and its exit code."""
    # MLflow prints run links to stdout on every run it ends; Lathe prints its own summary.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    try:
        app(args=argv, standalone_mode=True)
    except LatheError as exc:
        err_console.print(f"[bold red]error:[/] {exc.one_line()}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
