"""The curation report: one HTML page with plots, plus ``summary.json`` for scripts.

Per-stage counts and drop reasons, document length histograms before and after,
duplicate cluster sizes, PII counts by kind and the redactor's precision/recall on
its labelled set, and the timing of each stage.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from pipelines.curation.job import CurationResult


def summary(result: CurationResult, pii_scores: dict) -> dict:
    return {
        "output": str(result.output),
        "documents_in": result.total,
        "documents_kept": result.kept,
        "dropped_by_stage": result.counts_by_stage(),
        "drop_reasons": result.reasons(),
        "pii_redacted": result.pii_counts(),
        "pii_precision_recall": pii_scores,
        "near_duplicate_clusters": sum(result.cluster_histogram.values()),
        "largest_cluster": max(result.cluster_histogram, default=0),
        "flagged_contaminated": result.tally.flagged,
        "near_dedup_memory_estimate_mib": round(result.memory_estimate_bytes / 2**20, 1),
        "timings": [
            {
                "stage": t.name,
                "seconds": round(t.seconds, 2),
                "documents": t.documents,
                "docs_per_s": round(t.docs_per_s),
            }
            for t in result.timings
        ],
        "data_files": result.data_files,
    }


def _figure_png(draw) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.2), dpi=100)
    draw(ax)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def write_report(result: CurationResult, pii_scores: dict, path: Path) -> dict:
    data = summary(result, pii_scores)
    meta = result.meta
    kept = meta[meta["stage"].isna()]

    def lengths(ax):
        bins = 40
        before = meta["words_in"][meta["words_in"] > 0]
        ax.hist(before.clip(upper=before.quantile(0.99) if len(before) else 1), bins=bins, alpha=0.6, label="read")
        if len(kept):
            ax.hist(kept["words_out"].clip(upper=before.quantile(0.99)), bins=bins, alpha=0.6, label="kept")
        ax.set_xlabel("words per document")
        ax.set_ylabel("documents")
        ax.legend()

    def stages(ax):
        counts = data["dropped_by_stage"]
        names = ["kept", *counts]
        values = [result.kept, *counts.values()]
        ax.barh(names, values, color=["#2a9d8f"] + ["#e76f51"] * len(counts))
        ax.set_xlabel("documents")

    def clusters(ax):
        histogram = result.cluster_histogram or {0: 0}
        ax.bar(list(histogram), list(histogram.values()), width=0.8)
        ax.set_xlabel("near-duplicate cluster size")
        ax.set_ylabel("clusters")

    def pii(ax):
        counts = data["pii_redacted"]
        ax.bar(list(counts), list(counts.values()), color="#264653")
        ax.tick_params(axis="x", rotation=30)
        ax.set_ylabel("redacted")

    plots = {
        "Documents kept and dropped by stage": _figure_png(stages),
        "Length before and after": _figure_png(lengths),
        "Near-duplicate cluster sizes": _figure_png(clusters),
        "PII redacted by kind": _figure_png(pii),
    }
    rows = "".join(
        f"<tr><td>{html.escape(reason)}</td><td>{count}</td></tr>"
        for reason, count in sorted(data["drop_reasons"].items(), key=lambda kv: -kv[1])
    )
    pii_rows = "".join(
        f"<tr><td>{kind}</td><td>{data['pii_redacted'].get(kind, 0)}</td><td>{s['precision']:.3f}</td>"
        f"<td>{s['recall']:.3f}</td><td>{s['support']}</td></tr>"
        for kind, s in pii_scores.items()
    )
    timing_rows = "".join(
        f"<tr><td>{t['stage']}</td><td>{t['seconds']}</td><td>{t['documents']}</td><td>{t['docs_per_s']}</td></tr>"
        for t in data["timings"]
    )
    images = "".join(
        f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='data:image/png;base64,{png}'>"
        for title, png in plots.items()
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Lathe curation report</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}</style></head><body>
<h1>Curation report</h1>
<p><b>{data["documents_kept"]}</b> of <b>{data["documents_in"]}</b> documents kept;
output in <code>{html.escape(data["output"])}</code>.
Near-dedup memory estimate: {data["near_dedup_memory_estimate_mib"]} MiB.</p>
{images}
<h2>Drop reasons</h2><table><tr><th>stage: reason</th><th>documents</th></tr>{rows}</table>
<h2>PII</h2><p>Counts in this corpus; precision and recall of the redactor on its labelled set.</p>
<table><tr><th>kind</th><th>redacted</th><th>precision</th><th>recall</th><th>labelled</th></tr>{pii_rows}</table>
<h2>Stages</h2><table><tr><th>stage</th><th>seconds</th><th>documents</th><th>docs/s</th></tr>{timing_rows}</table>
</body></html>"""
    path.write_text(page)
    (path.parent / "summary.json").write_text(json.dumps(data, indent=2))
    return data
