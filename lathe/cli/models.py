"""``lathe models …``: the registry from the command line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import typer
from rich.table import Table

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


@app.command("promote")
def promote(
    name: str = typer.Argument(..., help="Registered model name."),
    version: str = typer.Option(..., "--version", "-v", help="The version to promote."),
    alias: str = typer.Option("champion", "--alias", "-a", help="The alias to move (the one inference serves)."),
    json_output: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Point an alias at a version; the inference service then swaps to it without downtime."""
    registry = _registry()
    previous = None
    from lathe.errors import AliasNotFoundError

    try:
        previous = registry.resolve(name, alias).version
    except AliasNotFoundError:
        previous = None
    info = registry.set_alias(name, alias, version)
    if json_output:
        print_json({"name": name, "alias": alias, "version": info.version, "previous_version": previous})
        return
    moved = f"v{previous} → v{info.version}" if previous else f"v{info.version}"
    console.print(f"{name}@{alias}: {moved}")


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
