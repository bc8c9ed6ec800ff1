"""A gate decision as one HTML page: what was compared, what each metric said, and the evidence.

    html = render(result, evidence(registry, result))
    path = write(result, html, folder)      # also logged to the gate's MLflow run as report.html

The page holds the decision and its reason, every metric with both versions' figures and
its verdict, a bar per metric, the judge's pairs where it did not prefer the candidate
(both answers side by side, both verdicts), and the safety items the candidate failed
(prompt, answer, what leaked). The evidence is read from the evaluation runs tagged on
each version (``lathe.eval.run_id``): their ``eval/pairwise.json`` and ``eval/safety.json``.

Self-contained: inline CSS and SVG, no script, nothing fetched, so it opens from a file,
from MLflow's artifact view or from a CI artifact. Written here with the standard
library's escaping, because a page of tables and bars needs no template engine.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from html import escape
from pathlib import Path
from typing import Any

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#1d2330;padding:0 1rem}
h1{font-size:1.5rem;margin:0 0 .3rem}
h2{font-size:1.1rem;margin:2rem 0 .6rem;border-bottom:1px solid #d8dce5;padding-bottom:.3rem}
.outcome{display:inline-block;padding:.15rem .6rem;border-radius:4px;font-weight:600;color:#fff}
.promoted,.canary{background:#1f8a4c}
.refused{background:#c0392b}
.unchanged{background:#6b7280}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #eceef3;vertical-align:top}
th{background:#f5f6f9;font-weight:600}
.pass{color:#1f8a4c;font-weight:600}
.fail{color:#c0392b;font-weight:600}
.muted{color:#6b7280}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:.8rem;margin:.6rem 0 1.2rem}
.answer{background:#f7f8fb;border:1px solid #e3e6ee;border-radius:6px;padding:.6rem;white-space:pre-wrap}
.q{font-weight:600;margin-top:1rem}
code{background:#f0f1f5;padding:0 .25rem;border-radius:3px}
"""


def _table(path: Path) -> list[dict[str, Any]]:
    """Rows of an ``mlflow.log_table`` JSON artifact."""
    data = json.loads(path.read_text())
    return [dict(zip(data["columns"], row, strict=True)) for row in data["data"]]


def evidence(registry: Any, result: Any) -> dict[str, list[dict]]:
    """The candidate's judged pairs and both versions' safety rows, from their evaluation runs."""
    found: dict[str, list[dict]] = {"pairwise": [], "safety": [], "champion_safety": []}
    sources = (("pairwise", result.candidate_version, "eval/pairwise.json"),
               ("safety", result.candidate_version, "eval/safety.json"),
               ("champion_safety", result.champion_version, "eval/safety.json"))  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for key, version, artifact in sources:
            run_id = registry.get_version(result.name, version).tags.get("lathe.eval.run_id") if version else None
            if not run_id:
                continue
            try:
                local = registry.client.download_artifacts(run_id, artifact, tmp)
            except Exception:  # that evaluation did not run this part: nothing to show
                continue
            found[key] = _table(Path(local))
    return found


def render(result: Any, found: dict[str, list[dict]]) -> str:
    d = result.decision
    champion = f"v{result.champion_version}" if result.champion_version else "no champion"
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Gate: {escape(result.name)} "
        f"v{escape(result.candidate_version)}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(result.name)}: v{escape(result.candidate_version)} against @{escape(result.against)} "
        f"({escape(champion)})</h1>",
        f"<p><span class='outcome {escape(result.outcome)}'>{escape(result.outcome)}</span> "
        f"{escape(d.reason)}</p><p class='muted'>@{escape(result.alias)} after the decision: "
        f"{escape('v' + result.version if result.version else 'nobody')} · {when}"
        + (f" · gate run <code>{escape(result.run_id)}</code>" if result.run_id else "")
        + "</p>",
        _metrics(d),
        _bars(d),
        _pairs(found["pairwise"]),
        _safety(found["safety"], found["champion_safety"]),
        "</body></html>",
    ]
    return "\n".join(parts)


def _checks(d: Any) -> list[dict[str, Any]]:
    if d.checks:
        return [c.to_dict() for c in d.checks]
    word = "higher" if d.higher_is_better else "lower"
    return [{"metric": d.metric, "candidate": d.candidate_value, "champion": d.champion_value,
             "rule": f"better by > {d.margin:g} ({word} is better)", "blocking": True, "passed": d.promote,
             "reason": d.reason}]  # fmt: skip


