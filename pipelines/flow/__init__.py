"""Pipelines: stages in order from one file, on the local Ray head or as one RayJob (``pipelines.flow.driver``)."""
