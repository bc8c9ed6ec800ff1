"""The whole loop (`lathe demo --size ci`) on a platform of its own: raw text to a served, monitored model.

The same stages as `make demo` at a smaller size: curation of the documentation corpus,
tokenizer, pre-training, SFT and DPO on SmolLM2, evaluation of both versions, the gate,
the hot swap, a chat, RAG with citations, an agent run and Prometheus. About 12 minutes.
Then every Grafana dashboard is drawn from that Prometheus (`lathe dashboards render`):
every panel must have data, and the serving dashboard must draw in Chromium.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.chromium import Chromium, chromium_binary, png_summary
from tests.support.platform import REPO, platform_env

# The loop runs in the module fixture, counted against the first test: more than the suite-wide 900 s.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(2400)]

# Ports of its own (23xxx), clear of a developer's platform, the other suites and Ray's worker range.
PORTS = {
    "LATHE_MLFLOW_PORT": "23500",
    "LATHE_RAY_PORT": "23380",
    "LATHE_RAY_DASHBOARD_PORT": "23265",
    "LATHE_RAY_CLIENT_PORT": "23001",
    "LATHE_RAY_AGENT_PORT": "23365",
    "LATHE_INFERENCE_PORT": "23100",
    "LATHE_INFERENCE_ENGINE_PORT_BASE": "23200",
    "LATHE_INFERENCE_CANDIDATE_PORT": "23101",
    "LATHE_INFERENCE_CANDIDATE_ENGINE_PORT_BASE": "23220",
    "LATHE_GATEWAY_PORT": "23050",
    "LATHE_GATEWAY_METRICS_PORT": "23059",
    "LATHE_PROMETHEUS_PORT": "23090",
    "LATHE_RAG_PORT": "23300",
    "LATHE_AGENT_PORT": "23400",
}
MODEL = "smollm2-135m-instruct"
STAGES = ["platform", "curate", "finetune data", "tokenizer", "pretrain", "sft", "dpo", "champion eval",
          "candidate eval", "gate", "rollout", "hot swap", "chat", "rag ingest", "rag answer", "agent",
          "monitoring"]  # fmt: skip


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict:
    if not Path("/usr/share/doc/python3.11/html/_sources").is_dir():
        pytest.fail("the demo corpus needs python3.11-doc (make install-system installs it)")
    home = tmp_path_factory.mktemp("demo-home")
    env = platform_env(home, PORTS)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "lathe.cli", "demo", "--size", "ci", "--json"],
            capture_output=True, text=True, env=env, timeout=1800,
        )  # fmt: skip
        assert result.returncode == 0, f"lathe demo failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
        summary = json.loads(result.stdout)
        written = json.loads((home / "demo" / "summary.json").read_text())
        yield {"summary": summary, "written": written, "stderr": result.stderr, "env": env, "home": home}
    finally:
        subprocess.run([sys.executable, "-m", "lathe.cli", "down"], env=env, capture_output=True, timeout=300)


def stage(demo: dict, name: str) -> dict:
    return next(s for s in demo["summary"]["stages"] if s["name"] == name)


def test_every_stage_ran_in_order_and_the_summary_is_written(demo):
    summary = demo["summary"]
    assert summary == demo["written"]
    assert summary["ok"] is True
    assert [s["name"] for s in summary["stages"]] == STAGES
    for s in summary["stages"]:
        assert s["status"] in ("ok", "kept", "skipped"), s
        assert (s["seconds"] > 0 or s["status"] == "skipped") and s["figure"], s
    assert abs(sum(s["seconds"] for s in summary["stages"]) - summary["total_seconds"]) < 30
    # Every stage said what it runs, so a user can run it alone.
    for name in ("curate", "tokenizer", "pretrain", "sft", "dpo", "gate", "chat"):
        assert f"[{STAGES.index(name) + 1}/{len(STAGES)}] {name}:" in demo["stderr"]
        assert stage(demo, name)["command"].startswith(("lathe ", "python -m"))


def test_the_terminal_shows_only_stage_lines_and_each_stage_keeps_its_log(demo):
    # Off a terminal (as here), each stage prints one line as it starts and one as it ends;
    # Ray job lines, weight loading, warnings and progress bars are in the stage's log.
    for line in demo["stderr"].splitlines():
        assert re.match(r"([✔■–] )?\[\d+/17\] ", line), f"not a stage line on the terminal: {line!r}"
    for s in demo["summary"]["stages"]:
        log = Path(s["log"])
        assert log.is_file() and log.name == f"{s['name'].replace(' ', '-')}.log", s
        assert log.parent.resolve() == (demo["home"] / "logs" / "demo").resolve(), s
    pretrain = Path(stage(demo, "pretrain")["log"]).read_text()
    assert (
        pretrain.startswith("$ lathe pipeline run pipelines/demo.yaml --from pretrain")
        and len(pretrain.splitlines()) > 1
    )


def test_curation_kept_a_clean_subset(demo):
    curate = stage(demo, "curate")["data"]
    assert 0 < curate["documents_kept"] < curate["documents_in"]
    assert curate["pii_redacted"] > 0
    assert sum(curate["dropped_by_stage"].values()) == curate["documents_in"] - curate["documents_kept"]


def test_training_stages_lower_the_loss_and_link_their_mlflow_runs(demo):
    mlflow = demo["env"]["LATHE_MLFLOW_PORT"]
    pretrain = stage(demo, "pretrain")
    curve = pretrain["data"]["loss_curve"]
    assert len(curve) >= 3 and curve[-1] < curve[0]
    for name in ("curate", "tokenizer", "pretrain", "sft", "dpo", "champion eval", "candidate eval", "gate"):
        assert f"127.0.0.1:{mlflow}/#/experiments/" in (stage(demo, name)["run_url"] or ""), name
    assert int(stage(demo, "dpo")["data"]["model_version"]) == int(stage(demo, "sft")["data"]["model_version"]) + 1


def _promoted(demo: dict) -> bool:
    """The gate passed the candidate and its rollout promoted it."""
    return stage(demo, "gate")["data"]["decision"] == "canary" and stage(demo, "rollout")["data"]["state"] == "promoted"


def test_the_gate_decides_the_rollout_releases_and_serving_follows(demo):
    gate = stage(demo, "gate")["data"]
    assert gate["decision"] in ("canary", "refused")
    assert gate["candidate_value"] is not None and gate["champion_value"] is not None
    assert gate["version"] == gate["champion_version"]  # the gate alone moves no alias
    served = stage(demo, "chat")["data"]["version"]
    if _promoted(demo):
        assert stage(demo, "hot swap")["data"]["serving"] == gate["candidate_version"] == served
    else:
        assert stage(demo, "hot swap")["status"] == "skipped"
        assert served == gate["champion_version"]


def test_the_rollout_shifted_live_traffic_step_by_step_and_lost_none(demo):
    from lathe.registry import ModelRegistry

    if stage(demo, "gate")["data"]["decision"] != "canary":
        assert stage(demo, "rollout")["status"] == "skipped"
        return
    rollout = stage(demo, "rollout")["data"]
    gate = stage(demo, "gate")["data"]
    assert rollout["state"] in ("promoted", "rolled_back") and rollout["failures"] == []
    # The candidate was scored on the platform's candidate service, and the rollout used that
    # same service rather than starting a second vLLM for the version.
    port = PORTS["LATHE_INFERENCE_CANDIDATE_PORT"]
    assert stage(demo, "candidate eval")["data"]["endpoint"] == f"http://127.0.0.1:{port}/v1"
    assert f"candidate: already serves v{gate['candidate_version']}" in Path(stage(demo, "rollout")["log"]).read_text()
    # Both versions answered the demo's clients while the rollout ran.
    assert set(rollout["answers"]) == {gate["champion_version"], gate["candidate_version"]}, rollout["answers"]
    registry = ModelRegistry(f"http://127.0.0.1:{demo['env']['LATHE_MLFLOW_PORT']}")
    tags = registry.get_version(MODEL, gate["candidate_version"]).tags
    assert tags["lathe.rollout.state"] == f"candidate:{rollout['state']}"
    assert json.loads(tags[f"lathe.rollout.{rollout['rollout']}.1"])["event"] == "created"
    # The candidate service is gone once the champion serves the release (or the rollout ended).
    status = subprocess.run([sys.executable, "-m", "lathe.cli", "status", "--json"], capture_output=True, text=True,
                            env=demo["env"], timeout=120)  # fmt: skip
    assert "candidate" not in {c["name"] for c in json.loads(status.stdout)["components"]}


def test_fine_tuned_versions_carry_their_lineage_scores_and_gate_decision(demo):
    from mlflow.tracking import MlflowClient

    from lathe.registry import ModelRegistry

    uri = f"http://127.0.0.1:{demo['env']['LATHE_MLFLOW_PORT']}"
    registry = ModelRegistry(uri)
    sft = registry.get_version(MODEL, stage(demo, "sft")["data"]["model_version"])
    dpo = registry.get_version(MODEL, stage(demo, "dpo")["data"]["model_version"])
    champion_before = stage(demo, "gate")["data"]["champion_version"]
    assert sft.tags["lathe.stage"] == "sft" and sft.tags["lathe.base_model"] == f"{MODEL}/{champion_before}"
    assert dpo.tags["lathe.stage"] == "dpo" and dpo.tags["lathe.base_model"] == f"{MODEL}/{sft.version}"
    # Both evaluated versions carry their scores, which is what the gate compares.
    assert dpo.tags["lathe.eval.token_f1"] and registry.get_version(MODEL, champion_before).tags["lathe.eval.token_f1"]
    gate = stage(demo, "gate")["data"]
    run = MlflowClient(uri).get_run(gate["gate_run_id"])
    assert run.data.tags["lathe.gate.decision"] == gate["decision"]


def test_the_gate_judges_on_the_release_policy_and_writes_its_report(demo):
    """Quality, no forgetting, safety and the served model's judgement, each with its verdict."""
    gate = stage(demo, "gate")["data"]
    checks = {c["metric"]: c for c in gate["checks"]}
    assert {"eval_token_f1", "eval_knowledge_accuracy", "eval_safety_jailbreak", "eval_judge_win_rate"} <= set(checks)
    assert all(c["candidate"] is not None for c in checks.values())
    assert checks["eval_knowledge_accuracy"]["champion"] >= 0.9  # the base model answers its own suite
    report = Path(gate["report"])
    assert report.is_file() and "Judge" in report.read_text() and "Safety" in report.read_text()
    assert report.name in stage(demo, "gate")["figure"]


