"""Curation's cost curve: the whole job at several corpus sizes, decisions on the driver vs distributed.

    make bench-scale                         # 50k, 200k and 1M documents
    .venv/bin/python benchmarks/scale.py --sizes 50000,200000

Each size is a corpus of ``n`` documents built as ``make bench-dedup`` builds one (80-250
words from a Zipf vocabulary), 10 % of them planted near-duplicates (1-10 % of the words
edited), so precision and recall stay measurable at every size. Each run is the curation
job (``run_curation``) in its own process with a local Ray of ``--workers`` CPUs; quality
and PII are off (they are per-document maps that scale linearly and would only hide the
deduplication). The table shows, per size and mode: the dedup stages' seconds (exact and
near), docs/s over the whole job, peak RSS of the driver and of the Ray workers together
(sampled every 0.2 s), precision and recall; then the growth exponent of the dedup time
fitted over the sizes (time ~ size^k) and the driver's RSS growth.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dedup import build_corpus, score

REPO = Path(__file__).resolve().parents[1]
DEDUP_STAGES = ("exact dedup", "near dedup (MinHash + LSH)")

JOB = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import ray
from pipelines.curation.config import CurationConfig
from pipelines.curation.job import run_curation
def peak_kib():  # this process's own peak: ru_maxrss would carry the parent's over exec
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
corpus, out, mode, workers = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
config = CurationConfig.model_validate({
    "input": {"path": corpus}, "output": out + "/curated", "decisions": mode,
    "stages": {"quality": {"enabled": False}, "pii": {"enabled": False}}, "mlflow": {"enabled": False},
})
started = time.perf_counter()
result = run_curation(config)
seconds = time.perf_counter() - started
import pandas as pd
rejects = pd.concat(pd.read_parquet(f) for f in (result.output / "rejects").glob("*.parquet"))
removed = list(rejects[rejects["stage"].isin(["exact_dedup", "near_dedup"])]["id"])
json.dump({"seconds": seconds, "timings": {t.name: t.seconds for t in result.timings}, "removed": removed,
           "driver_peak_kib": peak_kib()}, open(out + "/result.json", "w"))
"""


def _sample_workers(pid: int, peak: list[float], stop: threading.Event) -> None:
    """The Ray processes under the job (raylet, workers, object store) summed, every 0.2 s."""
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    while not stop.wait(0.2):
        try:
            total = sum(c.memory_info().rss for c in root.children(recursive=True) if c.is_running())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        peak[0] = max(peak[0], total / 2**20)


def run(corpus: Path, work: Path, mode: str, workers: int) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    log = work / "job.log"
    with open(log, "w") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-c", JOB, str(REPO), str(corpus), str(work), mode, str(workers)],
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        peak, stop = [0.0], threading.Event()
        sampler = threading.Thread(target=_sample_workers, args=(proc.pid, peak, stop), daemon=True)
        sampler.start()
        code = proc.wait()
        stop.set()
    if code != 0:
        raise SystemExit(f"the {mode} job failed; log: {log}")
    result = json.loads((work / "result.json").read_text())
    result["driver_mib"] = result.pop("driver_peak_kib") / 1024
    result["workers_mib"] = peak[0]
    result["dedup_s"] = sum(result["timings"].get(name, 0.0) for name in DEDUP_STAGES)
    return result


def exponent(sizes: list[int], seconds: list[float]) -> float:
    """Least-squares slope of log(time) over log(size)."""
    xs, ys = [math.log(s) for s in sizes], [math.log(max(t, 1e-9)) for t in seconds]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def main() -> None:
    parser = argparse.ArgumentParser(description="Curation at several sizes: driver vs distributed decisions")
    parser.add_argument("--sizes", default="50000,200000,1000000", help="documents per corpus, comma-separated")
    parser.add_argument("--modes", default="driver,distributed")
    parser.add_argument("--workers", type=int, default=2, help="Ray CPUs")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    modes = args.modes.split(",")
    rows = []
    with tempfile.TemporaryDirectory(prefix="lathe-bench-scale-") as tmp:
        for size in sizes:
            corpus = Path(tmp) / f"corpus-{size}" / "corpus.jsonl"
            corpus.parent.mkdir()
            dups = size // 10
            planted = build_corpus(corpus, size - dups, dups)
            for mode in modes:
                print(f"[bench-scale] {size:,} documents, decisions on the {mode} …", flush=True)
                result = run(corpus, Path(tmp) / f"run-{size}-{mode}", mode, args.workers)
                quality = score(result.pop("removed"), planted)
                rows.append({"size": size, "mode": mode, **result, **quality})
            corpus.unlink()
    report(rows, sizes, modes, args.workers)
    if args.json:
        print(json.dumps(rows, indent=2))


def report(rows: list[dict], sizes: list[int], modes: list[str], workers: int) -> None:
    cpu = psutil.cpu_count()
    print(f"\nCuration at scale: {cpu} cores, a local Ray with {workers} CPUs, quality and PII off\n")
    print(
        "| documents | decisions | dedup s | job s | docs/s | driver RSS MiB | workers RSS MiB | precision | recall |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        cells = [
            f"{r['size']:,}",
            r["mode"],
            f"{r['dedup_s']:.1f}",
            f"{r['seconds']:.1f}",
            f"{r['size'] / r['seconds']:,.0f}",
            f"{r['driver_mib']:,.0f}",
            f"{r['workers_mib']:,.0f}",
            f"{r['precision']:.3f}",
            f"{r['recall']:.3f}",
        ]
        print("| " + " | ".join(cells) + " |")
    print()
    for mode in modes:
        mine = [r for r in rows if r["mode"] == mode]
        if len(mine) >= 2:
            k = exponent([r["size"] for r in mine], [r["dedup_s"] for r in mine])
            growth = mine[-1]["driver_mib"] / mine[0]["driver_mib"] - 1
            print(f"{mode}: dedup time ~ size^{k:.2f}; driver RSS {growth:+.0%} from {sizes[0]:,} to {sizes[-1]:,}")
    by = {(r["size"], r["mode"]): r for r in rows}
    for size in sizes:
        if (size, "driver") in by and (size, "distributed") in by:
            ratio = by[(size, "distributed")]["dedup_s"] / max(by[(size, "driver")]["dedup_s"], 1e-9)
            print(f"{size:,}: distributed dedup takes {ratio:.2f}x the driver's")


if __name__ == "__main__":
    main()
