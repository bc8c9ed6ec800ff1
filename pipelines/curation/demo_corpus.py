"""Build the demo corpus: the Python documentation sources plus known duplicates and PII.

    python -m pipelines.curation.demo_corpus --out .lathe/data/raw-docs

It copies the reStructuredText sources that Debian's ``python3.11-doc`` package
installs (``/usr/share/doc/python3.11/html/_sources``), then adds, deterministically:
exact copies of some pages, near-duplicates (1-10 % of words edited), and pages with
e-mail addresses, phone numbers, card numbers and API keys written into some pages. It
writes ``injected.json`` beside them, so a curation run can be checked against what
was planted: the demo reports how many of the planted duplicates and PII were caught.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
from pathlib import Path

DEFAULT_SOURCE = Path("/usr/share/doc/python3.11/html/_sources")

PII_LINES = [
    "Questions about this page can go to docs-team@example.org or to ada.lovelace@example.com.",
    "For urgent issues call +1 415-555-0132 or (020) 7946 0958 during office hours.",
    "The test payment used card 4111 1111 1111 1111 and was refunded to GB82 WEST 1234 5698 7654 32.",
    "Never commit keys like AKIAIOSFODNN7EXAMPLE or ghp_0123456789abcdefghijABCDEFGHIJ012345 to a repository.",
    "The staging server at 192.168.10.24 answers on port 8080.",
]


def build(source: Path, out: Path, *, copies: int = 15, near: int = 15, pii: int = 10, seed: int = 11) -> dict:
    if not source.is_dir():
        raise SystemExit(f"{source} not found: install Debian's python3.11-doc package (make install-system)")
    rng = random.Random(seed)
    pages = sorted(p for p in source.rglob("*.txt") if p.stat().st_size > 2000)
    if out.exists():
        shutil.rmtree(out)
    (out / "docs").mkdir(parents=True)
    for page in pages:
        target = out / "docs" / page.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(page, target)
    planted: dict[str, list] = {"exact_copies": [], "near_duplicates": [], "pii": []}
    injected = out / "docs" / "zz-injected"
    injected.mkdir()
    for i, page in enumerate(rng.sample(pages, copies)):
        name = f"copy-{i:02d}.rst.txt"
        shutil.copyfile(page, injected / name)
        planted["exact_copies"].append({"id": f"zz-injected/{name}", "of": str(page.relative_to(source))})
    for i, page in enumerate(rng.sample(pages, near)):
        words = page.read_text(encoding="utf-8").split(" ")
        rate = rng.uniform(0.01, 0.10)
        edited = [rng.choice(["changed", "edited", "other", "new"]) if rng.random() < rate else w for w in words]
        name = f"edited-{i:02d}.rst.txt"
        (injected / name).write_text(" ".join(edited), encoding="utf-8")
        planted["near_duplicates"].append(
            {"id": f"zz-injected/{name}", "of": str(page.relative_to(source)), "edit_rate": round(rate, 3)}
        )
    # PII goes into pages in place: a new file with two extra lines would be (rightly)
    # removed as a near-duplicate of its original before anyone saw the redaction.
    for page in rng.sample(pages, pii):
        target = out / "docs" / page.relative_to(source)
        lines = target.read_text(encoding="utf-8").split("\n")
        extra = rng.sample(PII_LINES, 2)
        for line in extra:
            lines.insert(rng.randrange(len(lines) + 1), line)
        target.write_text("\n".join(lines), encoding="utf-8")
        planted["pii"].append({"id": str(page.relative_to(source)), "lines": extra})
    manifest = {"source": str(source), "pages": len(pages), **planted}
    (out / "injected.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--out", type=Path, default=Path(".lathe/data/raw-docs"))
    args = parser.parse_args()
    manifest = build(args.source, args.out)
    print(
        f"{manifest['pages']} documentation pages + {len(manifest['exact_copies'])} exact copies, "
        f"{len(manifest['near_duplicates'])} near-duplicates, {len(manifest['pii'])} pages with PII -> {args.out}/docs"
    )


if __name__ == "__main__":
    main()