def test_the_gate_refuses_the_version_that_scored_worse(demo, tmp_path):
    """Whatever the loop decided, the losing version cannot take the champion alias back on the
    gate's own policy (by the task score alone, a candidate the policy refused would win)."""
    from lathe.registry import ModelRegistry

    gate = stage(demo, "gate")["data"]
    loser = gate["champion_version"] if _promoted(demo) else gate["candidate_version"]
    registry = ModelRegistry(f"http://127.0.0.1:{demo['env']['LATHE_MLFLOW_PORT']}")
    champion = registry.resolve(MODEL, "champion").version
    # The gate's policy, less the judge (it scored the candidate only; it blocks nothing).
    policy = yaml.safe_load((REPO / "pipelines" / "evaluate" / "policies" / "demo.yaml").read_text())
    policy["metrics"] = [m for m in policy["metrics"] if "judge" not in m["name"]]
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy))
    argv = ["models", "promote", MODEL, "--version", loser, "--if-better-than", "champion",
            "--policy", str(tmp_path / "policy.yaml"), "--json"]  # fmt: skip
    refused = subprocess.run([sys.executable, "-m", "lathe.cli", *argv], capture_output=True, text=True,
                             env=demo["env"], cwd=REPO, timeout=300)  # fmt: skip
    assert refused.returncode == 1, refused.stderr
    assert json.loads(refused.stdout)["decision"] == "refused"
    assert registry.resolve(MODEL, "champion").version == champion


