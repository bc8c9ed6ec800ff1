"""The evaluation harness, the promotion gate and lineage, against a real MLflow (SQLite store).

The task score goes through a real HTTP server speaking the OpenAI API (a few lines of
Starlette below, with answers fixed per question), so the harness is exercised through
the official SDK exactly as it talks to the gateway or vLLM; no test needs the platform.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lathe.errors import ConfigError, InvalidRequestError, PlatformError
from lathe.registry import parse_model_ref, parse_model_uri
from pipelines.evaluate.config import EvaluateRecipe, preflight
from pipelines.evaluate.gate import decide, promote_if_better, read_metric
from pipelines.evaluate.metrics import exact_match, normalize_answer, perplexity, token_f1
from pipelines.stagekit.recipes import load_recipe

CHARS = "abcdefghijklmnopqrstuvwxyz .,"


# -- answer metrics ---------------------------------------------------------------------
def test_normalize_answer_is_squads():
    assert normalize_answer("  The Cat, sat on   a MAT! ") == "cat sat on mat"
    assert normalize_answer("an apple's core") == "apples core"
    assert normalize_answer("theory") == "theory"  # an article only as a whole word


def test_exact_match_after_normalisation():
    assert exact_match("The cat.", "cat") == 1.0
    assert exact_match("a cat", "the dog") == 0.0
    assert exact_match("Paris", ["London", "paris!"]) == 1.0


def test_token_f1_on_hand_checked_examples():
    # prediction tokens: cat sat on mat (4); gold: cat on mat (3); shared 3 → P 3/4, R 1.
    assert token_f1("the cat sat on the mat", "cat on the mat") == pytest.approx(2 * 0.75 / 1.75)
    # shared tokens count as a multiset: "a a b" vs "a b b" share one a and one b → P = R = 2/3.
    assert token_f1("x x y", "x y y") == pytest.approx(2 / 3)
    assert token_f1("nothing shared", "entirely different") == 0.0
    assert token_f1("", "") == 1.0
    assert token_f1("", "cat") == 0.0
    assert token_f1("returns a list", ["a tuple", "returns list"]) == 1.0  # the best gold counts


# -- the decision -------------------------------------------------------------------------
def test_decide_higher_is_better_for_scores():
    assert decide(0.6, 0.5, "eval_token_f1").promote
    assert not decide(0.5, 0.5, "eval_token_f1").promote  # a tie keeps the champion
    assert not decide(0.4, 0.5, "eval_token_f1").promote
    assert decide(0.6, 0.5, "eval_exact_match", margin=0.05).promote
    refused = decide(0.6, 0.5, "eval_exact_match", margin=0.2)
    assert not refused.promote and "margin" in refused.reason


def test_decide_lower_is_better_for_perplexity():
    assert decide(10.0, 12.0, "eval_perplexity").promote
    assert not decide(12.0, 10.0, "eval_perplexity").promote
    assert not decide(11.5, 12.0, "eval_perplexity", margin=1.0).promote
    assert decide(10.5, 12.0, "perplexity", margin=1.0).promote
    assert not decide(10.0, 12.0, "eval_perplexity").higher_is_better


def test_decide_without_a_champion_and_with_an_explicit_direction():
    assert decide(0.1, None, "eval_token_f1").promote
    assert decide(3.0, 5.0, "my_custom_metric", higher_is_better=False).promote
    assert not decide(3.0, 5.0, "my_custom_metric").promote
    with pytest.raises(ConfigError, match="margin"):
        decide(0.6, 0.5, "eval_token_f1", margin=-0.1)
    with pytest.raises(InvalidRequestError):
        decide(math.nan, 0.5, "eval_token_f1")


def test_model_references():
    assert parse_model_uri("models:/m@champion").alias == "champion"
    assert parse_model_uri("models:/m/3").version == "3"
    assert parse_model_ref("m").version is None and parse_model_ref("m").alias is None
    assert str(parse_model_ref("models:/m/3")) == "m/3"
    with pytest.raises(InvalidRequestError):
        parse_model_uri("models:/m")  # neither version nor alias
    with pytest.raises(InvalidRequestError):
        parse_model_ref("m/latest")


# -- the recipe ---------------------------------------------------------------------------
@pytest.fixture
def eval_files(tmp_path):
    texts = tmp_path / "heldout.jsonl"
    texts.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["hello world.", "the cat sat on the mat."]))
    questions = tmp_path / "questions.jsonl"
    rows = [
        {"question": "what does len return", "answer": "the number of items"},
        {"question": "what does abs return", "answer": "the absolute value"},
        {"question": "what does sorted return", "answer": ["a new sorted list", "a sorted list"]},
    ]
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return texts, questions


def _recipe(tmp_path, data: dict):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _base_recipe(texts, questions, model="models:/m@champion"):
    return {
        "kind": "evaluate",
        "name": "t",
        "model": model,
        "perplexity": {"texts": str(texts), "max_documents": 10, "seq_len": 64},
        "task": {"questions": str(questions), "max_questions": 10, "max_tokens": 8},
    }


def test_the_shipped_recipe_loads():
    recipe = load_recipe(EvaluateRecipe, "pipelines/recipes/evaluate.yaml")
    assert recipe.model == "models:/smollm2-135m-instruct@champion"
    assert recipe.mlflow.experiment == "lathe-evaluation"
    assert recipe.perplexity.texts == ".lathe/data/sft/heldout.jsonl"
    assert recipe.task.questions == ".lathe/data/sft/eval_questions.jsonl"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"perplexity": {"seq_len": 2}}, "perplexity.seq_len"),
        ({"task": {"temperature": 0.7}}, "task.temperature: unknown key"),
        ({"perplexity": {"texts": "notes.txt"}}, "perplexity.texts"),
        ({"task": {"questions": "q.csv"}}, "task.questions"),
        ({"task": {"max_questions": 0}}, "task.max_questions"),
        ({"task": {"endpoint": {"base_url": "localhost:8000"}}}, "task.endpoint.base_url"),
        ({"model": "models:/m"}, "model"),
        ({"mlflow": {"register_as": "x"}}, "mlflow"),
        ({"perplexity": {"enabled": False}, "task": {"enabled": False}}, "nothing to evaluate"),
    ],
)
def test_a_bad_recipe_names_the_field(tmp_path, eval_files, change, named):
    data = _base_recipe(*eval_files)
    for key, value in change.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and isinstance(data.get(key), dict) else value
    with pytest.raises(ConfigError) as caught:
        load_recipe(EvaluateRecipe, _recipe(tmp_path, data))
    assert named in caught.value.one_line()


def test_preflight_names_a_missing_file_and_a_bad_folder(tmp_path, eval_files):
    texts, questions = eval_files
    data = _base_recipe(tmp_path / "gone.jsonl", questions, model=str(tmp_path))
    recipe = load_recipe(EvaluateRecipe, _recipe(tmp_path, data))
    with pytest.raises(ConfigError, match=r"^perplexity\.texts: no such file"):
        preflight(recipe)
    data = {**_base_recipe(texts, questions, model=str(tmp_path)), "task": {"enabled": False}}
    with pytest.raises(ConfigError, match=r"^model: .*\(no config\.json\)"):
        preflight(load_recipe(EvaluateRecipe, _recipe(tmp_path, data)))
    data = _base_recipe(texts, questions, model=str(tmp_path))
    with pytest.raises(ConfigError, match=r"task\.endpoint\.model"):
        preflight(load_recipe(EvaluateRecipe, _recipe(tmp_path, data)))


# -- perplexity on a real (tiny) model ------------------------------------------------------
def _char_tokenizer():
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{c: i + 3 for i, c in enumerate(CHARS)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def _tiny_llama(seed=0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    return LlamaForCausalLM(config)


@pytest.fixture
def one_thread():
    """A model this small is ~100x slower on two contended OpenMP threads than on one."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_perplexity_is_lower_on_the_text_the_model_learned(one_thread):
    import random

    import torch

    tokenizer = _char_tokenizer()
    model = _tiny_llama()
    learned = "the quick brown fox jumps over the lazy dog. " * 3
    rng = random.Random(0)
    noise = "".join(rng.choice(CHARS) for _ in range(len(learned)))
    before, _ = perplexity(model, tokenizer, [learned], seq_len=64)
    ids = torch.tensor([tokenizer(learned)["input_ids"][:64]])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    for _ in range(120):
        optimizer.zero_grad()
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
    seen = []
    after, tokens = perplexity(model, tokenizer, [learned], seq_len=64, on_document=lambda: seen.append(1))
    on_noise, _ = perplexity(model, tokenizer, [noise], seq_len=64)
    assert math.isfinite(after) and math.isfinite(on_noise)
    assert tokens == len(learned) - math.ceil(len(learned) / 64)  # every window predicts all but its first token
    assert seen == [1]
    assert after < before / 3
    assert after < on_noise / 3
    assert model.training  # the mode it came in with is restored


