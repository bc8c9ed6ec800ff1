"""One stage command as a subprocess: its JSON result comes back, everything else it prints goes to a log.

The command's stderr (Ray job lines, weight loading, warnings, progress bars) is copied
line by line into the stage's log as it arrives — and to ``echo`` as well with
``lathe demo --verbose``. Its stdout is read at the end: the JSON document is the result,
any other line printed there is added to the log.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

# How long to wait, once the command has exited, for the rest of its stderr. A process it
# started and left running (with our pipe as its stderr) would otherwise hold us forever.
DRAIN_S = 5.0


@dataclass(frozen=True)
class CommandOutput:
    exit_code: int
    payload: Any  # its JSON result; {"output": last line} when stdout held no JSON; None when empty


def run_logged(
    argv: list[str],
    log: Path,
    *,
    title: str,
    echo: IO[str] | None = None,
    on_line: Callable[[str], None] | None = None,
) -> CommandOutput:
    """Run ``argv``; append ``$ title`` and its output to ``log``; return its exit code and JSON result."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as sink:
        sink.write(f"$ {title}\n".encode())
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    pump = threading.Thread(target=_copy_lines, args=(process.stderr, log, echo, on_line), daemon=True)
    pump.start()
    stdout = process.stdout.read().decode(errors="replace")
    exit_code = process.wait()
    pump.join(timeout=DRAIN_S)
    payload, rest = split_result(stdout)
    if rest:
        with log.open("ab") as sink:
            sink.write(f"# stdout besides the JSON result:\n{rest}\n".encode())
        if echo is not None:
            echo.write(rest + "\n")
            echo.flush()
    return CommandOutput(exit_code, payload)


def _copy_lines(pipe: IO[bytes], log: Path, echo: IO[str] | None, on_line: Callable[[str], None] | None) -> None:
    with pipe, log.open("ab") as sink:
        for raw in iter(pipe.readline, b""):
            sink.write(raw)
            sink.flush()  # a failing stage's last lines are read back from the file
            text = raw.decode(errors="replace")
            if echo is not None:
                echo.write(text)
                echo.flush()
            if on_line is not None:
                on_line(text)


def split_result(stdout: str) -> tuple[Any, str]:
    """The JSON document a ``--json`` command printed, and whatever else it printed to stdout.

    The document is the last one that starts at the beginning of a line (``json.dumps`` with
    an indent starts it there and indents what is inside it).
    """
    text = stdout.strip()
    if not text:
        return None, ""
    try:
        return json.loads(text), ""
    except json.JSONDecodeError:
        pass
    decoder = json.JSONDecoder()
    starts, offset = [], 0
    for line in text.splitlines(keepends=True):
        if line.startswith(("{", "[")):
            starts.append(offset)
        offset += len(line)
    for start in reversed(starts):
        try:
            payload, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            continue
        return payload, (text[:start] + text[end:]).strip()
    return {"output": text.splitlines()[-1]}, text
