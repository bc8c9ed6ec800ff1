"""Download the model a vLLM pod serves: the init container of the chart's inference pods.

    python -m lathe.model_fetch --name smollm2-135m-instruct --alias champion --dest /models
    python -m lathe.model_fetch --name smollm2-135m-instruct --version 3 --dest /models
    python -m lathe.model_fetch --name smollm2-135m-instruct --alias champion --dest /models \\
        --source hf://HuggingFaceTB/SmolLM2-135M-Instruct --wait-for-alias --link /served/model

With ``--version`` (what the chart sets when ``models[].version`` or ``models[].canary.version``
is pinned; ``LATHE_INFERENCE_VERSION``, the inference service's own pin, is its default) every
pod of a rollout serves exactly that version; without it the alias is resolved when the pod starts.
The folder ends up at ``DEST/<name>/<version>`` and ``--link`` (default ``DEST/served``)
points at it, so vLLM is started with ``--model LINK`` whatever the version.

A LoRA adapter is fetched the same way, with ``--adapter-of LINK`` naming the served model's
link: an adapter trained on another version than the one behind it is refused in one line
(exit 2) rather than served on weights it does not fit.

``DEST`` is a cache shared by the pods of a model (the chart's model cache claim): a version
lands there once, under a per-model lock, and a pinned version found there is served without
asking MLflow at all. In alias mode an unreachable MLflow falls back to the version the alias
last resolved to, when it is cached. ``--source`` registers the model from where its weights
live when the alias does not exist yet (``lathe.model_bootstrap``). MLflow, and with
``--wait-for-alias`` a missing alias, are waited for with backoff and a log line per try: a
fresh install starts the registry and the servers together.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import sys
import time
from pathlib import Path

from lathe.errors import AliasNotFoundError, LatheError, ModelNotFoundError, RegistryUnavailableError


def _log(message: str) -> None:
    print(f"model_fetch: {message}", file=sys.stderr, flush=True)


def _link(folder: Path, link: Path) -> Path:
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.tmp")
    if tmp.is_symlink():
        tmp.unlink()
    tmp.symlink_to(folder.absolute())
    os.replace(tmp, link)
    return link


def _alias_record(dest: Path, name: str, alias: str) -> Path:
    return dest / name / f".alias-{alias}"


def fetch(
    tracking_uri: str,
    name: str,
    alias: str,
    version: str | None,
    dest: Path,
    *,
    source: str | None = None,
    link: Path | None = None,
) -> Path:
    """Resolve (registering from ``source`` if the alias is missing) and download; return the link."""
    from lathe.registry import ModelRegistry, cached_download

    link = link or dest / "served"
    if version and (cached := cached_download(dest, name, version)) is not None:
        return _link(cached, link)  # MLflow stays off the path of a restart or a new replica
    registry = ModelRegistry(tracking_uri)
    try:
        if source:
            from lathe.model_bootstrap import ensure_registered

            resolved, registered = ensure_registered(registry, name, alias, source, dest)
            if registered:
                _log(f"registered {name} version {resolved.version} as @{alias} from {source}")
        if not version:
            version = registry.resolve(name, alias).version
            record = _alias_record(dest, name, alias)
            record.parent.mkdir(parents=True, exist_ok=True)
            record.write_text(f"{version}\n")
    except RegistryUnavailableError as exc:
        cached = _last_resolved(dest, name, alias) if not version else None
        if cached is None:
            raise
        _log(f"{exc.one_line()}; serving cached {cached.name} of {name}@{alias}, the version it last resolved to")
        return _link(cached, link)
    return _link(registry.download(name, version, dest), link)


def _last_resolved(dest: Path, name: str, alias: str) -> Path | None:
    from lathe.registry import cached_download

    record = _alias_record(dest, name, alias)
    return cached_download(dest, name, record.read_text().strip()) if record.is_file() else None


@contextlib.contextmanager
def _model_lock(dest: Path, name: str):
    """One fetch per model at a time on a shared cache: the others wait, then find the version there."""
    dest.mkdir(parents=True, exist_ok=True)
    with open(dest / f".{name}.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _log(f"another pod is fetching {name} into {dest}; waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _retry(args: argparse.Namespace) -> int:
    waitable: tuple[type[LatheError], ...] = (RegistryUnavailableError,)
    if args.wait_for_alias:
        waitable += (AliasNotFoundError, ModelNotFoundError)
    deadline = time.monotonic() + args.wait_s
    delay, attempt = 2.0, 0
    ref = f"{args.name}/{args.version}" if args.version else f"{args.name}@{args.alias}"
    while True:
        attempt += 1
        try:
            link = fetch(
                args.tracking_uri, args.name, args.alias, args.version or None, args.dest,
                source=args.source or None, link=args.link,
            )  # fmt: skip
        except waitable as exc:
            if time.monotonic() + delay > deadline:
                _log(f"gave up on {ref} after {attempt} tries in {args.wait_s:.0f}s: {exc.one_line()}")
                return 1
            what = "the registry" if isinstance(exc, RegistryUnavailableError) else f"{ref} to be registered"
            _log(f"waiting for {what} (try {attempt}, next in {delay:.0f}s): {exc.one_line()}")
            time.sleep(delay)
            delay = min(delay * 2, 30.0)
            continue
        except LatheError as exc:
            _log(exc.one_line())
            return 2
        if args.adapter_of is not None:
            from lathe.lora import check_adapter, served_label

            try:
                check_adapter(args.name, link, served_label(args.adapter_of))
            except LatheError as exc:
                _log(exc.one_line())
                return 2
        print(f"model_fetch: {ref} -> {link.resolve()}", flush=True)
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lathe.model_fetch", description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="registered model name")
    parser.add_argument("--alias", default="champion", help="alias to resolve when no version is pinned")
    parser.add_argument(
        "--version",
        default=os.environ.get("LATHE_INFERENCE_VERSION", ""),
        help="pin a version (the chart's models[].version or canary.version; default: LATHE_INFERENCE_VERSION)",
    )
    parser.add_argument("--dest", type=Path, required=True, help="the cache folder (a volume shared with vLLM)")
    parser.add_argument("--link", type=Path, default=None, help="where the link to the version goes (DEST/served)")
    parser.add_argument(
        "--source", default="", help="register from here when the alias is missing (see model_bootstrap)"
    )
    parser.add_argument("--adapter-of", type=Path, default=None, help="an adapter: the served model link it must fit")
    parser.add_argument("--wait-for-alias", action="store_true", help="wait for a missing alias instead of failing")
    parser.add_argument("--tracking-uri", default="", help="MLflow (default: LATHE_MLFLOW_TRACKING_URI)")
    parser.add_argument("--wait-s", type=float, default=300.0, help="how long to retry before giving up")
    args = parser.parse_args(argv)
    if not args.tracking_uri:
        from lathe.settings import MlflowSettings

        args.tracking_uri = MlflowSettings().tracking_uri or ""
    if not args.tracking_uri:
        parser.error("--tracking-uri or LATHE_MLFLOW_TRACKING_URI is required")
    with _model_lock(args.dest, args.name):
        return _retry(args)


if __name__ == "__main__":
    sys.exit(main())
