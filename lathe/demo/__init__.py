"""The whole loop on the local platform: raw text to a promoted, served, monitored model.

    lathe demo [--size full|ci] [--json]        (``make demo`` runs it after installing)

Each stage is one ``lathe`` command (or a ``python -m`` data builder) that a user can run
alone; the demo runs them in order as subprocesses with ``--json``, so their progress bars
go to the terminal and their results come back here. It ends with one summary table (stage,
time, key figure, MLflow run) and writes the same summary to ``<home>/demo/summary.json``.
The gate may keep the champion: that is a result, not a failure.
"""