# -- a real registry ------------------------------------------------------------------------
@pytest.fixture
def model_folder(tmp_path):
    folder = tmp_path / "tiny-model"
    _tiny_llama().save_pretrained(folder)
    _char_tokenizer().save_pretrained(folder)
    return folder


def _scored(registry, folder, f1, alias=None):
    info = registry.register_folder(folder, "m", alias=alias)
    registry.set_version_tag("m", info.version, "lathe.eval.token_f1", str(f1))
    return info.version


def _gate_runs(registry):
    experiment = registry.client.get_experiment_by_name("lathe-gate")
    return registry.client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])


def test_the_gate_promotes_the_better_and_refuses_the_worse(registry, model_folder):
    v1 = _scored(registry, model_folder, 0.40, alias="champion")
    v2 = _scored(registry, model_folder, 0.55)
    result = promote_if_better(registry, "m", v2, alias="champion", metric="eval_token_f1", margin=0.1)
    assert result.outcome == "promoted"
    assert (result.previous_version, result.version) == (v1, v2)
    assert registry.resolve("m", "champion").version == v2

    v3 = _scored(registry, model_folder, 0.50)
    refused = promote_if_better(registry, "m", v3, alias="champion")
    assert refused.outcome == "refused"
    assert refused.decision.candidate_value == 0.50 and refused.decision.champion_value == 0.55
    assert registry.resolve("m", "champion").version == v2  # the alias did not move

    v4 = _scored(registry, model_folder, 0.60)
    within_margin = promote_if_better(registry, "m", v4, margin=0.1)
    assert within_margin.outcome == "refused"
    assert registry.resolve("m", "champion").version == v2

    runs = _gate_runs(registry)
    assert [r.data.tags["lathe.gate.decision"] for r in runs] == ["promoted", "refused", "refused"]
    first = runs[0]
    assert first.data.params["candidate_version"] == v2 and first.data.params["champion_version"] == v1
    assert first.data.params["metric"] == "eval_token_f1" and first.data.params["margin"] == "0.1"
    assert first.data.metrics == {"candidate_value": 0.55, "champion_value": 0.40}
    assert registry.get_version("m", v2).tags["lathe.gate.decision"] == "promoted"
    assert registry.get_version("m", v3).tags["lathe.gate.decision"] == "refused"
    assert registry.get_version("m", v3).tags["lathe.gate.run_id"] == runs[1].info.run_id


