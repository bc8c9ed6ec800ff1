"""Static checks of the container images under deploy/docker and the build context filter.

No container engine runs here, so the Dockerfiles are parsed: the Lathe image is multi-stage
with every base pinned by digest, every final stage runs as a non-root USER with HOME set,
and .dockerignore keeps virtual environments, local state and git history out of the context.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOCKER = ROOT / "deploy" / "docker"
DIGEST = re.compile(r"^\S+@sha256:[0-9a-f]{64}$")


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _final_stage(path: Path) -> list[tuple[str, str]]:
    steps = _instructions(path)
    last = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last:]


@pytest.mark.parametrize("name", ["lathe.Dockerfile", "ray.Dockerfile"])
def test_final_stage_is_non_root_with_home(name: str) -> None:
    stage = _final_stage(DOCKER / name)
    users = [rest for word, rest in stage if word == "USER"]
    assert users, f"{name}: final stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid not in {"0", "root"}, f"{name}: final stage runs as root"
    envs = " ".join(rest for word, rest in stage if word == "ENV")
    assert re.search(r"\bHOME=/\S+", envs), f"{name}: final stage sets no HOME"


def test_lathe_image_is_multi_stage_and_digest_pinned() -> None:
    steps = _instructions(DOCKER / "lathe.Dockerfile")
    bases = [rest.split()[0] for word, rest in steps if word == "FROM"]
    assert len(bases) >= 2, "the Lathe image builds wheels in a builder stage"
    unpinned = [b for b in bases if not DIGEST.match(b)]
    assert not unpinned, f"bases not pinned by digest: {unpinned}"
    final = _final_stage(DOCKER / "lathe.Dockerfile")
    assert any("from=builder" in rest.lower() for _, rest in final), "runtime stage copies no wheels"
    assert ("USER", "10001:10001") in final, "UID must match the chart's security.runAsUser"


@pytest.mark.parametrize(
    "path",
    [".venv", ".venv-vllm", ".venv-checkov", ".lathe", ".git", ".pytest_cache", "lathe/__pycache__"],
)
def test_dockerignore_excludes_local_state(path: str) -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    assert any(
        fnmatch.fnmatch(prefix, pattern.removeprefix("**/")) or fnmatch.fnmatch(prefix, pattern)
        for pattern in patterns
        for prefix in [*prefixes, parts[-1]]
    ), f"{path} is sent to the build context"


def test_dockerignore_keeps_the_sources() -> None:
    text = (ROOT / ".dockerignore").read_text().split()
    for needed in ("lathe", "services", "pipelines", "pyproject.toml", "requirements"):
        assert needed not in text, f"{needed} is needed by the Dockerfiles"
