"""Data curation as a Ray job: normalise, quality-filter, redact PII, deduplicate
(exact and MinHash/LSH), decontaminate, then write Parquet and a report.

    python -m pipelines.curation --config pipelines/recipes/curation.yaml
"""