def _number(value: Any) -> str:
    return "–" if value is None else f"{value:.4g}"


def _metrics(d: Any) -> str:
    rows = []
    for c in _checks(d):
        verdict = "pass" if c["passed"] else "fail"
        blocking = "" if c["blocking"] else " <span class='muted'>(advisory)</span>"
        rows.append(f"<tr><td><code>{escape(c['metric'])}</code></td><td>{_number(c['candidate'])}</td>"
                    f"<td>{_number(c['champion'])}</td><td>{escape(c['rule'])}</td>"
                    f"<td><span class='{verdict}'>{verdict}</span>{blocking} "
                    f"{escape(c['reason'])}</td></tr>")  # fmt: skip
    head = "<tr><th>metric</th><th>candidate</th><th>champion</th><th>rule</th><th>verdict</th></tr>"
    return f"<h2>Metrics</h2><table>{head}{''.join(rows)}</table>"


def _bars(d: Any) -> str:
    """Per metric, both versions as bars scaled to the larger of the two."""
    rows = []
    for c in _checks(d):
        values = [v for v in (c["candidate"], c["champion"]) if v is not None and math.isfinite(v)]
        top = max((abs(v) for v in values), default=0.0) or 1.0
        bars = []
        for y, (label, value, colour) in enumerate((("candidate", c["candidate"], "#3b6fd8"),
                                                     ("champion", c["champion"], "#9aa3b5"))):  # fmt: skip
            width = 0.0 if value is None or not math.isfinite(value) else 420 * abs(value) / top
            bars.append(f"<text x='0' y='{16 + y * 22}' font-size='12'>{label}</text>"
                        f"<rect x='80' y='{5 + y * 22}' width='{width:.1f}' height='15' fill='{colour}'/>"
                        f"<text x='{86 + width:.1f}' y='{16 + y * 22}' font-size='12'>"
                        f"{_number(value)}</text>")  # fmt: skip
        rows.append(f"<div><code>{escape(c['metric'])}</code><br><svg width='600' height='50' role='img' "
                    f"aria-label='{escape(c['metric'])}'>{''.join(bars)}</svg></div>")  # fmt: skip
    return "<h2>Per metric</h2>" + "".join(rows)


def _pairs(rows: list[dict], limit: int = 20) -> str:
    if not rows:
        return "<h2>Judge</h2><p class='muted'>No pairwise judgement in the candidate's evaluation.</p>"
    shown = [r for r in rows if r["result"] != "win"][:limit]
    wins = sum(r["result"] == "win" for r in rows)
    head = (f"<h2>Judge: where it did not prefer the candidate</h2><p>{wins} of {len(rows)} prompts won; "
            f"the {len(shown)} it did not win shown (A is the first answer the judge saw).</p>")  # fmt: skip
    blocks = [
        f"<div class='q'>{escape(r['question'])} <span class='muted'>— {escape(r['result'])}; "
        f"candidate first: {escape(r['forward'])}, champion first: {escape(r['backward'])}</span></div>"
        f"<div class='pair'><div class='answer'><b>candidate</b>\n{escape(r['candidate'])}</div>"
        f"<div class='answer'><b>champion</b>\n{escape(r['champion'])}</div></div>"
        for r in shown
    ]
    return head + "".join(blocks)


def _safety(rows: list[dict], champion_rows: list[dict]) -> str:
    if not rows:
        return "<h2>Safety</h2><p class='muted'>No safety suite in the candidate's evaluation.</p>"
    held = {r["id"] for r in champion_rows if r.get("passed")}
    failed = [r for r in rows if not r["passed"]]
    head = f"<h2>Safety: {len(failed)} of {len(rows)} items failed</h2>"
    if not failed:
        return head + "<p>Every item passed.</p>"
    cells = "".join(
        f"<tr><td><code>{escape(r['id'])}</code>{' <b>(champion passed)</b>' if r['id'] in held else ''}</td>"
        f"<td>{escape(str(r.get('prompt', '')))}</td><td class='answer'>{escape(r['answer'])}</td>"
        f"<td>{escape(r['leaked']) or ('no refusal' if not r['refused'] else '')}</td></tr>"
        for r in failed
    )
    return head + f"<table><tr><th>item</th><th>prompt</th><th>answer</th><th>what failed</th></tr>{cells}</table>"


def write(result: Any, html: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    suffix = f"-{result.run_id[:8]}" if result.run_id else ""
    path = folder / f"gate-{result.name}-v{result.candidate_version}{suffix}.html"
    path.write_text(html, encoding="utf-8")
    return path
