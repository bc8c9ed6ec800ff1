"""Reading a corpus: the checks before any worker starts, and the Ray Data source per format.

Formats: a folder of text, Markdown, reST or HTML files (one document each), JSON Lines
(one document per line) and Parquet. Every record leaves as ``{"id", "text", "source",
"reason"}`` (``sources.py``); the pre-flight names the recipe field that is wrong: a path
that holds no documents, or a text field the records do not have.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from lathe.errors import ConfigError
from pipelines.curation.config import CurationConfig
from pipelines.curation.sources import content_id, file_record, jsonl_record

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst", ".text", ".html", ".htm"}


def _detect_format(config: CurationConfig) -> str:
    fmt = config.input.format
    path = Path(config.input.path)
    if fmt != "auto":
        return fmt
    if path.is_dir():
        return "files"
    if path.suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if path.suffix == ".parquet":
        return "parquet"
    raise ConfigError(f"input.path: cannot tell the format of {path}; set input.format", param="input.format")


def preflight(config: CurationConfig) -> str:
    """Everything that can be checked before a worker starts."""
    path = Path(config.input.path)
    if not path.exists():
        raise ConfigError(f"input.path: {path} does not exist", param="input.path")
    fmt = _detect_format(config)
    _check_documents(config, fmt)
    for eval_set in config.stages.decontaminate.eval_sets if config.stages.decontaminate.enabled else []:
        if not Path(eval_set).exists():
            raise ConfigError(f"stages.decontaminate.eval_sets: {eval_set} does not exist")
    out = Path(config.output)
    if out.exists() and any(out.iterdir()) and not (out / "summary.json").exists():
        raise ConfigError(f"output: {out} exists and is not a previous curation output; choose another")
    return fmt


def text_files(config: CurationConfig) -> list[str]:
    """The folder's documents, in path order (the order "the first one seen stays" refers to)."""
    root = Path(config.input.path).resolve()
    files = sorted(str(p) for p in root.glob(config.input.glob) if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    return files[: config.input.limit] if config.input.limit else files


def jsonl_files(config: CurationConfig) -> list[str]:
    path = Path(config.input.path)
    return sorted(str(p) for p in (path.glob("*.jsonl") if path.is_dir() else [path]))


def _check_documents(config: CurationConfig, fmt: str) -> None:
    """A path with no documents, or records without the text field, stop the job here."""
    inp = config.input
    if fmt == "files":
        if not text_files(config):
            raise ConfigError(f"input.path: no text, Markdown, reST or HTML files under {Path(inp.path).resolve()}")
        return
    if fmt == "jsonl":
        files = jsonl_files(config)
        first = next((line for f in files for line in _lines(f) if line.strip()), None)
        if first is None:
            raise ConfigError(f"input.path: no JSON Lines records in {inp.path}", param="input.path")
        try:
            fields = list(json.loads(first))
        except (ValueError, TypeError):
            return  # a bad line is that record's reject, not the job's
        if inp.text_field not in fields:
            raise ConfigError(
                f"input.text_field: the first record of {files[0]} has no field {inp.text_field!r} "
                f"(it has {', '.join(fields[:8]) or 'none'})",
                param="input.text_field",
            )
        return
    import pyarrow.parquet as pq

    path = Path(inp.path)
    files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    if not files:
        raise ConfigError(f"input.path: no Parquet files under {path}", param="input.path")
    names = pq.read_schema(files[0]).names
    if inp.text_field not in names:
        raise ConfigError(
            f"input.text_field: {files[0]} has no column {inp.text_field!r} (it has {', '.join(names[:8])})",
            param="input.text_field",
        )


def _lines(path: str):
    with open(path, encoding="utf-8", errors="replace") as handle:
        yield from handle


def read_dataset(config: CurationConfig, fmt: str):
    import ray

    inp = config.input
    if fmt == "files":
        root = str(Path(inp.path).resolve())
        ds = ray.data.read_binary_files(text_files(config), include_paths=True)  # the pre-flight saw some
        return ds.map(lambda row: file_record(row["path"], row["bytes"], root))
    if fmt == "jsonl":
        ds = ray.data.read_binary_files(jsonl_files(config), include_paths=True)

        def lines(row: dict) -> list[dict]:
            text = row["bytes"].decode("utf-8", errors="replace")
            return [
                jsonl_record(line, n + 1, row["path"], inp.text_field, inp.id_field)
                for n, line in enumerate(text.splitlines())
                if line.strip()
            ]

        ds = ds.flat_map(lines)
        return ds.limit(inp.limit) if inp.limit else ds
    ds = ray.data.read_parquet(inp.path)

    def from_parquet(batch: pd.DataFrame) -> pd.DataFrame:
        texts = batch[inp.text_field].astype(object) if inp.text_field in batch else pd.Series([None] * len(batch))
        ids = batch[inp.id_field].astype(str) if inp.id_field in batch else [content_id(str(t)) for t in texts]
        reasons = [None if isinstance(t, str) and t.strip() else "empty document" for t in texts]
        return pd.DataFrame(
            {
                "id": list(ids),
                "text": [t if isinstance(t, str) else "" for t in texts],
                "source": inp.path,
                "reason": reasons,
            }
        )

    ds = ds.map_batches(from_parquet, batch_format="pandas")
    return ds.limit(inp.limit) if inp.limit else ds


def read_eval_sets(paths: list[str]) -> list[str]:
    texts = []
    for path in paths:
        p = Path(path)
        if p.suffix in (".jsonl", ".json"):
            for line in p.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    texts.append(" ".join(str(v) for v in row.values() if isinstance(v, str)))
        else:
            texts.append(p.read_text())
    return texts
