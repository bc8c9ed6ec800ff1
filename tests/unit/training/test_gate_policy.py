"""The gate policy: its checks, its arithmetic, and the gate deciding on it over a real registry."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from lathe.errors import ConfigError, InvalidRequestError
from lathe.gate_policy import judge_policy, load_policy, parse_policy
from lathe.promotion import promote_if_better

SHIPPED = "pipelines/evaluate/policies/release.yaml"


@pytest.mark.parametrize(
    ("metrics", "words"),
    [
        ([{"name": "token_f1"}], "metrics.0: no rule"),
        ([{"name": "token_f1", "min_gain": 0, "max_loss": 0.1}], "contradict"),
        ([{"name": "f1", "min_gain": -0.1}], "metrics.0.min_gain: Input should be greater than or equal to 0"),
        ([{"name": "win", "at_least": 0.6, "at_most": 0.4}], "nothing can pass"),
        ([{"name": "f1", "min_gain": 0, "direction": "up"}], "metrics.0.direction"),
        ([{"name": "f1", "min_gain": 0, "treshold": 1}], "metrics.0.treshold: Extra inputs"),
        (
            [
                {"name": "eval_ppl", "max_loss": 0.1, "direction": "lower"},
                {"name": "ppl", "at_most": 9, "direction": "higher"},
            ],
            "contradictory directions",
        ),
        ([], "metrics: List should have at least 1 item"),
    ],
)
def test_a_bad_policy_is_one_line_naming_the_field(metrics, words):
    with pytest.raises(ConfigError) as caught:
        parse_policy({"metrics": metrics}, source="p.yaml")
    line = caught.value.one_line()
    assert words in line and line.startswith("policy p.yaml: ") and "\n" not in line, line


def test_rules_gain_loss_relative_and_bounds():
    policy = parse_policy(
        {
            "metrics": [
                {"name": "eval_token_f1", "min_gain": 0.01},
                {"name": "eval_perplexity", "max_loss": 0.02, "relative": True},
                {"name": "judge_win_rate", "at_least": 0.5},
                {"name": "safety_refusal_rate", "max_loss": 0, "blocking": False},
            ]
        }
    )
    champion = {"eval_token_f1": 0.40, "eval_perplexity": 10.0, "safety_refusal_rate": 0.9}
    good = {"eval_token_f1": 0.42, "eval_perplexity": 10.19, "judge_win_rate": 0.5, "safety_refusal_rate": 0.8}
    checks = {c.metric: c for c in judge_policy(policy, good, champion)}
    assert [checks[m].passed for m in good] == [True, True, True, False]
    assert not checks["eval_perplexity"].higher_is_better  # from its name
    assert "1.90%" in checks["eval_perplexity"].reason  # 10.19 is 1.9 % worse: within 2 %
    assert checks["safety_refusal_rate"].blocking is False

    worse = {**good, "eval_token_f1": 0.41, "eval_perplexity": 10.21, "judge_win_rate": 0.49}
    failed = {c.metric: c.reason for c in judge_policy(policy, worse, champion) if not c.passed}
    assert "needs better by more than 0.01" in failed["eval_token_f1"]
    assert "worse by 2.10%, more than the 2.00% allowed" in failed["eval_perplexity"]
    assert "below 0.5" in failed["judge_win_rate"]

    edge = parse_policy({"metrics": [{"name": "knowledge", "max_loss": 0.05, "relative": True}]})
    assert judge_policy(edge, {"knowledge": 0.95}, {"knowledge": 1.0})[0].passed  # exactly 5 %: allowed
    assert not judge_policy(edge, {"knowledge": 0.925}, {"knowledge": 1.0})[0].passed

    first = judge_policy(policy, good, None)  # nobody holds the alias: comparisons pass and say why
    assert all(c.passed for c in first if c.metric != "judge_win_rate")
    assert "no champion value" in first[0].reason


def test_the_shipped_policy_loads():
    names = load_policy(SHIPPED).names()
    assert "eval_token_f1" in names and "eval_perplexity" in names


def _version(registry, folder, scores, alias=None):
    info = registry.register_folder(folder, "m", alias=alias)
    for metric, value in scores.items():
        registry.set_version_tag("m", info.version, f"lathe.eval.{metric}", str(value))
    return info.version


POLICY = {
    "metrics": [
        {"name": "eval_token_f1", "min_gain": 0},
        {"name": "eval_exact_match", "min_gain": 0},
        {"name": "eval_perplexity", "max_loss": 0.02, "relative": True},
    ]
}


def test_one_failing_blocking_metric_refuses_though_the_others_improve(registry, folder):
    champion = _version(registry, folder, {"token_f1": 0.40, "exact_match": 0.2, "perplexity": 10.0}, "champion")
    forgetful = _version(registry, folder, {"token_f1": 0.55, "exact_match": 0.3, "perplexity": 12.0})
    result = promote_if_better(registry, "m", forgetful, policy=parse_policy(POLICY))
    assert result.outcome == "refused" and registry.resolve("m", "champion").version == champion
    assert result.decision.metric == "eval_perplexity"
    assert result.decision.reason == "blocking eval_perplexity failed: worse by 20.00%, more than the 2.00% allowed"
    assert [c.passed for c in result.decision.checks] == [True, True, False]
    run = registry.client.get_run(result.run_id)
    assert run.data.metrics["candidate.eval_perplexity"] == 12.0 and run.data.metrics["champion.eval_token_f1"] == 0.40
    assert run.data.params["policy"] == "eval_token_f1, eval_exact_match, eval_perplexity"

    better = _version(registry, folder, {"token_f1": 0.45, "exact_match": 0.25, "perplexity": 10.1})
    promoted = promote_if_better(registry, "m", better, policy=parse_policy(POLICY))
    assert promoted.outcome == "promoted" and registry.resolve("m", "champion").version == better
    assert promoted.decision.reason == "all 3 blocking metrics passed"


def test_a_policy_naming_a_metric_nobody_measured_is_an_error(registry, folder):
    _version(registry, folder, {"token_f1": 0.40}, "champion")
    candidate = _version(registry, folder, {"token_f1": 0.50})
    policy = parse_policy(
        {"metrics": [{"name": "eval_token_f1", "min_gain": 0}, {"name": "judge_win_rate", "at_least": 0.5}]}
    )
    with pytest.raises(InvalidRequestError) as caught:
        promote_if_better(registry, "m", candidate, policy=policy)
    assert "names judge_win_rate, which no evaluation produced for m v2" in caught.value.one_line()
    assert registry.resolve("m", "champion").version == "1"


def test_cli_promote_with_a_policy_prints_every_metric(registry, folder, tmp_path):
    from lathe.cli import app

    _version(registry, folder, {"token_f1": 0.40, "exact_match": 0.2, "perplexity": 10.0}, "champion")
    candidate = _version(registry, folder, {"token_f1": 0.55, "exact_match": 0.3, "perplexity": 12.0})
    path = tmp_path / "policy.yaml"
    path.write_text(json.dumps(POLICY))  # JSON is YAML
    refused = CliRunner().invoke(
        app, ["models", "promote", "m", "--version", candidate, "--policy", str(path), "--json"]
    )
    assert refused.exit_code == 1, refused.output
    body = json.loads(refused.stdout)
    assert body["decision"] == "refused" and body["metric"] == "eval_perplexity"
    assert [(c["metric"], c["passed"]) for c in body["checks"]] == [
        ("eval_token_f1", True), ("eval_exact_match", True), ("eval_perplexity", False)
    ]  # fmt: skip
    shown = CliRunner().invoke(app, ["models", "promote", "m", "--version", candidate, "--policy", str(path)])
    assert shown.exit_code == 1 and "eval_exact_match" in shown.stdout and "worse by 20.00%" in shown.stdout
    mixed = CliRunner().invoke(app, ["models", "promote", "m", "--policy", str(path), "--metric", "eval_token_f1"])
    assert isinstance(mixed.exception, ConfigError) and "--policy replaces --metric" in str(mixed.exception)
    path.write_text("metrics: [{name: f1}]")
    bad = CliRunner().invoke(app, ["models", "promote", "m", "--policy", str(path)])
    assert isinstance(bad.exception, ConfigError) and "metrics.0: no rule" in str(bad.exception)
