"""The layering the design promises: a stage never imports another stage, the shared kit
imports no stage, and the core never imports the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
STAGES = ["curation", "tokenizer", "pretrain", "finetune", "evaluate"]


def imported_modules(folder: Path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for path in sorted(folder.rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
        out[str(path.relative_to(REPO))] = names
    return out


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_imports_no_other_stage(stage):
    others = tuple(f"pipelines.{other}" for other in STAGES if other != stage)
    for path, names in imported_modules(REPO / "pipelines" / stage).items():
        sideways = sorted(n for n in names if n.startswith(others))
        assert not sideways, f"{path} imports {sideways}"


def test_the_stage_kit_imports_no_stage():
    stages = tuple(f"pipelines.{stage}" for stage in STAGES)
    for path, names in imported_modules(REPO / "pipelines" / "stagekit").items():
        assert not [n for n in names if n.startswith(stages)], path


def test_no_core_module_imports_the_cli():
    for path, names in imported_modules(REPO / "lathe").items():
        if path.startswith("lathe/cli/"):
            continue
        assert not [n for n in names if n == "lathe.cli" or n.startswith("lathe.cli.")], path
