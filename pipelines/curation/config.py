"""The curation recipe: a YAML file, checked in full before the job starts.

An unknown stage or key, or a threshold out of range, stops the job with the dotted
path of the field (``stages.near_dedup.threshold: …``) before any worker starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from lathe.pii import KINDS
from pipelines.curation.dedup import MinHashParams
from pipelines.curation.normalise import DEFAULT_BOILERPLATE
from pipelines.stagekit.recipes import Strict as _Strict
from pipelines.stagekit.recipes import read_yaml, validate


class InputConfig(_Strict):
    path: str
    # auto: by suffix (.jsonl/.json, .parquet) or a folder of text/Markdown/reST/HTML files.
    format: Literal["auto", "jsonl", "parquet", "files"] = "auto"
    text_field: str = "text"
    id_field: str = "id"
    glob: str = "**/*"
    limit: int | None = Field(default=None, ge=1)


class NormaliseConfig(_Strict):
    enabled: bool = True
    unicode_form: Literal["NFKC", "NFC", "NFKD", "NFD"] | None = "NFKC"
    remove_control: bool = True
    collapse_whitespace: bool = True
    remove_boilerplate: bool = True
    boilerplate_patterns: list[str] = Field(default_factory=lambda: list(DEFAULT_BOILERPLATE))


class QualityConfig(_Strict):
    enabled: bool = True
    min_words: int = Field(default=50, ge=0)
    max_words: int = Field(default=100_000, ge=1)
    min_mean_word_length: float = Field(default=3.0, ge=0)
    max_mean_word_length: float = Field(default=10.0, gt=0)
    max_symbol_word_ratio: float = Field(default=0.1, ge=0, le=1)
    max_bullet_line_fraction: float = Field(default=0.9, ge=0, le=1)
    max_ellipsis_line_fraction: float = Field(default=0.3, ge=0, le=1)
    min_alpha_word_fraction: float = Field(default=0.8, ge=0, le=1)
    min_stop_words: int = Field(default=2, ge=0)
    max_duplicate_line_fraction: float = Field(default=0.3, ge=0, le=1)
    max_duplicate_paragraph_fraction: float = Field(default=0.3, ge=0, le=1)
    max_duplicate_line_char_fraction: float = Field(default=0.2, ge=0, le=1)
    max_duplicate_paragraph_char_fraction: float = Field(default=0.2, ge=0, le=1)
    top_ngram_char_fractions: dict[int, float] = Field(default_factory=lambda: {2: 0.20, 3: 0.18, 4: 0.16})
    duplicate_ngram_char_fractions: dict[int, float] = Field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}
    )
    c4_lorem_ipsum: bool = True
    c4_curly_brace: bool = False

    @model_validator(mode="after")
    def _ranges(self) -> QualityConfig:
        for name in ("top_ngram_char_fractions", "duplicate_ngram_char_fractions"):
            for n, limit in getattr(self, name).items():
                if not (1 <= n <= 20 and 0 <= limit <= 1):
                    raise ValueError(f"{name}: n must be 1-20 and the fraction 0-1 (got {n}: {limit})")
        if self.min_words > self.max_words:
            raise ValueError("min_words is larger than max_words")
        if self.min_mean_word_length > self.max_mean_word_length:
            raise ValueError("min_mean_word_length is larger than max_mean_word_length")
        return self


class PiiConfig(_Strict):
    enabled: bool = True
    kinds: list[Literal[KINDS]] = Field(default_factory=lambda: list(KINDS))  # type: ignore[valid-type]


class ExactDedupConfig(_Strict):
    enabled: bool = True


class NearDedupConfig(_Strict):
    enabled: bool = True
    unit: Literal["word", "char"] = "word"
    ngram: int = Field(default=3, ge=1, le=32)
    bands: int = Field(default=32, ge=1, le=512)
    rows: int = Field(default=4, ge=1, le=64)
    # Estimated Jaccard a candidate pair must reach to count as duplicates.
    threshold: float = Field(default=0.5, gt=0, le=1)
    seed: int = 42
    # Refuse to start when the pre-flight estimate is above this many GiB.
    max_memory_gb: float = Field(default=8.0, gt=0)

    def params(self) -> MinHashParams:
        return MinHashParams(
            ngram=self.ngram, bands=self.bands, rows=self.rows, threshold=self.threshold, unit=self.unit, seed=self.seed
        )


class DecontaminateConfig(_Strict):
    enabled: bool = False
    ngram: int = Field(default=13, ge=3, le=50)
    eval_sets: list[str] = Field(default_factory=list)
    mode: Literal["drop", "flag"] = "drop"

    @model_validator(mode="after")
    def _needs_sets(self) -> DecontaminateConfig:
        if self.enabled and not self.eval_sets:
            raise ValueError("eval_sets must name at least one file when decontamination is enabled")
        return self


class StagesConfig(_Strict):
    normalise: NormaliseConfig = Field(default_factory=NormaliseConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    pii: PiiConfig = Field(default_factory=PiiConfig)
    exact_dedup: ExactDedupConfig = Field(default_factory=ExactDedupConfig)
    near_dedup: NearDedupConfig = Field(default_factory=NearDedupConfig)
    decontaminate: DecontaminateConfig = Field(default_factory=DecontaminateConfig)


class MlflowConfig(_Strict):
    enabled: bool = True
    experiment: str = "lathe-curation"
    dataset_name: str = "curated"


class CurationConfig(_Strict):
    name: str = "curation"
    input: InputConfig
    output: str
    stages: StagesConfig = Field(default_factory=StagesConfig)
    batch_size: int = Field(default=256, ge=1, le=100_000)
    shards: int = Field(default=4, ge=1, le=10_000)
    # Where duplicates and contamination are decided: "driver" brings each document's hash
    # and signature to the driver (fastest while they fit its memory); "distributed" decides
    # with shuffles on the Ray workers, and the driver's memory stays flat as the corpus grows.
    decisions: Literal["driver", "distributed"] = "driver"
    # Rows per shuffle partition in distributed decisions (more rows, fewer partitions).
    partition_rows: int = Field(default=500_000, ge=1, le=100_000_000)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)


def load_config(path: str | Path, *, input_path: str | None = None, output: str | None = None) -> CurationConfig:
    data = read_yaml(path)
    if input_path is not None:
        data.setdefault("input", {})["path"] = input_path
    if output is not None:
        data["output"] = output
    return validate(CurationConfig, data, path)
