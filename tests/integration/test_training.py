"""Training as Ray jobs on the platform's real Ray head and MLflow server.

Everything goes through `lathe train submit` (the Ray Jobs API), as a user would:
tokenizer, pre-training with DDP, a worker killed mid-run that resumes from its checkpoint
in S3, and a crashed DeepSpeed ZeRO-2 run. SFT and DPO on SmolLM2, evaluation, the gate
and the hot swap that follows run once, in the whole loop (tests/e2e), which checks their
lineage, scores and decisions; DPO's learning on its pairs is a unit test
(tests/unit/training/test_train_loop.py).
"""

from __future__ import annotations

import inspect
import json
import signal
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml
from mlflow.tracking import MlflowClient

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODULES = ["json", "os", "re", "collections", "itertools", "functools", "pathlib", "argparse", "logging", "shutil"]


def stdlib_docs() -> pd.DataFrame:
    """A small real corpus: the docstrings of some standard-library modules and their members."""
    import importlib

    rows = []
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name, member in [(module_name, module), *inspect.getmembers(module)]:
            doc = inspect.getdoc(member) if not name.startswith("_") else None
            if doc and len(doc) > 200:
                rows.append({"id": f"{module_name}.{name}", "text": doc})
    return pd.DataFrame(rows).drop_duplicates("text").reset_index(drop=True)


def submit(platform, recipe: dict, path: Path, *args: str, timeout: float = 900) -> dict:
    path.write_text(yaml.safe_dump(recipe))
    result = platform.lathe("train", "submit", str(path), "--json", *args, timeout=timeout)
    assert result.returncode == 0, f"train submit failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("training")
    (root / "curated" / "data").mkdir(parents=True)
    stdlib_docs().to_parquet(root / "curated" / "data" / "part-00000.parquet")
    return root


@pytest.fixture(scope="module")
def tokenizer_dir(platform, work) -> Path:
    recipe = {
        "kind": "tokenizer",
        "name": "test-bpe",
        "data": {"path": str(work / "curated"), "dataset_name": "stdlib-docs"},
        "vocab_size": 1024,
        "output": str(work / "tokenizer"),
    }
    result = submit(platform, recipe, work / "tokenizer.yaml")
    assert result["status"] == "FINISHED" and result["job_id"]
    run = MlflowClient(platform.mlflow_uri).get_run(result["run_id"])
    assert run.data.tags["lathe.stage"] == "tokenizer"
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["stdlib-docs"]
    return work / "tokenizer"


def pretrain_recipe(work: Path, tokenizer_dir: Path, name: str, **changes) -> dict:
    recipe = {
        "kind": "pretrain",
        "name": name,
        "data": {"path": str(work / "curated"), "dataset_name": "stdlib-docs"},
        "tokenizer": str(tokenizer_dir),
        "model": {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "intermediate_size": 256},
        "scaling": {"num_workers": 2, "cpus_per_worker": 1},
        "training": {"max_steps": 40, "micro_batch_size": 8, "seq_len": 64, "log_every": 5},
        "optimizer": {"learning_rate": 0.003, "warmup_steps": 4},
        "checkpoint": {"every_steps": 20, "storage_path": str(work / f"ckpt-{name}")},
        "mlflow": {"register_as": "lathe-tiny-test"},
    }
    for dotted, value in changes.items():
        node = recipe
        *parents, leaf = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return recipe


def test_pretraining_through_ray_jobs_lowers_the_loss_and_registers_with_lineage(platform, work, tokenizer_dir):
    result = submit(platform, pretrain_recipe(work, tokenizer_dir, "tiny"), work / "pretrain.yaml")
    assert result["steps"] == 40 and result["model_name"] == "lathe-tiny-test"
    client = MlflowClient(platform.mlflow_uri)
    losses = [m.value for m in sorted(client.get_metric_history(result["run_id"], "loss"), key=lambda m: m.step)]
    assert len(losses) >= 5
    assert losses[-1] < losses[0] - 0.5, losses
    for metric in ("learning_rate", "grad_norm", "tokens_per_s", "mfu"):
        assert client.get_metric_history(result["run_id"], metric), metric

    shown = platform.lathe("models", "show", f"lathe-tiny-test/{result['model_version']}", "--json")
    assert shown.returncode == 0, shown.stderr
    lineage = json.loads(shown.stdout)
    assert lineage["stage"] == "pretrain" and lineage["recipe"].endswith("pretrain.yaml")
    assert [d["name"] for d in lineage["datasets"]] == ["stdlib-docs"]

    # The registered folder is a model transformers loads, with its tokenizer.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(result["model_path"])
    AutoModelForCausalLM.from_pretrained(str(folder))
    assert len(AutoTokenizer.from_pretrained(str(folder))) == 1024


