"""deploy/k8s-smoke.sh (`make k8s-smoke`): it parses, and without its tools it stops at once
with one line naming the missing one instead of failing half-way through a cluster setup."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "deploy" / "k8s-smoke.sh"
BASH = shutil.which("bash") or "/bin/bash"


def test_script_parses() -> None:
    subprocess.run([BASH, "-n", str(SCRIPT)], check=True)


def _path_with(tmp_path: Path, tools: list[str]) -> str:
    """A PATH with the shell's basics and fake versions of `tools` only."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("dirname", "head", "base64", "tr", "grep", "mkdir"):
        real = shutil.which(name)
        if real:
            (bin_dir / name).symlink_to(real)
    for tool in tools:
        fake = bin_dir / tool
        fake.write_text("#!/bin/sh\nexit 0\n")
        fake.chmod(0o755)
    return str(bin_dir)


@pytest.mark.parametrize(
    ("present", "missing"),
    [([], "docker"), (["docker"], "kind"), (["docker", "kind"], "kubectl"), (["docker", "kind", "kubectl"], "helm")],
)
def test_missing_tool_is_named(tmp_path: Path, present: list[str], missing: str) -> None:
    env = {**os.environ, "PATH": _path_with(tmp_path, present)}
    result = subprocess.run([BASH, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"'{missing}' not found" in lines[0]


def test_makefile_target_calls_the_script() -> None:
    text = (ROOT / "Makefile").read_text()
    assert "\nk8s-smoke:" in text
    assert "deploy/k8s-smoke.sh" in text.split("\nk8s-smoke:", 1)[1].split("\n\n", 1)[0]
