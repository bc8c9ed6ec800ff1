"""Lathe's pipelines: Ray jobs, one package per stage. They import ``lathe`` and hand
their results over through MLflow."""
