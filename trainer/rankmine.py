"""The written questions' run-time candidates: hard negatives from real retrieval.

    .venv/bin/python -m outpost.trainer.rankmine docs --docs .outpost-cache/train --out DIR
    outpost export DIR -o BUNDLE --no-ranker
    .venv/bin/python -m outpost.trainer.rankmine mine --bundle BUNDLE --out data/ranker/mined.jsonl

The same-page negatives of trainer/rankdata.py teach the ranker one page at a time; `ask` on a
big manual ranks the lines of 24 chunks of many pages, and what it gets wrong there is a line
of another page that shares the question's words. So the documents of the written questions
are exported as one bundle (12,828 chunks), every written question is asked of it as `ask`
retrieves and ranks (runtime/assistant.py `_find`, runtime/evidence.py `line_inputs`), and the
features' best lines (with the next lines of their best) are kept with their feature rows and
labels. trainer/rankdata.py adds the wrong ones to each question's group (role "mined");
trainer/crossrank.py measures the held-out packages on them (top-1 as the runtime ranks).
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from outpost.trainer.questions import fold, load

LINES = 40  # the features' best lines kept per question (the runtime reranks 24)
NEXT = 12  # of those, the best whose next line is kept too


def _written() -> list[dict]:
    return load(sorted((Path(__file__).parent / "questions").glob("*.jsonl")))


def _name(doc: str) -> str:
    """The document's path in the export folder (compressed text is written out plain)."""
    return doc[: -len(".gz")] if doc.endswith(".gz") else doc


def write_docs(root: str, out: Path) -> int:
    """Copy the written questions' documents (as the training root holds them) to `out`."""
    docs = sorted({r["doc"] for r in _written()})
    tmp = out.with_name(out.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    for doc in docs:
        src, dst = Path(root) / doc, tmp / _name(doc)
        dst.parent.mkdir(parents=True, exist_ok=True)
        data = src.read_bytes()
        dst.write_bytes(gzip.decompress(data) if doc.endswith(".gz") else data)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return len(docs)


def _answers(row: dict, source: str, line: str) -> tuple[bool, bool]:
    """(the line is the row's answer line, or a part of it, in its document; it holds every
    keyword) for one candidate."""
    doc, t = _name(row["doc"]), fold(line)
    answer = fold(row.get("answer", ""))
    right_doc = source == doc or source.endswith("/" + doc) or doc.endswith("/" + source)
    part = bool(answer) and (
        answer in t or (len(t) >= 25 and t in answer and len(t) >= 0.3 * len(answer))
    )
    keys = [fold(k) for k in row.get("keywords", [])]
    return right_doc and part, bool(keys) and all(k in t for k in keys)


def mine(bundle: str, out: Path, log=print) -> int:
    """Every written question asked of `bundle`: its candidates, features, labels."""
    from outpost.runtime.assistant import CANDIDATES, open_assistant
    from outpost.runtime.config import AskConfig
    from outpost.runtime.evidence import _WEIGHTS, line_inputs
    from outpost.runtime.rerank import pair_text
    from outpost.trainer.rankdata import HELD_OUT

    a = open_assistant(bundle, AskConfig())
    rows = _written()
    tmp = out.with_name(out.name + ".part")
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "w", encoding="utf-8") as f:
        for n, row in enumerate(rows, 1):
            q = row["question"]
            hits = a.retriever.search(q, max(a.top_k, CANDIDATES))
            units, feats, _ = line_inputs(q, hits, a.retriever.embedder, a.retriever.store)
            order = [int(j) for j in np.argsort(-(feats @ _WEIGHTS))] if units else []
            picked = dict.fromkeys(order[:LINES])
            for j in order[:NEXT]:
                if j + 1 < len(units) and units[j + 1].hit == units[j].hit:
                    picked[j + 1] = None
            cands = []
            for j in picked:
                hit = hits[units[j].hit]
                pos, kw = _answers(row, hit.source, units[j].text)
                cands.append(
                    {
                        "rank": order.index(j),
                        "features": [round(float(x), 4) for x in feats[j]],
                        "text": pair_text(hit.heading, units[j].text),
                        "answer": pos,
                        "keywords": kw,
                    }
                )
            record = {
                "id": row["id"],
                "package": row["package"],
                "split": "held_out" if row["package"] in HELD_OUT else "train",
                "answerable": row.get("answerable", True),
                "question": q,
                "candidates": cands,
            }
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            if n % 100 == 0 or n == len(rows):
                log(f"[rankmine] {n}/{len(rows)} questions")
    tmp.replace(out)
    return len(rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="step", required=True)
    d = sub.add_parser("docs", help="Copy the written questions' documents to --out.")
    d.add_argument("--docs", default=".outpost-cache/train", help="The training root.")
    d.add_argument("--out", required=True)
    m = sub.add_parser("mine", help="Ask every written question of --bundle.")
    m.add_argument("--bundle", required=True)
    m.add_argument("--out", default="data/ranker/mined.jsonl")
    args = ap.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if args.step == "docs":
        log(f"[rankmine] {write_docs(args.docs, Path(args.out))} documents in {args.out}")
    else:
        mine(args.bundle, Path(args.out), log)


if __name__ == "__main__":
    main()
