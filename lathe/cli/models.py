"""``lathe models …``: the registry from the command line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import typer
from rich.table import Table

from lathe.cli.gate_view import run_gate
from lathe.cli.output import console, print_json, settings

app = typer.Typer(help="List, register and promote model versions in the MLflow registry.", no_args_is_help=True)


def _registry():
    from lathe.registry import ModelRegistry

    s = settings()
    return ModelRegistry(s.mlflow.uri, timeout_s=s.mlflow.request_timeout_s)


@app.command("list")
def list_models(json_output: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """List registered models with their aliases and latest version."""
    models = _registry().list_models()
    if json_output:
        print_json([{"name": m.name, "aliases": m.aliases, "latest_version": m.latest_version} for m in models])
        return
    table = Table(title="Registered models", title_justify="left")
    for column in ("name", "latest", "aliases"):
        table.add_column(column)
    for m in models:
        aliases = ", ".join(f"@{a} → v{v}" for a, v in sorted(m.aliases.items()))
        table.add_row(m.name, m.latest_version or "-", aliases or "-")
    console.print(table)


@app.command("versions")
def versions(
    name: str = typer.Argument(..., help="Registered model name."),
    json_output: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """List every version of a model, with aliases, run and creation time."""
    found = _registry().list_versions(name)
    if json_output:
        print_json([v.to_dict() for v in found])
        return
    table = Table(title=f"{name} versions", title_justify="left")
    for column in ("version", "aliases", "run", "created"):
        table.add_column(column)
    for v in found:
        created = dt.datetime.fromtimestamp(v.created_at).strftime("%Y-%m-%d %H:%M")
        table.add_row(v.version, ", ".join("@" + a for a in v.aliases) or "-", v.run_id or "-", created)
    console.print(table)


@app.command("register")
def register(
    path: Path = typer.Argument(..., help="A Hugging Face model folder (config.json, weights, tokenizer)."),
    name: str = typer.Option(..., "--name", "-n", help="Registered model name (created if new)."),
    alias: str | None = typer.Option(None, "--alias", "-a", help="Point this alias at the new version."),
    description: str = typer.Option("", "--description", help="Description stored on a new registered model."),
    json_output: bool = typer.Option(False, "--json", help="Print the new version as JSON."),
) -> None:
    """Upload a model folder to MLflow and register it as a new version."""
    from lathe.errors import InvalidRequestError

    if not path.is_dir():
        raise InvalidRequestError(f"{path} is not a folder", param="path")
    with console.status(f"uploading {path} to the registry…"):
        info = _registry().register_folder(path, name, alias=alias, description=description)
    if json_output:
        print_json(info.to_dict())
        return
    aliases = f" (@{', @'.join(info.aliases)})" if info.aliases else ""
    console.print(f"registered [bold]{info.name}[/] version [bold]{info.version}[/]{aliases}")


@app.command("bootstrap")
def bootstrap(
    name: str = typer.Argument(..., help="Registered model name."),
    source: str = typer.Option(
        ..., "--source", "-s", help="s3://…, gs://…, hf://ORG/REPO[@REVISION] (token: HF_TOKEN) or a folder path."
    ),
    alias: str = typer.Option("champion", "--alias", "-a", help="The alias to create when it is missing."),
    json_output: bool = typer.Option(False, "--json", help="Print the version as JSON."),
) -> None:
    """Register a model from its source and point the alias at it, unless the alias exists already."""
    import tempfile

    from lathe.model_bootstrap import ensure_registered

    with tempfile.TemporaryDirectory(prefix="lathe-bootstrap-") as workdir:
        info, registered = ensure_registered(_registry(), name, alias, source, Path(workdir))
    if json_output:
        print_json({**info.to_dict(), "registered": registered})
    elif registered:
        console.print(f"registered [bold]{name}[/] version [bold]{info.version}[/] (@{alias}) from {source}")
    else:
        console.print(f"{name}@{alias} already points at v{info.version}: nothing to do")


@app.command("promote")
def promote(
    name: str = typer.Argument(..., help="Registered model name."),
    version: str | None = typer.Option(None, "--version", "-v", help="The version to promote (default: the latest)."),
    alias: str = typer.Option("champion", "--alias", "-a", help="The alias to move (the one inference serves)."),
    if_better_than: str | None = typer.Option(
        None,
        "--if-better-than",
        help="Move the alias only if the version beats this alias's holder on --metric (exit 1 when refused).",
    ),
    metric: str | None = typer.Option(
        None, "--metric", "-m", help="Metric the gate compares (default eval_token_f1; perplexity: lower wins)."
    ),
    margin: float | None = typer.Option(
        None, "--margin", min=0.0, help="How much better the candidate must be, in the metric's units (default 0)."
    ),
    policy_file: Path | None = typer.Option(
        None,
        "--policy",
        help="A gate policy (YAML: metrics, each with its rule and whether it blocks) instead of "
        "--metric/--margin; implies --if-better-than ALIAS.",
    ),
    canary_pct: float | None = typer.Option(
        None,
        "--canary",
        min=0,
        max=100,
        help="Instead of moving the alias now, roll the version out at the gateway starting at this percent; "
        "the rollout moves the alias once every step passes (see `lathe models rollout`).",
    ),
    move: bool = typer.Option(
        True,
        "--move/--no-move",
        help="With --if-better-than: --no-move decides and logs the gate but leaves the alias "
        "(outcome canary: a rollout, `lathe models rollout`, moves it).",
    ),
    json_output: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Point an alias at a version; the inference service then swaps to it without downtime.

    With --if-better-than the evaluation gate decides: both versions' scores (from
    `python -m pipelines.evaluate`) are compared and the decision is logged to MLflow.
    """
    from lathe.errors import AliasNotFoundError, ConfigError
    from lathe.gate_policy import load_policy

    policy = load_policy(policy_file) if policy_file is not None else None
    if policy is not None and (metric is not None or margin is not None):
        raise ConfigError("--policy replaces --metric and --margin: give one or the other", param="policy")
    if policy is not None and if_better_than is None:
        if_better_than = alias
    if if_better_than is None and (metric is not None or margin is not None or not move):
        raise ConfigError("--metric, --margin and --no-move only apply with --if-better-than", param="metric")
    registry = _registry()
    version = version or registry.latest(name).version
    if if_better_than is not None:
        move = move and not canary_pct
        gate = (alias, if_better_than, metric, margin, move, policy)
        result = run_gate(registry, name, version, gate, json_output)
        if result.outcome == "canary" and canary_pct:
            _canary(name, version, alias, canary_pct, json_output, result.to_dict())
        elif result.outcome == "canary" and json_output:
            print_json(result.to_dict())
        return
    try:
        previous = registry.resolve(name, alias).version
    except AliasNotFoundError:
        previous = None
    registry.get_version(name, version)  # a missing version fails before any rollout
    if canary_pct:
        _canary(name, version, alias, canary_pct, json_output)
        return
    info = registry.set_alias(name, alias, version)
    if json_output:
        print_json({"name": name, "alias": alias, "version": info.version, "previous_version": previous})
        return
    moved = f"v{previous} → v{info.version}" if previous else f"v{info.version}"
    console.print(f"{name}@{alias}: {moved}")


