"""Reading, chunking and embedding throughput: one process against Ray with 1 and 2 workers;
and what an unchanged rebuild with `--update` costs.

    .venv/bin/python benchmarks/scale.py [--docs /usr/share/doc] [--copies 1] [--update-docs DIR]

Each case runs in its own process (the driver), over the same files: `local` reads and chunks
in the driver and embeds with onnxruntime's threads (as `outpost export` does); `ray-N` starts a
local Ray instance with N CPUs and runs the two Ray Data stages of `--engine ray`
(export/engines/ray_data.py). Reported: documents and chunks, seconds per stage, chunks per second end to
end, and the driver's peak resident memory. `--copies K` repeats the documents K times under
different names, for a corpus of a given size from what is installed.

With --update-docs: a full `outpost export` of that folder, then `--update` of it with nothing
changed, both timed end to end (the LLM conversion and checks included).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASE = """
import json, resource, sys, time
from pathlib import Path
spec = json.loads(sys.argv[1])
from outpost.export.config import ChunkConfig
from outpost.export.documents.ingest import discover, read_chunks
from outpost.runtime.ask.embed import Embedder
files = []
for i in range(spec["copies"]):
    found, _, _ = discover(spec["docs"], tuple(spec["exclude"]))
    files += [(p, f"copy{i}/{s}") for p, s in found]
todo = [(i, p, s) for i, (p, s) in enumerate(files)]
config = ChunkConfig(); config.check()
model, tok = Path(spec["model"]), Path(spec["tokenizer"])
t0 = time.perf_counter()
if spec["workers"]:
    from outpost.export.engines import ray_data as scale
    scale.start(None, cpus=spec["workers"])
    read = scale.read_and_chunk(todo, config, spec["workers"])
else:
    read = {i: read_chunks(p, s, config) for i, p, s in todo}
t1 = time.perf_counter()
texts = [c.embedding_text() for i in sorted(read) for c in read[i][3]][: spec["limit"] or None]
if spec["workers"]:
    vectors = scale.embed(texts, model, tok, 256, spec["workers"])
else:
    vectors = Embedder(model, tok, 256).embed(texts)
t2 = time.perf_counter()
if spec["workers"]:
    scale.stop()  # gives stdout back (Ray's messages go to stderr while it runs)
print(json.dumps({"documents": len(todo), "skipped": sum(bool(r[2]) for r in read.values()),
                  "chunks": len(texts), "read_s": round(t1 - t0, 1), "embed_s": round(t2 - t1, 1),
                  "chunks_per_s": round(len(texts) / (t2 - t0), 1),
                  "driver_peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))
"""


def embedder(work: Path) -> tuple[Path, Path]:
    from outpost.export.retrieval.embedder import export_embedder

    emb = export_embedder("embedded:all-MiniLM-L6-v2", work / "embedder", [], lambda m: None)
    return work / emb.config["file"], work / emb.config["tokenizer"]


def export_seconds(outpost: str, *args: str) -> float:
    start = time.perf_counter()
    subprocess.run([outpost, "export", *args], check=True, capture_output=True)
    return round(time.perf_counter() - start, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", nargs="+", default=["/usr/share/doc"])
    ap.add_argument("--exclude", nargs="*", default=[])
    ap.add_argument("--copies", type=int, default=1)
    ap.add_argument("--limit", type=int, default=0, help="embed at most this many chunks")
    ap.add_argument("--cases", default="local,ray-1,ray-2")
    ap.add_argument("--update-docs")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model, tok = embedder(work)
        for case in args.cases.split(","):
            workers = 0 if case == "local" else int(case.split("-")[1])
            spec = {
                "docs": args.docs,
                "exclude": args.exclude,
                "copies": args.copies,
                "model": str(model),
                "tokenizer": str(tok),
                "workers": workers,
                "limit": args.limit,
            }
            done = subprocess.run(
                [sys.executable, "-c", CASE, json.dumps(spec)], capture_output=True, text=True
            )
            if done.returncode:
                sys.exit(f"{case} failed: {done.stderr[-2000:]}")
            results[case] = json.loads(done.stdout.strip().splitlines()[-1])
            print(case, json.dumps(results[case]), flush=True)
        if args.update_docs:
            outpost = str(Path(sys.executable).with_name("outpost"))
            full, again = work / "full", work / "again"
            results["update"] = {
                "full_export_s": export_seconds(outpost, args.update_docs, "--out", str(full)),
                "unchanged_update_s": export_seconds(
                    outpost, args.update_docs, "--out", str(again), "--update", str(full)
                ),
            }
            print("update", json.dumps(results["update"]), flush=True)
    print()
    print("| case | documents | chunks | read + chunk s | embed s | chunks/s | driver peak MB |")
    print("|---|---|---|---|---|---|---|")
    for case, r in results.items():
        if case != "update":
            print(
                f"| {case} | {r['documents']} | {r['chunks']} | {r['read_s']} | {r['embed_s']} | "
                f"{r['chunks_per_s']} | {r['driver_peak_mb']} |"
            )
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
