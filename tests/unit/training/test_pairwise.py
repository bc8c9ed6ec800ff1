"""Pairwise LLM-as-judge: the protocol's arithmetic with a scripted judge, and the whole judge
step of an evaluation against real OpenAI-compatible servers on loopback."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from lathe.errors import ConfigError, EngineUnavailableError
from lathe.gate_policy import parse_policy
from lathe.promotion import promote_if_better
from pipelines.evaluate.chat import Endpoint
from pipelines.evaluate.config import EvaluateRecipe
from pipelines.evaluate.pairwise import Judge, JudgeError, combine, judge_pair, parse_verdict, summarize
from pipelines.stagekit.recipes import load_recipe


def test_both_orders_must_agree_for_a_win_or_a_loss():
    table = {
        ("A", "B"): ("win", True),  # candidate first and chosen; candidate second and chosen
        ("B", "A"): ("loss", True),
        ("tie", "tie"): ("tie", True),
        ("A", "A"): ("tie", False),  # the judge always picks the first answer
        ("B", "B"): ("tie", False),
        ("A", "tie"): ("tie", False),
        ("tie", "A"): ("tie", False),
    }
    for (forward, backward), expected in table.items():
        assert combine(forward, backward) == expected, (forward, backward)


class ScriptedJudge:
    """Prefers the answer holding GOOD; on a question holding BIAS, always the first answer."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    def verdict(self, question: str, a: str, b: str) -> str:
        self.calls.append((question, a, b))
        if "BIAS" in question:
            return "A"
        if "EVEN" in question:
            return "tie"
        return "A" if "GOOD" in a else "B" if "GOOD" in b else "tie"


def test_a_scripted_judge_gives_exact_figures():
    judge = ScriptedJudge()
    cases = [("q", "GOOD", "meh")] * 6 + [("q", "meh", "GOOD")] * 2 + [("BIAS q", "x", "y"), ("EVEN q", "x", "y")]
    outcomes = [judge_pair(judge, *case) for case in cases]
    assert len(judge.calls) == 20 and judge.calls[1] == ("q", "meh", "GOOD")  # the second order swaps them
    summary = summarize(outcomes, resamples=2000, seed=7)
    assert (summary["wins"], summary["losses"], summary["ties"], summary["prompts"]) == (6, 2, 2, 10)
    assert summary["win_rate"] == pytest.approx((6 + 0.5 * 2) / 10)
    assert summary["position_consistency"] == pytest.approx(9 / 10)  # only the BIAS prompt disagrees
    assert summary["low"] <= summary["win_rate"] <= summary["high"]
    assert summarize(outcomes, resamples=2000, seed=7) == summary  # seeded: the same interval every time


def test_the_interval_decides_what_is_conclusive():
    judge = ScriptedJudge()
    win, loss = judge_pair(judge, "q", "GOOD", "x"), judge_pair(judge, "q", "x", "GOOD")
    sure = summarize([win] * 40)
    assert (sure["low"], sure["high"], sure["conclusive"]) == (1.0, 1.0, True)
    # one win and one loss: resampled means are 0, 0.5 and 1 (¼, ½, ¼): the 95 % interval is [0, 1]
    split = summarize([win, loss], resamples=4000)
    assert (split["low"], split["high"], split["conclusive"], split["win_rate"]) == (0.0, 1.0, False, 0.5)
    narrow = summarize([win] * 30 + [loss] * 10)
    few = summarize([win] * 3 + [loss])
    assert narrow["conclusive"] and not few["conclusive"]  # the same 75 % win rate, on 40 prompts and on 4
    assert few["high"] - few["low"] > narrow["high"] - narrow["low"]
    with pytest.raises(JudgeError):
        summarize([])


def test_verdicts_are_read_or_the_run_fails():
    assert [parse_verdict(t, True) for t in ("A", " b\n", "tie", "Tie.")] == ["A", "B", "tie", "tie"]
    assert parse_verdict("A is longer, but [[B]] ... final: [[C]]", False) == "tie"  # the last one counts
    for text, constrained in (("maybe", True), ("A is better", False), ("", True)):
        with pytest.raises(JudgeError, match="holds no verdict"):
            parse_verdict(text, constrained)


