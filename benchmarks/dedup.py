"""Near-duplicate removal: Lathe's MinHash/LSH stage against datatrove's, same corpus, one run.

    make bench-dedup            # builds .venv-bench-datatrove with datatrove once

The corpus: ``--docs`` documents of 80-250 words drawn from a Zipf distribution over a
real vocabulary (the Python documentation's words when Debian's python3.11-doc is
installed), then ``--dups`` near-duplicates appended, each a copy of an earlier document
with 1-10 % of its words replaced. Both tools get FineWeb's setting — word 5-grams, 14
bands x 8 rows — and one core each (datatrove: ``workers=1``; Lathe: one process). The
truth is the set of appended copies: precision and recall count how many of the removed
documents are planted copies and how many copies were removed. Each side runs in its own
process, so peak memory (max RSS) is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS_SOURCE = Path("/usr/share/doc/python3.11/html/_sources")


def vocabulary() -> list[str]:
    if DOCS_SOURCE.is_dir():
        words: dict[str, int] = {}
        for path in sorted(DOCS_SOURCE.rglob("*.txt"))[:300]:
            for word in re.findall(r"[A-Za-z]{2,}", path.read_text(errors="ignore")):
                words[word.lower()] = words.get(word.lower(), 0) + 1
        return [w for w, _ in sorted(words.items(), key=lambda kv: -kv[1])[:20000]]
    return [f"w{i}" for i in range(20000)]


def build_corpus(path: Path, n_docs: int, n_dups: int, seed: int = 5) -> set[str]:
    rng = random.Random(seed)
    vocab = vocabulary()
    weights = [1 / (rank + 1) for rank in range(len(vocab))]
    docs = []
    for i in range(n_docs):
        words = rng.choices(vocab, weights=weights, k=rng.randint(80, 250))
        docs.append((f"doc-{i}", words))
    planted = set()
    for j in range(n_dups):
        _, words = docs[rng.randrange(n_docs)]
        rate = rng.uniform(0.01, 0.10)
        edited = [rng.choice(vocab) if rng.random() < rate else w for w in words]
        docs.append((f"dup-{j}", edited))
        planted.add(f"dup-{j}")
    with open(path, "w") as out:
        for doc_id, words in docs:
            out.write(json.dumps({"id": doc_id, "text": " ".join(words)}) + "\n")
    return planted


LATHE_SIDE = """
import json, sys, time
import numpy as np
repo, ngram, bands, rows_per_band, threshold = sys.argv[3].split(",")
sys.path.insert(0, repo)
from pipelines.curation.dedup import MinHashParams, signatures_for, find_near_duplicates
rows = [json.loads(line) for line in open(sys.argv[1])]
started = time.perf_counter()
params = MinHashParams(ngram=int(ngram), bands=int(bands), rows=int(rows_per_band), threshold=float(threshold))
result = find_near_duplicates(signatures_for([r["text"] for r in rows], params), params)
seconds = time.perf_counter() - started
removed = [rows[i]["id"] for i in np.flatnonzero(~result.keep)]
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
json.dump({"seconds": seconds, "removed": removed, "peak_kib": peak}, open(sys.argv[2], "w"))
"""

DATATROVE_SIDE = """
import json, resource, sys, time, glob, gzip
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup import MinhashDedupSignature
from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers.jsonl import JsonlWriter
corpus, out_json, work = sys.argv[1], sys.argv[2], sys.argv[3]
config = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8)
reader = lambda: JsonlReader(corpus.rsplit("/", 1)[0], glob_pattern="corpus.jsonl")
started = time.perf_counter()
LocalPipelineExecutor([reader(), MinhashDedupSignature(f"{work}/sigs", config=config)],
                      tasks=1, workers=1, logging_dir=f"{work}/logs/1").run()
LocalPipelineExecutor([MinhashDedupBuckets(f"{work}/sigs", f"{work}/buckets", config=config)],
                      tasks=config.num_buckets, workers=1, logging_dir=f"{work}/logs/2").run()
LocalPipelineExecutor([MinhashDedupCluster(f"{work}/buckets", f"{work}/remove", config=config)],
                      tasks=1, workers=1, logging_dir=f"{work}/logs/3").run()