def _canary(name: str, version: str, alias: str, pct: float, json_output: bool, gate: dict | None = None) -> None:
    """A rollout at the gateway that starts at ``pct`` percent and moves ``alias`` when it passes."""
    from lathe.cli import rollouts

    steps = [pct, *(w for w in (25.0, 50.0) if w > pct)]
    spec = {"model": name, "version": version, "alias": alias, "steps": [{"weight": w} for w in steps]}
    if settings().gateway.url is None:
        rollouts._local_candidate(version)
    created = rollouts.start_rollout(spec)
    if json_output:
        print_json({**(gate or {}), "name": name, "alias": alias, "version": created["champion"],
                    "previous_version": created["champion"], "rollout": created})  # fmt: skip
        return
    shares = " → ".join(f"{s['weight']:g}%" for s in created["steps"])
    console.print(f"rollout {created['id']}: {name} v{version}: {shares} → 100% (`lathe models rollouts` follows it)")


@app.command("show")
def show(
    ref: str = typer.Argument(..., help="NAME@ALIAS, NAME/VERSION, or NAME (the latest version)."),
    depth: int = typer.Option(5, "--depth", min=0, max=5, help="How many base models to follow back."),
    json_output: bool = typer.Option(False, "--json", help="Print the lineage as JSON."),
) -> None:
    """Show a version's lineage: its run, training data, recipe, evaluation and base model, back to the start."""
    from lathe.registry import parse_model_ref

    registry = _registry()
    info = registry.locate(parse_model_ref(ref, param="ref"))
    chain = registry.lineage(info.name, info.version, max_depth=depth)
    if json_output:
        print_json(chain)
        return
    console.print(_lineage_tree(chain))


def _lineage_tree(node: dict, tree=None):
    from rich.markup import escape
    from rich.tree import Tree

    aliases = f" [cyan]{' '.join('@' + a for a in node['aliases'])}[/]" if node["aliases"] else ""
    stage = f" ({node['stage']})" if node["stage"] else ""
    label = f"[bold]{escape(node['name'])}[/] v{node['version']}{aliases}{stage}"
    branch = Tree(label) if tree is None else tree.add(label)
    if node["run_id"]:
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(node["metrics"].items())[:8])
        branch.add(f"run {node['run_id']} [{node['run_status'] or 'gone'}]" + (f": {metrics}" if metrics else ""))
    else:
        branch.add("run: none recorded")
    for ds in node["datasets"]:
        context = f" ({ds['context']})" if ds.get("context") else ""
        branch.add(f"data{context}: {escape(ds['name'])} #{ds['digest']} ← {escape(str(ds['source']))}")
    if not node["datasets"]:
        branch.add("data: none recorded")
    branch.add(f"recipe: {escape(node['recipe'])}" if node["recipe"] else "recipe: none recorded")
    if node["eval"]:
        branch.add("eval: " + ", ".join(f"{k}={v}" for k, v in sorted(node["eval"].items())))
    if node["base"] is not None:
        _lineage_tree(node["base"], branch.add("base model"))
    elif node["base_ref"]:
        branch.add(f"base model: {escape(node['base_ref'])} (outside this registry, or past --depth)")
    return branch


@app.command("canary")
def canary(
    name: str = typer.Argument(..., help="The model name clients use."),
    weight: float = typer.Option(..., "--weight", "-w", min=0, max=100, help="Percent of traffic for the version."),
    version: str = typer.Option("2", "--version", "-v", help="The version (as the gateway's routes name it)."),
    json_output: bool = typer.Option(False, "--json", help="Print the new weights as JSON."),
) -> None:
    """Send a share of a model's traffic to one version at the gateway (a canary)."""
    from lathe.cli.keys import admin_call

    result = admin_call("POST", "/admin/canary", {"model": name, "version": version, "weight": weight})
    if json_output:
        print_json(result)
        return
    shares = ", ".join(f"v{v}: {w:g}%" for v, w in sorted(result["weights"].items()))
    console.print(f"{name}: {shares}")


def _register_rollouts() -> None:
    from lathe.cli import rollouts

    rollouts.register(app)


_register_rollouts()