def test_an_unknown_template_and_an_unreachable_judge_are_errors():
    endpoint = Endpoint("http://127.0.0.1:9/v1", "judge", None, "judge.endpoint")
    with pytest.raises(ConfigError, match=r"judge\.template: no prompt 'pairwise-v0' \(known: .*pairwise-v1"):
        Judge(endpoint, "pairwise-v0")
    with pytest.raises(EngineUnavailableError, match=re.escape("nothing answers at http://127.0.0.1:9/v1")):
        Judge(endpoint).verdict("q", "a", "b")


@pytest.mark.parametrize(
    ("judge", "words"),
    [
        ({"enabled": True}, "judge: Value error, prompts is required"),
        ({"enabled": True, "prompts": "p.txt"}, "judge.prompts"),
        ({"endpoint": {"serve": True}}, "the judge is a running server"),
        ({"bootstrap": 10}, "judge.bootstrap"),
    ],
)
def test_a_bad_judge_section_names_the_field(tmp_path, judge, words):
    path = tmp_path / "r.yaml"
    off = {"enabled": False}
    recipe = {"kind": "evaluate", "name": "t", "model": "models:/m/2", "perplexity": off, "task": off, "judge": judge}
    path.write_text(yaml.safe_dump(recipe))
    with pytest.raises(ConfigError) as caught:
        load_recipe(EvaluateRecipe, path)
    assert words in caught.value.one_line()


# -- the judge step of an evaluation, against servers on loopback ------------------------------
def respond_as(judge_says=None):
    """Answers by model name: the candidate says GOOD, the champion does not; the judge picks GOOD."""
    asked = []

    def respond(body: dict) -> tuple[str, dict]:
        asked.append(body)
        user = body["messages"][-1]["content"]
        if body["model"] == "cand":
            return f"GOOD answer to {user}", {"x-lathe-backend-version": "2"}
        if body["model"] == "champ":
            return f"an answer to {user}", {"x-lathe-backend-version": "1"}
        if judge_says is not None:
            return judge_says, {}
        if "Score one assistant answer" in body["messages"][0]["content"]:  # a rubric grade
            assert body["structured_outputs"] == {"choice": ["1", "2", "3", "4", "5"]}
            return ("5" if "[Answer]\nGOOD" in user else "2"), {}
        assert body["structured_outputs"] == {"choice": ["A", "B", "tie"]}
        if "BIAS" in user:
            return "A", {}
        first = user.split("[Assistant B's answer]")[0]
        return ("A" if "GOOD" in first else "B"), {}

    return respond, asked


def judge_recipe(tmp_path, servers: dict[str, str], **judge) -> Path:
    prompts = tmp_path / "prompts.jsonl"
    lines = [{"question": f"what does f{i} do?"} for i in range(10)] + [{"prompt": "BIAS: what does g do?"}]
    lines[0]["context"] = "f0 formats a value."  # one RAG-style prompt, with its source
    prompts.write_text("".join(json.dumps(line) + "\n" for line in lines))
    path = tmp_path / "judge.yaml"
    path.write_text(yaml.safe_dump({
        "kind": "evaluate", "name": "judged", "model": "models:/m/2",
        "perplexity": {"enabled": False},
        "task": {"enabled": False, "endpoint": {"base_url": servers["cand"], "model": "cand"}},
        "judge": {"enabled": True, "prompts": str(prompts), "bootstrap": 1000,
                  "champion": {"base_url": servers["champ"], "model": "champ"},
                  "endpoint": {"base_url": servers["judge"], "model": "judge"}, **judge},
    }))  # fmt: skip
    return path