def test_the_gate_without_a_holder_and_without_scores(registry, model_folder):
    unscored = registry.register_folder(model_folder, "m").version
    with pytest.raises(InvalidRequestError) as caught:
        promote_if_better(registry, "m", unscored)
    assert "python -m pipelines.evaluate" in caught.value.one_line()
    assert "eval_token_f1" in caught.value.one_line()

    first = _scored(registry, model_folder, 0.2)
    result = promote_if_better(registry, "m", first)  # nobody holds @champion: the candidate wins
    assert result.outcome == "promoted" and result.champion_version is None
    assert registry.resolve("m", "champion").version == first
    again = promote_if_better(registry, "m", first)
    assert again.outcome == "unchanged" and again.version == first
    itself = promote_if_better(registry, "m", first, alias="staging", against="champion")
    assert itself.outcome == "refused" and itself.version is None  # it cannot beat itself
    assert "staging" not in registry.get_version("m", first).aliases


def test_a_score_falls_back_to_the_versions_run_metrics(registry, model_folder):
    import mlflow

    mlflow.set_experiment("training")
    with mlflow.start_run() as run:
        mlflow.log_metric("eval_perplexity", 7.5)
    version = registry.register_folder(model_folder, "m", run_id=run.info.run_id).version
    assert read_metric(registry, "m", version, "eval_perplexity") == 7.5
    registry.set_version_tag("m", version, "lathe.eval.perplexity", "6.25")
    assert read_metric(registry, "m", version, "eval_perplexity") == 6.25  # the evaluation's tag wins
    assert read_metric(registry, "m", version, "eval_token_f1") is None


# -- the harness end to end -------------------------------------------------------------------
ANSWERS = {
    "what does len return": "The number of items.",  # exact
    "what does abs return": "its absolute value",  # P 2/3, R 1 ("its" extra, "the" dropped): F1 0.8
    "what does sorted return": "a tuple",  # nothing shared with either gold
}


@pytest.fixture
def openai_server(chat_server):
    """A real OpenAI-compatible server on loopback that answers each question with ANSWERS."""
    seen = []

    def respond(body: dict) -> tuple[str, dict]:
        seen.append(body)
        return ANSWERS.get(body["messages"][-1]["content"], ""), {"x-lathe-backend-version": "1"}

    yield chat_server(respond), seen