def test_a_bad_recipe_fails_before_any_job_naming_the_field(platform, work, tokenizer_dir):
    recipe = pretrain_recipe(work, tokenizer_dir, "bad", training__micro_batch_size=5000)
    path = work / "bad.yaml"
    path.write_text(yaml.safe_dump(recipe))
    result = platform.lathe("train", "submit", str(path), "--json")
    assert result.returncode == 2
    assert "training.micro_batch_size" in result.stderr and "rows per step" in result.stderr
    jobs = json.loads(platform.lathe("train", "list", "--json").stdout)
    assert not any("bad.yaml" in job["entrypoint"] for job in jobs)


def has_checkpoint(storage: str, step: int, shards: tuple[str, ...] = ()) -> bool:
    """Whether a trial under ``storage`` (a folder or an s3:// URI) holds the checkpoint of ``step``,
    with each of ``shards`` in its ``state/`` folder: every worker uploads its own part of a
    checkpoint, so the folder appears with rank 0's files before the other ranks' are in."""
    from pipelines.flow.storage import Storage

    store = Storage(storage)
    name = f"checkpoint-{step:08d}"
    for trial in store.children(store.root):
        if name in store.children(store.join(trial)):
            state = store.join(trial, name, "state")
            if not shards or set(shards) <= set(store.children(state)):
                return True
    return False


def has_registered_checkpoint(storage: str) -> bool:
    """Whether Ray Train has registered a checkpoint of a trial under ``storage``: it writes its
    checkpoint manager's snapshot then, and a restarted worker group resumes only from what the
    snapshot lists (files in storage that it has not registered yet are not resumed from)."""
    from pipelines.flow.storage import Storage

    store = Storage(storage)
    return any(
        "checkpoint_manager_snapshot.json" in store.children(store.join(trial)) for trial in store.children(store.root)
    )


def kill_a_worker_after_checkpoint(
    platform, job_id: str, storage: str, step: int, registered: bool = False, shards: tuple[str, ...] = ()
) -> int:
    """SIGKILL one of the run's Ray Train workers as soon as its checkpoint at ``step`` is in storage
    (and, with ``registered``, once Ray Train has registered a checkpoint to resume from).

    The worker is found first (Ray Train names the worker group's processes in the job log:
    "- (ip=…, pid=27021) world_rank=0, …"), so the kill follows the checkpoint closely and
    the run needs few steps beyond it to be still going.
    """
    import re

    deadline = time.monotonic() + 300
    while True:
        logs = platform.lathe("train", "logs", job_id).stdout
        pids = [int(pid) for pid, rank in re.findall(r"pid=(\d+)\) world_rank=(\d+)", logs) if rank == "1"]
        if pids and psutil.pid_exists(pids[-1]):
            break
        assert time.monotonic() < deadline, "the job log names no live Ray Train worker"
        time.sleep(0.5)
    worker = psutil.Process(pids[-1])
    assert "RayTrainWorker" in " ".join(worker.cmdline()), worker.cmdline()
    while not has_checkpoint(storage, step, shards) or (registered and not has_registered_checkpoint(storage)):
        assert time.monotonic() < deadline, f"no checkpoint at step {step}" + (" registered" if registered else "")
        time.sleep(0.2)
    worker.send_signal(signal.SIGKILL)
    return worker.pid


