"""Pipeline files and their driver: references, refusals before any work, storage on S3.

The object store is moto's S3 server on loopback (the same API pyarrow and Ray Train
speak to AWS or MinIO); the stage the driver runs is the real tokenizer stage, which
needs no Ray. The whole demo pipeline on the local platform runs in tests/e2e.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lathe.errors import ConfigError
from lathe.pipeline_events import parse_event, summarize
from pipelines.flow.spec import load_pipeline
from pipelines.flow.storage import Storage
from tests.support.s3 import s3_server

REPO = Path(__file__).resolve().parents[3]
DEMO = REPO / "pipelines" / "demo.yaml"
TOKENIZER = str(REPO / "pipelines" / "recipes" / "tokenizer.yaml")


def test_the_demo_pipeline_checks_and_its_stages_read_earlier_outputs():
    pipeline = load_pipeline(DEMO)
    pipeline.check_recipes()
    assert pipeline.order[:4] == ["curate", "sft-data", "tokenizer", "pretrain"] and pipeline.order[-1] == "gate"
    assert pipeline.kinds["sft"].name == "sft" and pipeline.kinds["gate"].name == "gate"
    assert pipeline.select("sft", "dpo") == ["sft", "dpo"]
    # sft and dpo read the fine-tuning files; dpo also reads sft's registered version.
    assert pipeline.needed_outputs(["sft", "dpo"]) == {("sft-data", "sft"), ("sft-data", "dpo")}
    assert pipeline.needed_outputs(["dpo"]) == {("sft-data", "dpo"), ("sft", "model")}


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["dpo.base_model=${gate.version}"], "stages[5] dpo: set.base_model: ${gate.version} names a later stage"),
        (["dpo.base_model=${nosuch.model}"], "${nosuch.model} names no stage"),
        (["dpo.base_model=${tokenizer.model}"], "stage tokenizer (tokenizer) has no output 'model'; it has tokenizer"),
        (["curate.input.path=${params.nosuch}"], "set.input.path: no params.nosuch"),
        (["gate.nosuch=1"], "set.nosuch is not an option of gate"),
        (["nosuch.x=1"], "no stage 'nosuch'"),
        (["justakey=1"], "write STAGE.FIELD=VALUE"),
    ],
)
def test_a_bad_reference_or_override_is_one_error_naming_it(sets, message):
    with pytest.raises(ConfigError) as error:
        load_pipeline(DEMO, sets)
    assert message in error.value.message


def test_recipe_fields_are_checked_with_the_pipeline_not_when_their_stage_starts():
    pipeline = load_pipeline(DEMO, ["dpo.training.nosuch=3"])
    with pytest.raises(ConfigError, match=r"stage dpo: .*training.nosuch: unknown key"):
        pipeline.check_recipes()


def test_from_and_to_name_stages_of_the_pipeline():
    pipeline = load_pipeline(DEMO)
    with pytest.raises(ConfigError, match="--from nosuch: the pipeline has no such stage"):
        pipeline.select("nosuch", None)
    with pytest.raises(ConfigError, match="--to curate comes before --from sft"):
        pipeline.select("sft", "curate")


def test_on_a_cluster_the_storage_must_be_shared(tmp_path):
    with pytest.raises(ConfigError, match="storage: this cluster has no shared storage"):
        Storage.resolve(None, None, tmp_path, on_cluster=True)
    with pytest.raises(ConfigError, match="relative folder"):
        Storage.resolve("data/pipelines", None, tmp_path, on_cluster=True)
    assert Storage.resolve(None, "s3://b/p", tmp_path, on_cluster=True).remote
    assert Storage.resolve(None, None, tmp_path, on_cluster=False).root == str(tmp_path.resolve() / "pipelines")


# -- the driver, against S3 ----------------------------------------------------------------
@pytest.fixture(scope="module")
def s3():
    import boto3

    with s3_server("lathe") as env:
        texts = "\n".join(json.dumps({"text": f"def f{i}(x): return x * {i}  # doc {i} " * 8}) for i in range(60))
        boto3.client("s3").put_object(Bucket="lathe", Key="raw/texts.jsonl", Body=texts.encode())
        yield env


def driver(file: Path, *args: str, env: dict, home: Path) -> subprocess.CompletedProcess:
    full = {**{k: v for k, v in os.environ.items() if not k.startswith(("LATHE_", "MLFLOW_"))}, **env}
    full["LATHE_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "pipelines.flow", "run", str(file), *args],
        capture_output=True, text=True, env=full, cwd=REPO, timeout=300,
    )  # fmt: skip


def test_a_pipeline_on_s3_fetches_inputs_uploads_outputs_stops_at_a_failure_and_resumes_from_it(s3, tmp_path):
    spec = {
        "name": "unit",
        "storage": "s3://lathe/pipelines",
        "params": {"texts": "s3://lathe/raw/texts.jsonl"},
        "stages": [
            {"name": "tok", "recipe": TOKENIZER,
             "set": {"data.path": "${params.texts}", "vocab_size": 300, "mlflow.enabled": False, "name": "a"}},
            # A tokenizer folder is not training text: this stage fails when it reads it.
            {"name": "tok2", "recipe": TOKENIZER,
             "set": {"data.path": "${tok.tokenizer}", "vocab_size": 320, "mlflow.enabled": False, "name": "b"}},
        ],
    }  # fmt: skip
    file = tmp_path / "unit.yaml"
    file.write_text(yaml.safe_dump(spec))
    first = driver(file, "--run-id", "r1", env=s3, home=tmp_path / "home")
    assert first.returncode == 1, first.stderr[-2000:]
    summary = summarize(first.stdout.splitlines())
    assert summary["status"] == "failed" and [(s["name"], s["status"]) for s in summary["stages"]] == [
        ("tok", "done"), ("tok2", "failed"),
    ]  # fmt: skip
    # The stage's own one-line error travels up, with where its log is.
    assert summary["stages"][1]["error"].startswith("exited 2: tokenizer: data.path: no .parquet files in")
    assert summary["error"].startswith("tok2: exited 2: tokenizer: data.path:")
    assert Path(summary["stages"][1]["log"]).name == "tok2.log"

    storage = Storage("s3://lathe/pipelines")
    state = json.loads(storage.read_text(storage.join("unit", "r1", "state.json")))
    assert state["stages"]["tok"]["outputs"]["tokenizer"] == "s3://lathe/pipelines/unit/r1/tok"
    assert state["stages"]["tok2"]["status"] == "failed"
    assert "tokenizer.json" in storage.children("s3://lathe/pipelines/unit/r1/tok")
    # tok2 read tok's folder back from S3 (fetched to a local copy before it started).
    fetched = tmp_path / "home" / "pipelines-work" / "unit" / "r1" / "inputs" / "tok2" / "data.path" / "tok"
    assert (fetched / "tokenizer.json").is_file()

    # --from tok2, fixed: the run's recorded outputs stand in for the stages before it.
    again = driver(file, "--from", "tok2", "--set", "tok2.data.path=${params.texts}", env=s3, home=tmp_path / "home")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    events = [e for e in map(parse_event, again.stdout.splitlines()) if e]
    assert events[0]["run"] == "r1" and [s["name"] for s in events[0]["stages"]] == ["tok2"]
    state = json.loads(storage.read_text(storage.join("unit", "r1", "state.json")))
    assert state["stages"]["tok2"]["status"] == "done" and state["stages"]["tok"]["status"] == "done"


def test_refusals_come_before_any_stage_in_one_line(s3, tmp_path):
    spec = {"name": "unit", "storage": "s3://no-such-bucket/p",
            "stages": [{"name": "tok", "recipe": TOKENIZER, "set": {"mlflow.enabled": False}}]}  # fmt: skip
    file = tmp_path / "unit.yaml"
    file.write_text(yaml.safe_dump(spec))
    unreachable = driver(file, env=s3, home=tmp_path)
    assert unreachable.returncode == 2 and unreachable.stdout == ""
    assert unreachable.stderr.startswith("pipeline: storage: s3://no-such-bucket/p is not reachable from here")
    assert len(unreachable.stderr.strip().splitlines()) == 1

    spec["storage"] = str(tmp_path / "store")
    file.write_text(yaml.safe_dump(spec))
    never_ran = driver(file, "--from", "tok", env=s3, home=tmp_path)
    assert never_ran.returncode == 2 and "--from tok: no recorded run of pipeline unit" in never_ran.stderr

    pretrain = str(REPO / "pipelines" / "recipes" / "pretrain-125m-gpu.yaml")
    spec["stages"] = [{"name": "big", "recipe": pretrain}]
    file.write_text(yaml.safe_dump(spec))
    too_big = driver(file, env={**s3, "LATHE_RAY_MAX_GPUS": "4"}, home=tmp_path)
    assert too_big.returncode == 2
    assert "stage big: scaling.num_workers asks for 8 GPUs but this cluster can have at most 4" in too_big.stderr


def test_a_list_of_urls_is_fetched_into_one_folder_the_stage_reads(s3, tmp_path):
    import threading
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from pipelines.flow.driver import Run, fetch_input
    from pipelines.stagekit.settings import PipelineSettings

    served = tmp_path / "www"
    served.mkdir()
    (served / "page.md").write_text("# A page served over HTTP\n")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/page.md"
        run = Run(
            load_pipeline(DEMO), Storage("s3://lathe/pipelines"), "r1", PipelineSettings(LATHE_HOME=str(tmp_path))
        )
        folder = Path(fetch_input(run, "curate", "input.path", ["s3://lathe/raw/texts.jsonl", url]))
        assert sorted(p.name for p in folder.iterdir()) == ["00000-texts.jsonl", "00001-page.md"]
        assert (folder / "00001-page.md").read_text() == "# A page served over HTTP\n"
        assert (folder / "00000-texts.jsonl").read_text().count("\n") == 59
        with pytest.raises(ConfigError, match="cannot be fetched"):
            fetch_input(run, "curate", "other", [url.replace("page.md", "missing.md")])
    finally:
        server.shutdown()
    # A pipeline may give a stage such a list: the recipe check takes it for the folder it becomes.
    load_pipeline(DEMO, [f"params.raw=[{url}, s3://lathe/raw/texts.jsonl]"]).check_recipes()


def test_a_recipes_relative_checkpoint_folder_lands_in_the_shared_storage_on_a_cluster(tmp_path, monkeypatch):
    from pipelines.stagekit.train_runner import storage_path

    monkeypatch.chdir(tmp_path)
    assert storage_path(".lathe/train", "s3://bucket/pipelines") == "s3://bucket/pipelines/lathe/train"
    assert storage_path(".lathe/train", "/app/.lathe/pipelines/") == "/app/.lathe/pipelines/lathe/train"
    assert storage_path("s3://other/ckpt", "s3://bucket/pipelines") == "s3://other/ckpt"
    assert storage_path("/mnt/ckpt", "s3://bucket/pipelines") == "/mnt/ckpt"
    assert storage_path(".lathe/train", None) == str(tmp_path.resolve() / ".lathe" / "train")


def test_a_gate_with_move_false_decides_and_leaves_the_alias_to_a_rollout():
    from pipelines.flow.kinds import KINDS, command

    sets = {"model": "models:/m/3", "against": "champion"}
    moving = command(KINDS["gate"], None, sets, "out")
    assert moving[-2:] == ["--if-better-than", "champion"] and "--no-move" not in moving
    for off in (False, "false"):
        assert command(KINDS["gate"], None, {**sets, "move": off}, "out")[-1] == "--no-move"


def test_a_gate_with_a_policy_passes_the_file_to_promote():
    from pipelines.flow.kinds import KINDS, command

    policy = "pipelines/evaluate/policies/release.yaml"
    argv = command(KINDS["gate"], None, {"model": "models:/m/3", "policy": policy}, "out")
    assert argv[argv.index("--policy") + 1] == policy and "--metric" not in argv