def test_evaluate_scores_logs_and_tags_the_version(registry, model_folder, eval_files, openai_server, tmp_path):
    import mlflow

    from pipelines.evaluate.harness import evaluate

    base_url, seen = openai_server
    version = registry.register_folder(model_folder, "m", alias="champion").version
    data = _base_recipe(*eval_files)
    data["task"]["endpoint"] = {"base_url": base_url, "model": "served-name", "api_key_env": "EVAL_TEST_KEY"}
    path = _recipe(tmp_path, data)
    summary = evaluate(load_recipe(EvaluateRecipe, path), recipe_path=path)

    assert summary["model_version"] == version
    assert summary["exact_match"] == pytest.approx(1 / 3)
    assert summary["token_f1"] == pytest.approx((1 + 0.8 + 0) / 3)
    assert summary["questions"] == 3 and summary["served_versions"] == ["1"]
    assert math.isfinite(summary["perplexity"]) and summary["perplexity"] > 1
    assert summary["perplexity_tokens"] == len("hello world.") - 1 + len("the cat sat on the mat.") - 1
    assert all(body["temperature"] == 0 and body["model"] == "served-name" for body in seen)

    run = mlflow.get_run(summary["mlflow_run_id"])
    assert run.data.tags["lathe.stage"] == "evaluate"
    assert run.data.metrics["eval_token_f1"] == pytest.approx(summary["token_f1"])
    assert run.data.metrics["eval_questions"] == 3
    artifacts = {a.path for a in registry.client.list_artifacts(run.info.run_id, "recipe")}
    assert artifacts == {"recipe/recipe.yaml"}
    local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="eval/questions.json")
    table = json.loads(Path(local).read_text())
    rows = [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]
    assert [r["exact_match"] for r in rows] == [1.0, 0.0, 0.0]
    assert rows[2]["answer"] == "a new sorted list | a sorted list" and rows[2]["prediction"] == "a tuple"

    tags = registry.get_version("m", version).tags
    assert tags["lathe.eval.run_id"] == summary["mlflow_run_id"]
    assert float(tags["lathe.eval.token_f1"]) == pytest.approx(summary["token_f1"], rel=1e-5)
    assert float(tags["lathe.eval.perplexity"]) == pytest.approx(summary["perplexity"], rel=1e-5)
    assert tags["lathe.eval.questions"] == "3"
    assert read_metric(registry, "m", version, "eval_exact_match") == pytest.approx(1 / 3, rel=1e-5)


