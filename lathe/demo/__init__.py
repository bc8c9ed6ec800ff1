"""The whole loop on the local platform: raw text to a promoted, served, monitored model.

    lathe demo [--size full|ci] [--json] [--verbose]        (``make demo`` runs it after installing)

Each stage is one ``lathe`` command (or a ``python -m`` data builder) that a user can run
alone; the demo runs them in order as subprocesses with ``--json`` and reads their results
back. Each stage shows one line (``stage_lines``); what its commands print besides their
results goes to ``<home>/logs/demo/<stage>.log`` (``commands``), or to the terminal as
well with ``--verbose``. It ends with one summary table (stage, time, key figure, MLflow
run) and writes the same summary, with each stage's log, to ``<home>/demo/summary.json``.
The gate may keep the champion: that is a result, not a failure.
"""
