"""The curation job's pre-flight: a path with no documents, or records without the text
field, stop the job with one line naming the recipe field, before Ray starts."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from lathe.errors import ConfigError
from pipelines.curation.config import CurationConfig
from pipelines.curation.reading import preflight


def config(path, **input_fields) -> CurationConfig:
    return CurationConfig.model_validate({"input": {"path": str(path), **input_fields}, "output": "/tmp/unused-out"})


def test_a_folder_without_documents_is_refused(tmp_path):
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    with pytest.raises(ConfigError, match=r"^input.path: no text, Markdown, reST or HTML files under"):
        preflight(config(tmp_path))


def test_a_jsonl_file_without_records_is_refused(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n  \n")
    with pytest.raises(ConfigError, match=r"^input.path: no JSON Lines records in"):
        preflight(config(corpus))


def test_records_without_the_text_field_are_refused_naming_the_fields(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"id": "a", "body": "words"}) + "\n")
    with pytest.raises(ConfigError, match=r"^input.text_field: .* has no field 'text' \(it has id, body\)"):
        preflight(config(corpus))
    assert preflight(config(corpus, text_field="body")) == "jsonl"


def test_a_parquet_file_without_the_text_column_is_refused(tmp_path):
    corpus = tmp_path / "corpus.parquet"
    pd.DataFrame({"id": ["a"], "content": ["words"]}).to_parquet(corpus)
    with pytest.raises(ConfigError, match=r"^input.text_field: .* has no column 'text' \(it has id, content\)"):
        preflight(config(corpus))
    assert preflight(config(corpus, text_field="content")) == "parquet"