@pytest.mark.fault
def test_a_killed_worker_resumes_from_the_s3_checkpoint_and_finishes_the_same_steps(platform, work, tokenizer_dir):
    storage = "s3://lathe-checkpoints/resume"  # shared storage, as on a cluster: every worker reads it back
    recipe = pretrain_recipe(
        work,
        tokenizer_dir,
        "resume",
        # Steps long enough (seq_len 256) and enough of them that the kill lands mid-run.
        training__max_steps=120,
        training__seq_len=256,
        checkpoint__every_steps=10,
        checkpoint__max_failures=2,
        checkpoint__storage_path=storage,
    )
    path = work / "resume.yaml"
    path.write_text(yaml.safe_dump(recipe))
    queued = platform.lathe("train", "submit", str(path), "--no-wait", "--json")
    assert queued.returncode == 0, queued.stderr
    job_id = json.loads(queued.stdout)["job_id"]

    # A checkpoint whose files are in storage but which Ray Train has not registered yet is not
    # one a restart resumes from: the kill waits for a registered one too.
    kill_a_worker_after_checkpoint(platform, job_id, storage, 20, registered=True)

    deadline = time.monotonic() + 600
    while True:
        jobs = {j["job_id"]: j for j in json.loads(platform.lathe("train", "list", "--json").stdout)}
        if jobs[job_id]["status"] in ("SUCCEEDED", "FAILED", "STOPPED"):
            break
        assert time.monotonic() < deadline, "the job did not end"
        time.sleep(2)
    logs = platform.lathe("train", "logs", job_id).stdout
    assert jobs[job_id]["status"] == "SUCCEEDED", logs[-3000:]
    assert "resumed from the checkpoint at step" in logs
    result = json.loads(logs.split("LATHE_RESULT ", 1)[1].splitlines()[0])
    assert result["steps"] == 120
    from pipelines.flow.storage import Storage

    assert result["checkpoints"].startswith(storage + "/")
    final = Storage(storage).read_text(f"{result['checkpoints']}/checkpoint-00000120/lathe_checkpoint.json")
    assert json.loads(final) == {"step": 120, "final": True}
    # The exported model is read back from the store's copy into a local folder.
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(result["model_path"])


@pytest.mark.fault
def test_a_crashed_zero2_job_keeps_its_sharded_checkpoints_and_marks_its_run_failed(platform, work, tokenizer_dir):
    """DeepSpeed ZeRO-2 on CPUs: each rank writes its shard of the optimiser state into the
    checkpoint; losing a worker with no restarts left fails the run and keeps them."""
    recipe = pretrain_recipe(
        work,
        tokenizer_dir,
        "crash",
        scaling__strategy="deepspeed",
        scaling__zero_stage=2,
        training__max_steps=160,
        training__seq_len=256,
        checkpoint__every_steps=10,
        checkpoint__max_failures=0,  # no restart: losing a worker ends the run
    )
    path = work / "crash.yaml"
    path.write_text(yaml.safe_dump(recipe))
    queued = platform.lathe("train", "submit", str(path), "--no-wait", "--json")
    assert queued.returncode == 0, queued.stderr
    job_id = json.loads(queued.stdout)["job_id"]
    storage = work / "ckpt-crash"
    shards = tuple(f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt" for rank in (0, 1))
    kill_a_worker_after_checkpoint(platform, job_id, str(storage), 10, shards=shards)

    deadline = time.monotonic() + 300
    while (status := wait_status(platform, job_id)) not in ("SUCCEEDED", "FAILED", "STOPPED"):
        assert time.monotonic() < deadline, "the job did not end"
        time.sleep(2)
    assert status == "FAILED"
    kept = list(storage.glob("*/checkpoint-00000010"))
    assert kept and (kept[0] / "lathe_checkpoint.json").is_file(), "the checkpoint was lost"
    assert (kept[0] / "state" / "zero_pp_rank_0_mp_rank_00_optim_states.pt").is_file()
    assert (kept[0] / "state" / "zero_pp_rank_1_mp_rank_00_optim_states.pt").is_file()
    client = MlflowClient(platform.mlflow_uri)
    experiment = client.get_experiment_by_name("lathe-training")
    runs = client.search_runs([experiment.experiment_id], "attributes.run_name = 'crash'")
    assert runs and runs[0].info.status == "FAILED"
    assert runs[0].data.tags.get("lathe.error")
    losses = client.get_metric_history(runs[0].info.run_id, "loss")
    assert losses and all(m.value == m.value for m in losses)  # ZeRO-2 steps logged finite losses


def wait_status(platform, job_id: str) -> str:
    jobs = {j["job_id"]: j for j in json.loads(platform.lathe("train", "list", "--json").stdout)}
    return jobs[job_id]["status"]
