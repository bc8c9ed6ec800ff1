"""Training text: the recipe section that names it, reading it, and packing it into fixed-length rows.

Text comes from the curation output (a folder of Parquet shards, or a ``data/``
folder inside it), one Parquet file, or JSON Lines. The rows it loads are logged to
MLflow as a dataset with the same name, source and digest the curation run gave them,
so a registered model can name the curated data it was trained on.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pydantic import Field

from lathe.errors import ConfigError
from pipelines.stagekit.recipes import Strict


class TextData(Strict):
    """The ``data`` section of the recipes that train on text (tokenizer, pretrain)."""

    # The curation output folder (Parquet shards), one .parquet file, or a .jsonl file.
    path: str
    text_field: str = "text"
    max_documents: int | None = Field(default=None, ge=1)
    # The MLflow dataset name the curation run gave these rows (lineage).
    dataset_name: str = "curated"


def parquet_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    folder = path / "data" if (path / "data").is_dir() else path
    return sorted(folder.glob("*.parquet"))


def load_texts(path: str | Path, text_field: str, field_name: str, limit: int | None = None):
    """A DataFrame with ``id`` and ``text`` columns (``field_name`` is the recipe field, for errors)."""
    import pandas as pd

    path = Path(path).expanduser()
    if not path.exists():
        raise ConfigError(f"{field_name}: {path} does not exist (run the curation job first: `make demo-data`)")
    if path.suffix in (".jsonl", ".json"):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        frame = pd.DataFrame(rows)
    else:
        files = parquet_files(path)
        if not files:
            raise ConfigError(f"{field_name}: no .parquet files in {path}")
        frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    if text_field not in frame.columns:
        raise ConfigError(f"{field_name}: {path} has no column {text_field!r} (columns: {', '.join(frame.columns)})")
    if "id" not in frame.columns:
        frame["id"] = [str(i) for i in range(len(frame))]
    frame = frame.rename(columns={text_field: "text"})[["id", "text"]]
    if limit:
        frame = frame.head(limit)
    return frame.reset_index(drop=True)


def mlflow_dataset(frame, path: str | Path, name: str):
    """The MLflow dataset for these rows (same digest as curation's for the same Parquet)."""
    import warnings

    import mlflow.data

    path = Path(path).expanduser().resolve()
    source = path / "data" if (path / "data").is_dir() else path
    with warnings.catch_warnings():
        # A local path matches two of MLflow's source types; it picks the right one and warns.
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        return mlflow.data.from_pandas(frame, source=str(source), name=name)


def pack_tokens(token_lists: list[list[int]], eos_id: int, seq_len: int) -> np.ndarray:
    """Concatenate documents (each ended by EOS) and cut into rows of ``seq_len`` tokens."""
    stream: list[int] = []
    for tokens in token_lists:
        stream.extend(tokens)
        stream.append(eos_id)
    rows = len(stream) // seq_len
    return np.asarray(stream[: rows * seq_len], dtype=np.int64).reshape(rows, seq_len)