def test_the_served_model_answers_rag_cites_and_the_agent_uses_a_tool(demo):
    chat = stage(demo, "chat")["data"]
    assert chat["answer"].strip() and chat["completion_tokens"] > 0 and chat["ttft_s"] > 0
    rag = stage(demo, "rag ingest")["data"]
    assert rag["chunks"] > 0 and rag["hit_at_5"] >= 0.5
    answer = stage(demo, "rag answer")["data"]
    assert answer["citations"] and all(c["source"] for c in answer["citations"])
    agent = stage(demo, "agent")["data"]
    assert agent["tools"][0] == "calculator" and "391" in agent["answer"]


def test_prometheus_scraped_every_component(demo):
    monitoring = stage(demo, "monitoring")
    if shutil.which("prometheus") is None:
        assert monitoring["status"] == "skipped"
        return
    assert set(monitoring["data"]["targets"]) == {"lathe-inference", "lathe-gateway", "lathe-mlflow", "lathe-rag",
                                                  "lathe-agent", "lathe-ray", "prometheus"}  # fmt: skip
    assert monitoring["data"]["gateway_requests"] > 0


@pytest.fixture(scope="module")
def dashboards(demo, tmp_path_factory) -> dict:
    """`lathe dashboards render` over the loop's last 30 minutes, as a newcomer would run it after the demo."""
    if shutil.which("prometheus") is None:
        pytest.skip("Prometheus is not installed (make install-system): no dashboards to draw")
    out = tmp_path_factory.mktemp("dashboards")
    result = subprocess.run(
        [sys.executable, "-m", "lathe.cli", "dashboards", "render", "--since", "30m", "--out", str(out), "--json",
         "--fail-on-empty"],
        capture_output=True, text=True, env=demo["env"], timeout=300,
    )  # fmt: skip
    assert result.stdout.strip(), f"lathe dashboards render printed no report:\n{result.stderr[-3000:]}"
    return {"result": result, "report": json.loads(result.stdout), "out": out}


