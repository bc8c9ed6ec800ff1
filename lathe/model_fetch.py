"""Download the model a vLLM pod serves: the init container of the chart's inference pods.

    python -m lathe.model_fetch --name smollm2-135m-instruct --alias champion --dest /models
    python -m lathe.model_fetch --name smollm2-135m-instruct --version 3 --dest /models

With ``--version`` (what the chart sets when ``models[].version`` is pinned) every pod of a
rollout serves exactly that version; without it the alias is resolved when the pod starts.
The folder ends up at ``DEST/<name>/<version>`` and ``DEST/served`` links to it, so vLLM
is started with ``--model DEST/served`` whatever the version. MLflow is retried with
backoff for a few minutes: a fresh install starts the registry and the servers together.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from lathe.errors import LatheError, RegistryUnavailableError


def fetch(tracking_uri: str, name: str, alias: str, version: str | None, dest: Path) -> Path:
    """Resolve and download the model; return the ``served`` link."""
    from lathe.registry import ModelRegistry

    registry = ModelRegistry(tracking_uri)
    resolved = version or registry.resolve(name, alias).version
    folder = registry.download(name, resolved, dest)
    link = dest / "served"
    tmp = dest / ".served.tmp"
    if tmp.is_symlink():
        tmp.unlink()
    tmp.symlink_to(folder.relative_to(dest))
    os.replace(tmp, link)
    return link


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lathe.model_fetch", description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="registered model name")
    parser.add_argument("--alias", default="champion", help="alias to resolve when no version is pinned")
    parser.add_argument("--version", default="", help="pin a version (the chart's models[].version)")
    parser.add_argument("--dest", type=Path, required=True, help="folder (a volume shared with vLLM)")
    parser.add_argument("--tracking-uri", default="", help="MLflow (default: LATHE_MLFLOW_TRACKING_URI)")
    parser.add_argument("--wait-s", type=float, default=300.0, help="how long to retry an unreachable registry")
    args = parser.parse_args(argv)
    if not args.tracking_uri:
        from lathe.settings import MlflowSettings

        args.tracking_uri = MlflowSettings().tracking_uri or ""
    if not args.tracking_uri:
        parser.error("--tracking-uri or LATHE_MLFLOW_TRACKING_URI is required")
    deadline = time.monotonic() + args.wait_s
    delay = 2.0
    while True:
        try:
            link = fetch(args.tracking_uri, args.name, args.alias, args.version or None, args.dest)
        except RegistryUnavailableError as exc:
            if time.monotonic() + delay > deadline:
                print(f"model_fetch: {exc.one_line()}", file=sys.stderr)
                return 1
            time.sleep(delay)
            delay = min(delay * 2, 30.0)
            continue
        except LatheError as exc:
            print(f"model_fetch: {exc.one_line()}", file=sys.stderr)
            return 2
        print(f"model_fetch: {args.name} -> {link.resolve()}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