def test_the_judge_step_logs_tags_and_feeds_a_policy(registry, folder, chat_server, tmp_path):
    import mlflow

    from pipelines.evaluate.harness import evaluate

    registry.register_folder(folder, "m", alias="champion")
    registry.register_folder(folder, "m")
    respond, asked = respond_as()
    url = chat_server(respond)
    path = judge_recipe(tmp_path, {"cand": url, "champ": url, "judge": url})
    summary = evaluate(load_recipe(EvaluateRecipe, path), recipe_path=path)

    judged = summary["judge"]
    assert (judged["wins"], judged["ties"], judged["losses"], judged["prompts"]) == (10, 1, 0, 11)
    assert judged["win_rate"] == pytest.approx(10.5 / 11) and judged["conclusive"]
    assert judged["position_consistency"] == pytest.approx(10 / 11) and judged["champion_version"] == "1"
    assert sum(body["model"] == "judge" for body in asked) == 22  # both orders of every prompt
    tags = registry.get_version("m", "2").tags
    assert float(tags["lathe.eval.judge_win_rate"]) == pytest.approx(10.5 / 11, rel=1e-5)
    assert tags["lathe.eval.judge_conclusive"] == "1"
    run = mlflow.get_run(summary["mlflow_run_id"])
    assert run.data.params["judge_against"] == "champion v1" and run.data.params["judge_template"] == "pairwise-v1"
    local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="eval/pairwise.json")
    table = json.loads(Path(local).read_text())
    rows = [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]
    assert rows[-1]["forward"] == rows[-1]["backward"] == "A" and rows[-1]["result"] == "tie"

    policy = parse_policy({"metrics": [{"name": "judge_win_rate", "at_least": 0.5},
                                       {"name": "judge_conclusive", "at_least": 1}]})  # fmt: skip
    assert promote_if_better(registry, "m", "2", policy=policy).outcome == "promoted"


def test_a_judge_without_verdicts_fails_the_run_and_tags_nothing(registry, folder, chat_server, tmp_path):
    from pipelines.evaluate.harness import evaluate

    registry.register_folder(folder, "m", alias="champion")
    registry.register_folder(folder, "m")
    respond, _ = respond_as(judge_says="Both answers are fine.")
    url = chat_server(respond)
    path = judge_recipe(tmp_path, {"cand": url, "champ": url, "judge": url})
    with pytest.raises(JudgeError, match=re.escape("holds no verdict: 'Both answers are fine.'")):
        evaluate(load_recipe(EvaluateRecipe, path), recipe_path=path)
    assert "lathe.eval.judge_win_rate" not in registry.get_version("m", "2").tags
    registry.set_alias("m", "champion", "2")
    with pytest.raises(ConfigError, match=re.escape("judge.against: m v2 holds @champion itself")):
        evaluate(load_recipe(EvaluateRecipe, path), recipe_path=path)


def test_rubric_grades_both_versions_per_criterion(registry, folder, chat_server, tmp_path):
    from pipelines.evaluate.harness import evaluate
    from pipelines.evaluate.rubric import parse_grade

    assert [parse_grade(t, True) for t in ("4", " 2.", "[[5]]")] == [4, 2, 5]
    with pytest.raises(JudgeError, match="holds no score"):
        parse_grade("pretty good", False)
    registry.register_folder(folder, "m", alias="champion")
    registry.register_folder(folder, "m")
    respond, asked = respond_as()
    url = chat_server(respond)
    criteria = ["helpfulness", "correctness", "groundedness"]
    path = judge_recipe(tmp_path, {"cand": url, "champ": url, "judge": url}, rubric=criteria)
    summary = evaluate(load_recipe(EvaluateRecipe, path), recipe_path=path)
    assert summary["judge"]["rubric"] == {key: {"candidate": 5.0, "champion": 2.0} for key in criteria}
    assert summary["metrics"]["eval_judge_rubric_correctness_delta"] == 3.0
    grounded = [b for b in asked if "groundedness" in b["messages"][0]["content"]]
    assert (
        len(grounded) == 2 and "f0 formats a value." in grounded[0]["messages"][-1]["content"]
    )  # one prompt, two versions
    assert float(registry.get_version("m", "2").tags["lathe.eval.judge_rubric_helpfulness"]) == 5.0

    no_sources = tmp_path / "plain.jsonl"
    no_sources.write_text(json.dumps({"question": "q"}) + "\n")
    recipe = load_recipe(EvaluateRecipe, path, {"judge.prompts": str(no_sources)})
    with pytest.raises(ConfigError, match="groundedness needs prompts with a 'context'"):
        evaluate(recipe, recipe_path=path)