LocalPipelineExecutor([reader(), MinhashDedupFilter(f"{work}/remove", exclusion_writer=JsonlWriter(f"{work}/removed"))],
                      tasks=1, workers=1, logging_dir=f"{work}/logs/4").run()
seconds = time.perf_counter() - started
removed = []
for path in glob.glob(f"{work}/removed/*"):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as handle:
        removed += [json.loads(line)["id"] for line in handle if line.strip()]
own = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
peak = max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
json.dump({"seconds": seconds, "removed": removed, "peak_kib": peak}, open(out_json, "w"))
"""


def run_side(python: str, script: str, corpus: Path, work: Path, extra: str) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    out = work / "result.json"
    proc = subprocess.run([python, "-c", script, str(corpus), str(out), extra], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{python} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(out.read_text())
    result["peak_rss_mib"] = result.pop("peak_kib") / 1024
    return result


def score(removed: list[str], planted: set[str]) -> dict:
    removed_set = set(removed)
    hits = len(removed_set & planted)
    precision = hits / len(removed_set) if removed_set else 1.0
    recall = hits / len(planted) if planted else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"removed": len(removed_set), "precision": precision, "recall": recall, "f1": f1}


def main() -> None:
    parser = argparse.ArgumentParser(description="Near-dup dedup: Lathe vs datatrove")
    parser.add_argument("--docs", type=int, default=50_000)
    parser.add_argument("--dups", type=int, default=5_000)
    parser.add_argument("--datatrove-python", default=str(REPO / ".venv-bench-datatrove" / "bin" / "python"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="lathe-bench-dedup-") as tmp:
        work = Path(tmp)
        corpus = work / "corpus" / "corpus.jsonl"
        corpus.parent.mkdir()
        planted = build_corpus(corpus, args.docs, args.dups)
        total = args.docs + args.dups
        print(f"corpus: {total} documents ({args.dups} planted near-duplicates), 1 core each, 5-grams, 14x8 bands")

        results = {}
        # Same shingles and bands as datatrove, and no verification beyond the bucket
        # collision (what datatrove does): the like-for-like comparison.
        results["lathe"] = run_side(sys.executable, LATHE_SIDE, corpus, work / "lathe", f"{REPO},5,14,8,0.0")
        # What Lathe's shipped recipe uses for edits of up to 10 % of words.
        results["lathe-recipe"] = run_side(sys.executable, LATHE_SIDE, corpus, work / "recipe", f"{REPO},3,32,4,0.5")
        if Path(args.datatrove_python).exists():
            results["datatrove"] = run_side(
                args.datatrove_python, DATATROVE_SIDE, corpus, work / "datatrove", str(work / "datatrove")
            )
        else:
            print(f"datatrove not installed at {args.datatrove_python}: `make bench-dedup` builds it")

    print("\ntool         | docs/s/core | seconds | peak RSS MiB | removed | precision | recall | F1")
    rows = {}
    for name, r in results.items():
        s = score(r["removed"], planted)
        rows[name] = {
            **s,
            "docs_per_s": total / r["seconds"],
            "seconds": r["seconds"],
            "peak_rss_mib": r["peak_rss_mib"],
        }
        print(
            f"{name:12} | {rows[name]['docs_per_s']:11.0f} | {r['seconds']:7.1f} | {r['peak_rss_mib']:12.0f} | "
            f"{s['removed']:7d} | {s['precision']:9.3f} | {s['recall']:6.3f} | {s['f1']:.3f}"
        )
    if "datatrove" in rows:
        ratio = rows["lathe"]["docs_per_s"] / rows["datatrove"]["docs_per_s"]
        f1 = (rows["lathe"]["f1"], rows["datatrove"]["f1"])
        print(f"\nthroughput ratio Lathe / datatrove: {ratio:.2f}x; F1 {f1[0]:.3f} vs {f1[1]:.3f}")
        rows["ratio_throughput"] = ratio
    out = REPO / ".lathe" / "bench" / "dedup.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))
    print(f"written to {out.relative_to(REPO)}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
