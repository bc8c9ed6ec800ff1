"""What ``lathe demo`` shows while it runs: one line per stage.

On a terminal, a stage's line is live — a spinner (a bar once the stage reports steps),
its name and its elapsed time — and is replaced, when the stage ends, by its mark, time
and key figure. Elsewhere (CI, a pipe) and with ``--verbose`` (whose stage output would
tear a live line), a stage prints one plain line as it starts and one as it ends.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, Task, TextColumn, TimeElapsedColumn
from rich.table import Column
from rich.text import Text

MARKS = {"ok": "✔", "kept": "■", "skipped": "–", "failed": "✘"}
STYLES = {"ok": "green", "kept": "yellow", "skipped": "dim", "failed": "bold red"}
TAIL_LINES = 20  # of a failed stage's log, printed under its line
TAIL_BYTES = 64 * 1024  # enough for 20 lines; progress bars make logs long


def clock(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}:{rest:02d}"


def shown_path(path: Path) -> str:
    """The path as a user types it from here: relative to the current directory when under it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def log_tail(path: Path, lines: int = TAIL_LINES) -> list[str]:
    """The last lines of a log, each as a terminal last showed it (a progress bar's final state)."""
    if not path.exists():
        return []
    with path.open("rb") as log:
        log.seek(max(0, path.stat().st_size - TAIL_BYTES))
        text = log.read().decode(errors="replace")
    if not text.strip():
        return []
    return [line.rstrip("\r").rsplit("\r", 1)[-1] for line in text.rstrip("\n").split("\n")][-lines:]


class _BarOnceKnown(BarColumn):
    """A bar for a stage that reports its steps; nothing (the spinner says it runs) until then."""

    def render(self, task: Task) -> Text:
        return super().render(task) if task.total is not None else Text()


class StageLines:
    """The stage lines on one console; use as a context manager around the stages."""

    def __init__(self, console: Console, *, live: bool) -> None:
        self.console = console
        self.live = live
        self._progress: Progress | None = None
        self._task: int | None = None
        self._label = ""

    def __enter__(self) -> StageLines:
        if self.live:
            self._progress = Progress(
                SpinnerColumn(),
                # The description takes what the other columns leave, cut short on a narrow terminal.
                TextColumn("{task.description}", table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1)),
                _BarOnceKnown(bar_width=30),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
                expand=True,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def start(self, number: int, total: int, name: str, what: str) -> None:
        self._label = f"[{number}/{total}] {name}"
        if self._progress is None:
            self._print(Text(f"{self._label}: {what}"))
            return
        self._task = self._progress.add_task(f"[bold]{escape(self._label)}[/] [dim]{escape(what)}[/]", total=None)

    def steps(self, done: float, total: float) -> None:
        """The running stage reported its progress: its live line becomes a bar."""
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=done, total=total)

    def end(self, status: str, seconds: float, figure: str) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.remove_task(self._task)
            self._progress.refresh()  # the live line goes before the final line is printed
        self._task = None
        self._print(
            Text.assemble((MARKS[status], STYLES[status]), " ", (self._label, "bold"), f"  {clock(seconds)}  ", figure)
        )

    def failure(self, log: Path) -> None:
        """Where a failed stage's output is, and its last lines."""
        tail = log_tail(log)
        shown = f"  log: {shown_path(log)}" + (f" (last {len(tail)} lines)" if tail else " (empty)")
        self._print(Text(shown, style="bold"))
        for line in tail:
            self._print(Text("  │ ", style="dim") + Text.from_ansi(line, style="dim"))

    def _print(self, line: Text) -> None:
        # While the live line runs, the console prints above it.
        self.console.print(line, soft_wrap=True, highlight=False)
