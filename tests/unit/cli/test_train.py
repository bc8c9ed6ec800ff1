"""`lathe train`: which stage a recipe runs, and how a job's log becomes progress and a result."""

from __future__ import annotations

import json

import pytest

from lathe.cli.train import ENTRY_POINTS, JobView, recipe_kind
from lathe.errors import ConfigError
from lathe.jobs import RESULT_PREFIX, parse_progress, progress_line


def test_every_kind_maps_to_a_pipeline_module_with_a_main():
    import importlib

    for module in set(ENTRY_POINTS.values()):
        assert callable(importlib.import_module(module + ".__main__").main)


def test_a_recipe_without_a_known_kind_is_refused(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("kind: pretrian\nname: x\n")
    with pytest.raises(ConfigError, match="kind must be one of"):
        recipe_kind(path)
    path.write_text("kind: sft\n")
    assert recipe_kind(path) == "sft"


def test_progress_lines_round_trip_through_ray_log_prefixes():
    line = "(RayTrainWorker pid=1) " + progress_line(20, 300, {"loss": 3.25, "tokens_per_s": 8123.4})
    assert parse_progress(line) == {"step": 20, "total": 300, "loss": 3.25, "tokens_per_s": 8123}
    assert parse_progress("Checkpoint successfully created") is None


def test_the_job_view_keeps_the_result_and_the_stage_error(capsys):
    view = JobView("pretrain", quiet=True)
    with view:
        view.line(progress_line(1, 10, {"loss": 9.0}))
        view.line(progress_line(1, 10, {"loss": 9.0}))  # delivered twice: counted once
        view.line("pretrain: recipe r.yaml: training.max_steps: Input should be greater than or equal to 1")
        view.line(RESULT_PREFIX + json.dumps({"stage": "pretrain", "steps": 10}))
    assert view.result == {"stage": "pretrain", "steps": 10}
    assert view.error == "recipe r.yaml: training.max_steps: Input should be greater than or equal to 1"
    assert view.last_step == 1