# What only a rollout feeds: its own gauges, and inter-token latency by version (streams to
# both versions; the loop's one streamed chat can fall between two scrapes).
ROLLOUT_FED = ("lathe_rollout_", "lathe_gateway_version_itl_seconds")


# What only an engine that speculates, or serves LoRA adapters, exports; the demo's does neither.
SPECULATION_FED = ("vllm:spec_decode_",)
ADAPTER_FED = ("lathe_inference_adapter",)


def _rollout_only(panel: dict) -> bool:
    return all(any(metric in q["expr"] for metric in ROLLOUT_FED) for q in panel["queries"])


def _speculation_only(panel: dict) -> bool:
    return all(any(metric in q["expr"] for metric in SPECULATION_FED) for q in panel["queries"])


def _adapters_only(panel: dict) -> bool:
    return all(any(metric in q["expr"] for metric in ADAPTER_FED) for q in panel["queries"])


def test_every_dashboard_panel_has_data_after_the_loop(demo, dashboards):
    report = dashboards["report"]
    # A gate that kept the champion leaves nothing to roll out: the rollout's own panels may
    # then be empty (the loop accepts either decision). The speculation and adapter panels are
    # empty while no engine speculates or serves an adapter. Every other panel has data.
    rolled_out = stage(demo, "rollout")["status"] != "skipped"
    excused = [
        panel
        for board in report["dashboards"]
        for panel in board["panels"]
        if panel["empty"]
        and ((not rolled_out and _rollout_only(panel)) or _speculation_only(panel) or _adapters_only(panel))
    ]
    empty = [
        f"{board['title']} / {panel['title']}: " + " ; ".join(q["error"] or q["expr"] for q in panel["queries"])
        for board in report["dashboards"]
        for panel in board["panels"]
        if panel["empty"] and panel not in excused
    ]
    listed = "\n".join(empty)
    assert not empty, f"panels with no series after the loop (a wrong query, or a metric never exported):\n{listed}"
    assert dashboards["result"].returncode == (1 if excused else 0), dashboards["result"].stderr
    assert {b["file"] for b in report["dashboards"]} >= {"lathe-overview.json", "lathe-gateway.json",
                                                         "lathe-serving.json", "lathe-rag-agent.json",
                                                         "lathe-pipelines.json"}  # fmt: skip
    assert report["panels_with_data"] == report["panels_total"] - len(excused) > 0


def test_the_serving_dashboard_draws_in_chromium_with_no_console_errors(dashboards, tmp_path):
    if chromium_binary() is None:
        pytest.fail("chromium not found: install Debian's chromium package (make install-system)")
    page = dashboards["out"] / "lathe-serving.html"
    with Chromium() as browser:
        seen = browser.open(page.as_uri(), screenshot=tmp_path / "serving.png", width=1600, height=2000)
    assert seen.errors == []
    assert [u for u in seen.requests if not u.startswith(("file:", "data:"))] == []  # drawn offline
    width, height, colours = png_summary(seen.screenshot)
    assert (width, height) == (1600, 2000) and colours > 20, "the screenshot is blank"