def test_the_entry_point_checks_runs_and_fails_in_one_line(
    model_folder, eval_files, openai_server, tmp_path, capsys, clean_lathe_env, monkeypatch
):
    from pipelines.evaluate.__main__ import main

    monkeypatch.setenv("LATHE_HOME", str(tmp_path / "home"))
    base_url, _ = openai_server
    data = _base_recipe(*eval_files, model=str(model_folder))
    data["task"]["endpoint"] = {"base_url": base_url, "model": "local"}
    data["mlflow"] = {"enabled": False}
    path = _recipe(tmp_path, data)
    assert main(["--config", str(path), "--check"]) == 0
    assert "is valid" in capsys.readouterr().out

    assert main(["--config", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["model_version"] is None and summary["mlflow_run_id"] is None
    assert summary["exact_match"] == pytest.approx(1 / 3) and summary["documents"] == 2

    assert main(["--config", str(path), "--model", "models:/m"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("evaluate: recipe") and "model" in err[0]


# -- the CLI ----------------------------------------------------------------------------------
def _cli(*args):
    from lathe.cli import app

    return CliRunner().invoke(app, list(args))


def test_cli_promote_if_better_than(registry, model_folder):
    v1 = _scored(registry, model_folder, 0.40, alias="champion")
    v2 = _scored(registry, model_folder, 0.30)
    refused = _cli("models", "promote", "m", "--version", v2, "--if-better-than", "champion", "--json")
    assert refused.exit_code == 1, refused.output
    body = json.loads(refused.stdout)
    assert body == {
        **body,
        "name": "m",
        "alias": "champion",
        "candidate_version": v2,
        "champion_version": v1,
        "metric": "eval_token_f1",
        "candidate_value": 0.30,
        "champion_value": 0.40,
        "margin": 0.0,
        "decision": "refused",
        "previous_version": v1,
        "version": v1,
    }
    assert registry.resolve("m", "champion").version == v1

    v3 = _scored(registry, model_folder, 0.45)
    # --canary rolls out through the gateway: with no platform running it says so and moves nothing
    canary = _cli("models", "promote", "m", "--if-better-than", "champion", "--margin", "0.01", "--canary", "10")
    assert isinstance(canary.exception, PlatformError) and "lathe up" in str(canary.exception), canary.output
    assert registry.resolve("m", "champion").version == v1
    # --no-move: the gate decides and logs; a rollout moves the alias later
    checked = _cli("models", "promote", "m", "--if-better-than", "champion", "--no-move", "--json")
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.stdout)["decision"] == "canary" and json.loads(checked.stdout)["version"] == v1
    assert registry.resolve("m", "champion").version == v1
    # no --version: the latest
    promoted = _cli("models", "promote", "m", "--if-better-than", "champion", "--margin", "0.01")
    assert promoted.exit_code == 0, promoted.output
    assert "promoted" in promoted.stdout and "0.45" in promoted.stdout and "0.4" in promoted.stdout
    assert registry.resolve("m", "champion").version == v3

    plain = _cli("models", "promote", "m", "--version", v1, "--json")
    assert plain.exit_code == 0, plain.output
    assert json.loads(plain.stdout) == {"name": "m", "alias": "champion", "version": v1, "previous_version": v3}
    misused = _cli("models", "promote", "m", "--margin", "0.1")
    assert isinstance(misused.exception, ConfigError)


def test_cli_show_prints_the_lineage_chain(registry, model_folder, tmp_path):
    import mlflow
    import pandas as pd

    base = registry.register_folder(model_folder, "base", tags={"lathe.stage": "pretrain"}).version
    registry.set_version_tag("base", base, "lathe.eval.perplexity", "12.5")
    recipe = tmp_path / "sft.yaml"
    recipe.write_text("kind: sft\n")
    mlflow.set_experiment("lathe-training")
    with mlflow.start_run() as run:
        frame = pd.DataFrame({"text": ["a", "b"]})
        dataset = mlflow.data.from_pandas(frame, source=str(tmp_path / "curated"), name="docs-curated")
        mlflow.log_input(dataset, context="training")
        mlflow.log_artifact(str(recipe), artifact_path="recipe")
        mlflow.log_metric("train_loss", 1.25)
    tags = {"lathe.stage": "sft", "lathe.base_model": f"base/{base}", "lathe.recipe": "sft.yaml"}
    sft = registry.register_folder(model_folder, "sft", alias="champion", tags=tags, run_id=run.info.run_id).version

    result = _cli("models", "show", "sft@champion", "--json")
    assert result.exit_code == 0, result.output
    chain = json.loads(result.stdout)
    assert (chain["name"], chain["version"], chain["aliases"], chain["stage"]) == ("sft", sft, ["champion"], "sft")
    assert chain["run_id"] == run.info.run_id and chain["metrics"] == {"train_loss": 1.25}
    assert chain["recipe"] == f"runs:/{run.info.run_id}/recipe/sft.yaml"
    [ds] = chain["datasets"]
    assert ds["name"] == "docs-curated" and ds["context"] == "training" and ds["digest"] == dataset.digest
    assert ds["source"] == str(tmp_path / "curated")
    assert chain["base"]["name"] == "base" and chain["base"]["version"] == base
    assert chain["base"]["stage"] == "pretrain" and chain["base"]["eval"] == {"perplexity": "12.5"}
    assert chain["base"]["base"] is None

    text = _cli("models", "show", "sft")  # the latest version, as a tree
    assert text.exit_code == 0, text.output
    assert "docs-curated" in text.stdout and "base model" in text.stdout and "perplexity=12.5" in text.stdout
    missing = _cli("models", "show", "sft@nope")
    assert "nope" in str(missing.exception)


def test_lineage_follows_at_most_five_bases(registry, model_folder):
    previous = None
    for _ in range(7):
        tags = {"lathe.base_model": f"chain/{previous}"} if previous else {"lathe.base_model": "HuggingFaceTB/SmolLM2"}
        previous = registry.register_folder(model_folder, "chain", tags=tags).version
    node, depth = registry.lineage("chain", previous), 0
    while node["base"] is not None:
        node, depth = node["base"], depth + 1
    assert depth == 5 and node["version"] == "2" and node["base_ref"] == "chain/1"
    assert registry.lineage("chain", "1")["base"] is None  # a hub id is not a registry version
    assert registry.lineage("chain", "1")["base_ref"] == "HuggingFaceTB/SmolLM2"
    assert registry.lineage("chain", "3", max_depth=0)["base"] is None
